"""A stand-in for kube-state-metrics over the local runtime, for the live checks (there is no
Kubernetes here). It serves the pod and Deployment series the rules read, derived on every scrape
from the runtime's own kubelet-like state, the way kube-state-metrics derives them from the pod
and Deployment status: `kube_pod_status_ready` from the readiness probe's verdict,
`kube_pod_status_phase` Running while the replica's process runs,
`kube_pod_container_state_started` from that process's start (the container's current run, reset
by a restart; absent while the replica waits to restart, as for a container in CrashLoopBackOff),
`kube_pod_container_status_restarts_total` from the runtime's restart count, and the Deployment's
`kube_deployment_spec_replicas` (the replicas the runtime runs) and
`kube_deployment_status_replicas_available` (those ready; the chart sets no minReadySeconds). No pod
is ever being deleted here, so `kube_pod_deletion_timestamp` is never served."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests import loopback_page
from tritonops.runtime import control
from tritonops.runtime.supervisor import State


def pod_name(index: int) -> str:
    """The pod name of replica `index`, shaped like a Deployment's pods (<name>-<hash>-<suffix>):
    the rules select this release's kube-state-metrics series by that shape."""
    return f"triton-local-{index}"


def process_start(pid: int) -> float:
    """When process `pid` started, in unix seconds."""
    after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(after_name[19])  # field 22, starttime, in clock ticks since boot
    boot = next(
        int(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime")
    )
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def restart_count(replica: control.ReplicaStatus) -> int:
    """The kubelet's restartCount: it grows when the new container is created. The runtime counts a
    restart when it schedules it, so while a replica waits out its back-off that one has not
    happened yet."""
    waiting = replica.pid is None and replica.state == State.RESTARTING
    return replica.restarts - 1 if waiting else replica.restarts


def metrics(work_dir: Path, namespace: str, deployment: str) -> str:
    """The series for every replica of the runtime in `work_dir` and for its Deployment (named
    `deployment`), in Prometheus' text format."""
    lines = []
    replicas = control.status(work_dir).replicas
    available = 0
    for replica in replicas:
        labels = f'namespace="{namespace}",pod="{pod_name(replica.index)}"'
        pid = replica.pid  # None while the replica waits to restart: no running container
        ready = pid is not None and replica.state == State.READY
        available += ready
        lines.append(f'kube_pod_status_ready{{{labels},condition="true"}} {int(ready)}')
        lines.append(f'kube_pod_status_phase{{{labels},phase="Running"}} {int(pid is not None)}')
        lines.append(
            f'kube_pod_container_status_restarts_total{{{labels},container="triton"}} {restart_count(replica)}'
        )
        try:
            started = process_start(pid) if pid is not None else None
        except OSError:  # exited since the status was read
            started = None
        if started is not None:
            lines.append(f'kube_pod_container_state_started{{{labels},container="triton"}} {started:.0f}')
    labels = f'namespace="{namespace}",deployment="{deployment}"'
    lines.append(f"kube_deployment_spec_replicas{{{labels}}} {len(replicas)}")
    lines.append(f"kube_deployment_status_replicas_available{{{labels}}} {available}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def serve(work_dir: Path, namespace: str, deployment: str) -> Iterator[str]:
    """Serve `metrics(work_dir, namespace, deployment)` on a free loopback port; yields host:port."""
    with loopback_page.serve(lambda: metrics(work_dir, namespace, deployment).encode()) as address:
        yield address


def scrape_job(address: str, interval: str = "1s") -> dict[str, Any]:
    """A scrape job for the stand-in, as kube-prometheus-stack scrapes kube-state-metrics
    (honor_labels: the series' namespace and pod labels are the pods', not the exporter's; the
    rules assume it, as kube-prometheus-stack's default does)."""
    return {
        "job_name": "kube-state-metrics",
        "honor_labels": True,
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "static_configs": [{"targets": [address]}],
    }
