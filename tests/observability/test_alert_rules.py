"""The chart's recording rules and alerts, unit-tested with `promtool test rules` on realistic
series: every alert fires when it should and stays silent when it should not (batch sizes > 1,
failures of every reason, the target-down and metrics-missing cases, a rollout whose pods never
finish starting, a pod on a lost node, kube-state-metrics rescheduled mid-incident)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.gpu import bundle as gpu_bundle
from tests.observability import gpu_series, promtool_runner
from tritonops.chart import render
from tritonops.observability import rule_file as rules

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (make setup installs Debian's prometheus)"
)

NS = "triton-dev"
# The Helm release (tritonops' dev environment): every alert names it, so that Alertmanager inhibits
# within one release only.
RELEASE = "triton"
DEPLOYMENT = "triton"
# Pods of a Deployment are named <deployment>-<pod-template-hash>-<suffix>; the rules select this
# release's pods by that shape in kube-state-metrics' series.
POD_A = "triton-7d9f8c6b5-a1b2c"
POD_B = "triton-7d9f8c6b5-d3e4f"
BASE = {"namespace": NS, "job": "triton", "pod": POD_A, "instance": "10.0.0.1:8002", "service": "triton"}
INSTANCE_B = "10.0.0.2:8002"
# A pod of the ReplicaSet a rollout replaces.
OLD_POD = "triton-5c6b7d8f9-x9y8z"
# The chart's default startup budget (probes.startup: 10 s x 60): Triton's metrics port opens only
# after its startup models load, so a pod may be down and not ready for this long.
STARTUP_BUDGET_S = 600


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    merged = {**BASE, **labels}
    text = ",".join(f'{key}="{value}"' for key, value in merged.items())
    return {"series": f"{metric}{{{text}}}", "values": values}


def model_series(metric: str, values: str, model: str = "linear", **labels: str) -> dict[str, str]:
    return series(metric, values, model=model, version="1", **labels)


def target(pod: str, instance: str, values: str) -> dict[str, str]:
    """The ServiceMonitor's `up` series of one pod."""
    return series("up", values, pod=pod, instance=instance)


# kube-state-metrics' own target labels: Prometheus adds them to every series it scrapes from it (with
# honorLabels the series keep their own namespace and pod). No alert may keep them: they change
# whenever kube-state-metrics is rescheduled.
KSM_TARGET = {"instance": "10.1.0.5:8080", "job": "kube-state-metrics"}


def kube_state(metric: str, values: str, pod: str, **labels: str) -> dict[str, str]:
    merged = {"namespace": NS, "pod": pod, **KSM_TARGET, **labels}
    text = ",".join(f'{key}="{value}"' for key, value in merged.items())
    return {"series": f"{metric}{{{text}}}", "values": values}


def pod_state(
    pod: str, *, ready: str, started: str, running: str, restarts: str | None = None
) -> list[dict[str, str]]:
    """What kube-state-metrics says about one pod: its Ready condition, phase Running, the start
    time of its Triton container (unix seconds; promtool's clock starts at 0, so `0x..` is a container
    started when the test starts and `-3600x..` one that has run for an hour) and its restart count
    (by default 0 for as long as the pod runs: a first start)."""
    return [
        kube_state("kube_pod_status_ready", ready, pod, condition="true"),
        kube_state("kube_pod_status_phase", running, pod, phase="Running"),
        kube_state("kube_pod_container_state_started", started, pod, container="triton"),
        kube_state(
            "kube_pod_container_status_restarts_total",
            running.replace("1x", "0x") if restarts is None else restarts,
            pod,
            container="triton",
        ),
    ]


def deployment_state(*, available: str, replicas: str) -> list[dict[str, str]]:
    """What kube-state-metrics says about the release's Deployment: pods wanted and available."""
    labels = ",".join(
        f'{key}="{value}"' for key, value in {"namespace": NS, "deployment": DEPLOYMENT, **KSM_TARGET}.items()
    )
    return [
        {"series": f"kube_deployment_spec_replicas{{{labels}}}", "values": replicas},
        {"series": f"kube_deployment_status_replicas_available{{{labels}}}", "values": available},
    ]


def never_starting_pod(pod: str, instance: str, *, first_step: int, steps: int) -> list[dict[str, str]]:
    """A pod whose Triton container never goes live, at a 30 s step from `first_step`: its metrics
    port never opens (`up` 0: prometheus-operator scrapes pods that are not ready), it is never
    ready, its phase stays Running. The startup probe (10 s x 60) kills each run at 600 s; the
    container then waits 30 s in CrashLoopBackOff (no start time: kube-state-metrics reports one
    only for a running or terminated container) and starts again, its restart count one higher."""
    run, wait = 20, 1
    before = f"_x{first_step} " if first_step else ""
    started, restarts, waiting = [], [], []
    cycle = 0
    while len(started) < steps - first_step:
        start_s = (first_step + cycle * (run + wait)) * 30
        started += [str(start_s)] * run + ["stale"] * wait
        restarts += [str(cycle)] * (run + wait)
        waiting += ["stale"] * run + ["1"] * wait
        cycle += 1
    n = steps - first_step
    return [
        target(pod, instance, f"{before}0x{n - 1}"),
        kube_state("kube_pod_status_ready", f"{before}0x{n - 1}", pod, condition="true"),
        kube_state("kube_pod_status_phase", f"{before}1x{n - 1}", pod, phase="Running"),
        kube_state(
            "kube_pod_container_state_started", before + " ".join(started[:n]), pod, container="triton"
        ),
        kube_state(
            "kube_pod_container_status_restarts_total",
            before + " ".join(restarts[:n]),
            pod,
            container="triton",
        ),
        kube_state(
            "kube_pod_container_status_waiting_reason",
            before + " ".join(waiting[:n]),
            pod,
            container="triton",
            reason="CrashLoopBackOff",
        ),
    ]


# The agent's series of a pod, scraped from its own port under the job the ServiceMonitor gives it.
AGENT_TARGET = {
    "job": "triton-agent",
    "instance": "10.0.0.1:8003",
    "service": "triton",
    "endpoint": "agent-metrics",
}


def agent_series(metric: str, values: str, pod: str = POD_A, **labels: str) -> dict[str, str]:
    merged = {"namespace": NS, "pod": pod, **AGENT_TARGET, **labels}
    text = ",".join(f'{key}="{value}"' for key, value in merged.items())
    return {"series": f"{metric}{{{text}}}", "values": values}


def agent_tests() -> list[dict[str, Any]]:
    """The agent's alerts (dev values: load failures over 15m, drift for 10m, a stale lock for 5m)."""
    failures = "tritonops_model_load_failures_total"
    return [
        {
            # Version 2 is a candidate the promotion tool loaded: its series appears already counting
            # one failure (increase() alone would miss it). Version 3 is committed and the agent's
            # own load of it fails at 20m.
            "name": "a failed load fires at once, per pod, model and version, and resolves after the window",
            "interval": "1m",
            "input_series": [
                agent_series(failures, "0x50", model="linear", version="1"),
                agent_series(failures, "_x10 1x40", model="linear", version="2"),
                agent_series(failures, "0x20 1x30", model="linear", version="3"),
                agent_series(failures, "0x50", model="linear", version="1", pod=POD_B, instance=INSTANCE_B),
            ],
            "alert_rule_test": [
                alert("TritonModelLoadFailed", "9m", []),
                *[
                    alert(
                        "TritonModelLoadFailed",
                        at,
                        [{"severity": "warning", "pod": POD_A, "model": "linear", "version": "2"}],
                    )
                    for at in ("11m", "19m")
                ],
                alert(
                    "TritonModelLoadFailed",
                    "22m",
                    [
                        {"severity": "warning", "pod": POD_A, "model": "linear", "version": "2"},
                        {"severity": "warning", "pod": POD_A, "model": "linear", "version": "3"},
                    ],
                ),
                alert(
                    "TritonModelLoadFailed",
                    "30m",
                    [{"severity": "warning", "pod": POD_A, "model": "linear", "version": "3"}],
                ),
                alert("TritonModelLoadFailed", "40m", []),
            ],
        },
        {
            # Pod A drifts from 5m to 35m with no promotion; pod B drifts exactly while a promotion
            # holds the lock (its versions move on purpose).
            "name": "drift fires after its `for`, never during a promotion, and resolves when the pod converges",
            "interval": "1m",
            "input_series": [
                agent_series("tritonops_model_drift", "0x5 1x30 0x14", model="linear"),
                agent_series("tritonops_promotion_in_progress", "0x50"),
                agent_series(
                    "tritonops_model_drift", "0x5 1x20 0x24", pod=POD_B, instance=INSTANCE_B, model="linear"
                ),
                agent_series(
                    "tritonops_promotion_in_progress", "0x5 1x20 0x24", pod=POD_B, instance=INSTANCE_B
                ),
            ],
            "alert_rule_test": [
                alert("TritonModelVersionDrift", "14m", []),
                *[
                    alert(
                        "TritonModelVersionDrift",
                        at,
                        [{"severity": "warning", "pod": POD_A, "model": "linear"}],
                    )
                    for at in ("16m", "30m")
                ],
                alert("TritonModelVersionDrift", "37m", []),
            ],
        },
        {
            # Pod A's agent stops answering at 5m while its Triton serves; pod B's Triton and agent
            # are both down (TritonTargetDown speaks for it). A's agent is back at 25m.
            "name": "an agent that does not answer beside a serving Triton fires after its `for`, per pod",
            "interval": "1m",
            "input_series": [
                agent_series("up", "1x5 0x20 1x10"),
                target(POD_A, BASE["instance"], "1x35"),
                agent_series("up", "1x5 0x30", pod=POD_B, instance=INSTANCE_B),
                target(POD_B, INSTANCE_B, "1x5 0x30"),
            ],
            "alert_rule_test": [
                alert("TritonAgentDown", "14m", []),
                alert("TritonAgentDown", "16m", [{"severity": "warning", "pod": POD_A}]),
                alert("TritonAgentDown", "28m", []),
            ],
        },
        {
            "name": "a stale promotion lock fires once per release after its `for` and resolves when cleared",
            "interval": "1m",
            "input_series": [
                agent_series("tritonops_promotion_lock_stale", "0x2 1x10 0x10"),
                agent_series(
                    "tritonops_promotion_lock_stale", "0x2 1x10 0x10", pod=POD_B, instance=INSTANCE_B
                ),
            ],
            "alert_rule_test": [
                alert("TritonPromotionLockStale", "6m", []),
                alert("TritonPromotionLockStale", "9m", [{"severity": "warning"}]),
                alert("TritonPromotionLockStale", "15m", []),
            ],
        },
        {
            "name": "a promotion that holds the lock past its `for` fires once per release",
            "interval": "1m",
            "input_series": [
                agent_series("tritonops_promotion_in_progress", "0x2 1x70 0x5"),
                agent_series(
                    "tritonops_promotion_in_progress", "0x2 1x70 0x5", pod=POD_B, instance=INSTANCE_B
                ),
            ],
            "alert_rule_test": [
                alert("TritonPromotionHeldLong", "30m", []),
                alert("TritonPromotionHeldLong", "64m", [{"severity": "warning"}]),
                alert("TritonPromotionHeldLong", "75m", []),
            ],
        },
    ]


def rescheduled_exporter(metric: str, pod: str, value: str, **labels: str) -> list[dict[str, str]]:
    """One kube-state-metrics series of `pod` (with its `uid`) at a 1 m step for 40 minutes, scraped
    from the exporter at 10.1.0.5 until 15m and from its replacement at 10.1.0.9 from 14m: the
    target labels `instance` and `job` change, the pod's state does not. `value` is a constant or
    `a+b` (a counter growing by b each minute)."""
    start, _, step = value.partition("+")
    at_14m = str(float(start) + 14 * float(step or 0)).removesuffix(".0")
    grow = f"+{step}" if step else ""
    out = []
    for instance, values in (
        ("10.1.0.5:8080", f"{start}{grow}x15 stale"),
        ("10.1.0.9:8080", f"_x14 {at_14m}{grow}x26"),
    ):
        out.append(
            kube_state(
                metric,
                values,
                pod,
                uid=f"uid-{pod[-5:]}",
                instance=instance,
                job="kube-state-metrics",
                **labels,
            )
        )
    return out


def alert(name: str, at: str, expected: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": name,
        "exp_alerts": [
            {"exp_labels": {"alertname": name, "namespace": NS, "triton_release": RELEASE, **labels}}
            for labels in expected
        ],
    }


def silent(names: tuple[str, ...], *times: str) -> list[dict[str, Any]]:
    """Each of `names` fires nothing at each of `times`."""
    return [alert(name, at, []) for name in names for at in times]


def target_down(pod: str = POD_A, instance: str = BASE["instance"]) -> dict[str, str]:
    return {"severity": "critical", "pod": pod, "instance": instance, "job": "triton", "service": "triton"}


# What a start in progress must not fire.
STARTING = (
    "TritonTargetDown",
    "TritonMetricsMissing",
    "TritonModelLoadFailing",
    "TritonPodCrashLooping",
    "TritonNoReplicaAvailable",
    "TritonRolloutStuck",
)


def traffic(
    model: str,
    *,
    requests_per_step: int,
    batch: int,
    duration_us_per_request: int,
    queue_us_per_request: int = 0,
) -> list[dict[str, str]]:
    """Counters for 20 minutes at a 15 s step: requests, items (= requests x batch), executions."""
    steps = 80
    return [
        model_series("nv_inference_request_success", f"0+{requests_per_step}x{steps}", model),
        model_series("nv_inference_count", f"0+{requests_per_step * batch}x{steps}", model),
        model_series("nv_inference_exec_count", f"0+{requests_per_step}x{steps}", model),
        model_series(
            "nv_inference_request_duration_us",
            f"0+{requests_per_step * duration_us_per_request}x{steps}",
            model,
        ),
        model_series(
            "nv_inference_queue_duration_us", f"0+{requests_per_step * queue_us_per_request}x{steps}", model
        ),
    ]


def slow_start(
    minutes: int, *, pods: tuple[str, ...] = (POD_A, POD_B), steps: int = 120
) -> list[dict[str, str]]:
    """A first start whose models take `minutes` to load, at a 15 s step: the target is scraped and
    down (prometheus-operator scrapes pods that are not ready), the pod is Running and not ready,
    then the metrics port opens and the pod turns ready one readiness period later."""
    loading = minutes * 4
    out = deployment_state(
        available=f"0x{loading} {len(pods)}x{steps - loading - 1}", replicas=f"{len(pods)}x{steps}"
    )
    for index, pod in enumerate(pods):
        out.append(target(pod, f"10.0.0.{index + 1}:8002", f"0x{loading - 1} 1x{steps - loading}"))
        out += pod_state(
            pod, ready=f"0x{loading} 1x{steps - loading - 1}", started=f"0x{steps}", running=f"1x{steps}"
        )
    return out


def alert_tests() -> list[dict[str, Any]]:
    """One promtool test group per behaviour; defaults: dev values (see charts/triton/values.yaml)."""
    return [
        *agent_tests(),
        {
            "name": "7-minute first start: no target down, metrics missing or load failing",
            "interval": "15s",
            "input_series": slow_start(7),
            "alert_rule_test": silent(STARTING, "6m30s", "12m", "19m"),
        },
        {
            # The production review's outage: the only serving pod is gone at 5m; its replacement's
            # container never goes live and the startup probe restarts it every ~630 s, so its
            # current run is always inside the startup budget. Only its first run is a start.
            "name": "a rollout whose pods never finish starting pages, and keeps paging",
            "interval": "30s",
            "input_series": [
                target(OLD_POD, "10.0.0.9:8002", "1x9 stale"),
                *pod_state(OLD_POD, ready="1x9 stale", started="-3600x9 stale", running="1x9 stale"),
                model_series("nv_inference_exec_count", "0+1x9 stale", pod=OLD_POD, instance="10.0.0.9:8002"),
                *deployment_state(available="1x9 0x120", replicas="1x130"),
                *never_starting_pod(POD_A, BASE["instance"], first_step=10, steps=131),
            ],
            "alert_rule_test": [
                # First run, inside its budget: a start in progress (the model's absence pages already).
                *silent(("TritonTargetDown", "TritonMetricsMissing", "TritonModelLoadFailing"), "14m30s"),
                alert("TritonModelUnavailable", "14m30s", [{"severity": "critical", "model": "linear"}]),
                *[
                    check
                    for at in ("30m", "45m", "60m")
                    for check in (
                        alert("TritonTargetDown", at, [target_down()]),
                        alert("TritonMetricsMissing", at, [{"severity": "critical"}]),
                        alert(
                            "TritonNoReplicaAvailable",
                            at,
                            [{"severity": "critical", "deployment": DEPLOYMENT}],
                        ),
                        alert("TritonModelLoadFailing", at, [{"severity": "critical", "pod": POD_A}]),
                    )
                ],
                # Three restarts without ever being ready, within 3 x (budget + 5 m back-off).
                alert("TritonPodCrashLooping", "45m", [{"severity": "critical", "pod": POD_A}]),
                alert("TritonPodCrashLooping", "60m", [{"severity": "critical", "pod": POD_A}]),
            ],
        },
        {
            # The review's lost node: the node stops answering at 30m; at 35m the pod is marked for
            # deletion (taint-based eviction) and its endpoint removed, but it stays Terminating, phase
            # Running and not ready while the node is away. Its replacement is not this pod's business.
            "name": "a pod on a lost node (Terminating, not ready, no target) fires nothing",
            "interval": "30s",
            "input_series": [
                target(POD_A, BASE["instance"], "1x59 0x9 stale"),
                *pod_state(POD_A, ready="1x60 0x59", started="0x120", running="1x120"),
                kube_state("kube_pod_deletion_timestamp", "_x70 2100x50", POD_A),
                model_series("nv_inference_exec_count", "5x59 stale", pod=POD_A),
                target(POD_B, INSTANCE_B, "1x120"),
                *pod_state(POD_B, ready="1x120", started="0x120", running="1x120"),
                model_series("nv_inference_exec_count", "5x120", pod=POD_B, instance=INSTANCE_B),
                *deployment_state(available="2x60 1x59", replicas="2x120"),
            ],
            "alert_rule_test": silent(
                (
                    "TritonModelLoadFailing",
                    "TritonTargetDown",
                    "TritonPodCrashLooping",
                    "TritonModelUnavailable",
                ),
                "36m",
                "45m",
                "59m",
            ),
        },
        {
            # Rolling update (maxUnavailable 0): the surge pod's image cannot be pulled, so its container
            # never starts (no start time, no restarts) and the old pod keeps serving. After
            # progressDeadlineSeconds (1200 s) the Deployment reports Progressing=False.
            "name": "a rollout stuck on an image pull warns once; nothing pages while the old pod serves",
            "interval": "30s",
            "input_series": [
                target(OLD_POD, "10.0.0.9:8002", "1x80"),
                *pod_state(OLD_POD, ready="1x80", started="-3600x80", running="1x80"),
                target(POD_A, BASE["instance"], "_x4 0x76"),
                kube_state("kube_pod_status_ready", "_x4 0x76", POD_A, condition="true"),
                kube_state("kube_pod_status_phase", "_x4 1x76", POD_A, phase="Pending"),
                kube_state("kube_pod_status_phase", "_x4 0x76", POD_A, phase="Running"),
                kube_state("kube_pod_container_status_restarts_total", "_x4 0x76", POD_A, container="triton"),
                kube_state(
                    "kube_pod_container_status_waiting_reason",
                    "_x4 1x76",
                    POD_A,
                    container="triton",
                    reason="ImagePullBackOff",
                ),
                *deployment_state(available="1x80", replicas="1x80"),
                *[
                    {
                        "series": f'kube_deployment_status_condition{{namespace="{NS}",deployment="{DEPLOYMENT}",'
                        f'condition="Progressing",status="{status}",reason="{reason}",'
                        f'instance="{KSM_TARGET["instance"]}",job="{KSM_TARGET["job"]}"}}',
                        "values": values,
                    }
                    for status, reason, values in (
                        ("true", "ReplicaSetUpdated", "1x41 stale"),
                        ("false", "ReplicaSetUpdated", "0x41 stale"),
                        ("true", "ProgressDeadlineExceeded", "_x42 0x38"),
                        ("false", "ProgressDeadlineExceeded", "_x42 1x38"),
                    )
                ],
            ],
            "alert_rule_test": [
                *silent(("TritonRolloutStuck",), "24m"),
                alert("TritonRolloutStuck", "27m", [{"severity": "warning", "deployment": DEPLOYMENT}]),
                *silent(
                    (
                        "TritonTargetDown",
                        "TritonMetricsMissing",
                        "TritonNoReplicaAvailable",
                        "TritonModelLoadFailing",
                        "TritonPodCrashLooping",
                    ),
                    "27m",
                    "40m",
                ),
            ],
        },
        {
            # kube-state-metrics is rescheduled at 15m (a rolling update: the new exporter is scraped
            # from 14m, the old one is gone at 16m): every series it exports changes `instance`. Pod A
            # finished its start and does not serve a committed model; pod B crash loops.
            "name": "kube-state-metrics rescheduled mid-incident: each alert stays one firing alert",
            "interval": "1m",
            "input_series": [
                target(POD_A, BASE["instance"], "1x40"),
                *rescheduled_exporter("kube_pod_status_ready", POD_A, "0", condition="true"),
                *rescheduled_exporter("kube_pod_status_phase", POD_A, "1", phase="Running"),
                *rescheduled_exporter("kube_pod_container_state_started", POD_A, "-3600", container="triton"),
                *rescheduled_exporter(
                    "kube_pod_container_status_restarts_total", POD_A, "0", container="triton"
                ),
                *rescheduled_exporter("kube_pod_status_ready", POD_B, "0", condition="true"),
                *rescheduled_exporter("kube_pod_status_phase", POD_B, "1", phase="Running"),
                *rescheduled_exporter(
                    "kube_pod_container_status_restarts_total", POD_B, "0+1", container="triton"
                ),
            ],
            "alert_rule_test": [
                check
                for at in ("13m", "14m", "15m", "16m", "17m", "30m")
                for check in (
                    # B is not ready and has restarted: its committed models do not serve either.
                    alert(
                        "TritonModelLoadFailing",
                        at,
                        [{"severity": "critical", "pod": POD_A}, {"severity": "critical", "pod": POD_B}],
                    ),
                    alert("TritonPodCrashLooping", at, [{"severity": "critical", "pod": POD_B}]),
                )
            ],
        },
        {
            "name": "a ready pod whose target goes down fires after `for`; a healthy one stays silent",
            "interval": "15s",
            "input_series": [
                target(POD_A, BASE["instance"], "0x3 1x7 0x69"),
                target(POD_B, INSTANCE_B, "0x3 1x77"),
                *pod_state(POD_A, ready="0x3 1x77", started="0x81", running="1x81"),
                *pod_state(POD_B, ready="0x3 1x77", started="0x81", running="1x81"),
            ],
            "alert_rule_test": [
                # Down from 3m; the containers are younger than the startup budget: readiness counts.
                alert("TritonTargetDown", "7m30s", []),
                alert("TritonTargetDown", "9m", [target_down()]),
                alert("TritonMetricsMissing", "9m", []),
            ],
        },
        {
            "name": "past its startup budget, a pod whose target is down fires, ready or not",
            "interval": "30s",
            "input_series": [
                target(POD_A, BASE["instance"], "0x60"),
                *pod_state(POD_A, ready="0x60", started="0x60", running="1x60"),
            ],
            "alert_rule_test": [
                alert("TritonTargetDown", "15m", []),
                alert("TritonTargetDown", "16m", [target_down()]),
                alert("TritonMetricsMissing", "15m", []),
                alert("TritonMetricsMissing", "16m", [{"severity": "critical"}]),
                alert("TritonModelLoadFailing", "20m", []),
                alert("TritonModelLoadFailing", "21m", [{"severity": "critical", "pod": POD_A}]),
            ],
        },
        {
            "name": "scale-down: a deleted pod's series (down, not ready, then stale) fire nothing",
            "interval": "15s",
            "input_series": [
                target(POD_A, BASE["instance"], "1x19 0x3 stale"),
                target(POD_B, INSTANCE_B, "1x100"),
                *pod_state(
                    POD_A,
                    ready="1x19 0x3 stale",
                    started="-3600x22 stale",
                    running="1x22 stale",
                    restarts="2x22 stale",
                ),
                *pod_state(POD_B, ready="1x100", started="-3600x100", running="1x100"),
            ],
            "alert_rule_test": silent((*STARTING, "TritonPodCrashLooping"), "6m", "10m", "15m"),
        },
        {
            "name": "without kube-state-metrics target down stays silent; metrics missing fires when none is up",
            "interval": "15s",
            "input_series": [series("up", "0x60")],
            "alert_rule_test": [
                alert("TritonMetricsMissing", "3m", []),
                alert("TritonMetricsMissing", "10m", [{"severity": "critical"}]),
                alert("TritonTargetDown", "14m", []),
            ],
        },
        {
            "name": "no series at all: metrics missing still fires",
            "interval": "15s",
            "input_series": [{"series": 'unrelated_metric{job="other"}', "values": "1x60"}],
            "alert_rule_test": [alert("TritonMetricsMissing", "10m", [{"severity": "critical"}])],
        },
        {
            "name": "ready pods but no target scraped (a broken ServiceMonitor): metrics missing fires",
            "interval": "15s",
            "input_series": pod_state(POD_A, ready="0x3 1x36", started="0x40", running="1x40"),
            "alert_rule_test": [
                alert("TritonMetricsMissing", "5m30s", []),
                alert("TritonMetricsMissing", "7m", [{"severity": "critical"}]),
            ],
        },
        {
            "name": "per-request latency: 300 ms per request at batch 8 fires (37.5 ms per item would not)",
            "interval": "15s",
            "input_series": traffic("linear", requests_per_step=2, batch=8, duration_us_per_request=300_000)
            + traffic("mlp", requests_per_step=2, batch=8, duration_us_per_request=200_000),
            "alert_rule_test": [
                alert("TritonHighMeanLatency", "5m", []),
                alert("TritonHighMeanLatency", "15m", [{"severity": "warning", "model": "linear"}]),
            ],
            "promql_expr_test": [
                {
                    "expr": "triton:request_latency_us:mean1m",
                    "eval_time": "10m",
                    "exp_samples": [
                        {
                            "labels": f'triton:request_latency_us:mean1m{{model="linear",namespace="{NS}"}}',
                            "value": 300000,
                        },
                        {
                            "labels": f'triton:request_latency_us:mean1m{{model="mlp",namespace="{NS}"}}',
                            "value": 200000,
                        },
                    ],
                },
                {
                    "expr": "triton:batch_size:mean1m",
                    "eval_time": "10m",
                    "exp_samples": [
                        {
                            "labels": f'triton:batch_size:mean1m{{model="linear",namespace="{NS}"}}',
                            "value": 8,
                        },
                        {"labels": f'triton:batch_size:mean1m{{model="mlp",namespace="{NS}"}}', "value": 8},
                    ],
                },
            ],
        },
        {
            "name": "queue time per request above 50 ms for 10m fires; 20 ms does not",
            "interval": "15s",
            "input_series": traffic(
                "linear",
                requests_per_step=4,
                batch=2,
                duration_us_per_request=100_000,
                queue_us_per_request=80_000,
            )
            + traffic(
                "mlp",
                requests_per_step=4,
                batch=2,
                duration_us_per_request=100_000,
                queue_us_per_request=20_000,
            ),
            "alert_rule_test": [
                alert("TritonQueueTimeHigh", "8m", []),
                alert("TritonQueueTimeHigh", "15m", [{"severity": "warning", "model": "linear"}]),
            ],
        },
        {
            "name": "error ratio counts every failure reason, not only execution failures",
            "interval": "15s",
            "input_series": [
                model_series("nv_inference_request_success", "0+90x80"),
                model_series("nv_inference_request_failure", "0+10x80", reason="REJECTED"),
                model_series("nv_inference_request_failure", "0x80", reason="BACKEND"),
                model_series("nv_inference_request_success", "0+99x80", model="mlp"),
                model_series("nv_inference_request_failure", "0+1x80", model="mlp", reason="REJECTED"),
            ],
            "alert_rule_test": [
                alert("TritonErrorRatioHigh", "3m", []),
                alert("TritonErrorRatioHigh", "10m", [{"severity": "critical", "model": "linear"}]),
            ],
        },
        {
            "name": "error ratio at negligible traffic stays silent",
            "interval": "15s",
            "input_series": [
                model_series("nv_inference_request_success", "0+0x40 1+0x40"),
                model_series("nv_inference_request_failure", "0+0x40 1+0x40", reason="REJECTED"),
            ],
            "alert_rule_test": [alert("TritonErrorRatioHigh", "15m", [])],
        },
        {
            "name": "scale-down: one of two pods goes away, its models still load elsewhere: nothing fires",
            "interval": "15s",
            "input_series": [
                model_series("nv_inference_exec_count", "0+1x100", pod=POD_A),
                model_series("nv_inference_exec_count", "0+1x19 stale", pod=POD_B, instance=INSTANCE_B),
            ],
            "alert_rule_test": silent(("TritonModelUnavailable",), "8m", "12m", "18m"),
        },
        {
            "name": "rollout: every pod replaced by one with a new name, the model on the new ones: nothing fires",
            "interval": "15s",
            "input_series": [
                model_series("nv_inference_exec_count", "0+1x40 stale", pod=POD_A),
                model_series("nv_inference_exec_count", "0+1x40 stale", pod=POD_B, instance=INSTANCE_B),
                model_series(
                    "nv_inference_exec_count",
                    "_x31 0+1x67",
                    pod="triton-5c6b7d8f9-g5h6j",
                    instance="10.0.0.3:8002",
                ),
                model_series(
                    "nv_inference_exec_count",
                    "_x33 0+1x65",
                    pod="triton-5c6b7d8f9-k7l8m",
                    instance="10.0.0.4:8002",
                ),
            ],
            "alert_rule_test": silent(("TritonModelUnavailable",), "9m", "12m", "20m"),
        },
        {
            "name": "a model gone from every pod fires (per model, no pod); an intentional unload stops after the lookback",
            "interval": "15s",
            "input_series": [
                model_series("nv_inference_exec_count", "0+1x20 stale", pod=POD_A),
                model_series("nv_inference_exec_count", "0+1x20 stale", pod=POD_B, instance=INSTANCE_B),
                model_series("nv_inference_exec_count", "0+1x100", model="mlp", pod=POD_A),
                model_series(
                    "nv_inference_exec_count", "0+1x100", model="mlp", pod=POD_B, instance=INSTANCE_B
                ),
            ],
            "alert_rule_test": [
                alert("TritonModelUnavailable", "8m", []),
                alert("TritonModelUnavailable", "12m", [{"severity": "critical", "model": "linear"}]),
                alert("TritonModelUnavailable", "22m", []),
            ],
        },
        {
            "name": "p99 latency from Triton's summary",
            "interval": "15s",
            "input_series": [
                model_series("nv_inference_request_summary_us", "1500000x80", quantile="0.99"),
                model_series("nv_inference_request_summary_us", "900000x80", model="mlp", quantile="0.99"),
            ],
            "alert_rule_test": [
                alert("TritonHighP99Latency", "15m", [{"severity": "warning", "model": "linear"}])
            ],
        },
        {
            "name": "a started pod that is not ready (committed models not serving) fires model load failing",
            "interval": "15s",
            "input_series": [
                # Triton is up (its startup models loaded), a committed version does not serve.
                target("triton-7d9f-abcde", BASE["instance"], "1x80"),
                *pod_state("triton-7d9f-abcde", ready="0x80", started="0x80", running="1x80"),
                target("triton-7d9f-fghij", INSTANCE_B, "1x80"),
                *pod_state("triton-7d9f-fghij", ready="1x80", started="0x80", running="1x80"),
                # Another release in the namespace is not this release's business.
                *pod_state("triton-canary-7d9f-klmno", ready="0x80", started="-3600x80", running="1x80"),
            ],
            "alert_rule_test": [
                alert("TritonModelLoadFailing", "5m", []),
                alert(
                    "TritonModelLoadFailing",
                    "15m",
                    [{"severity": "critical", "pod": "triton-7d9f-abcde"}],
                ),
            ],
        },
        {
            "name": "restarts every few minutes fire crash looping; a looping pod deleted in a rollout stops at once",
            "interval": "1m",
            "input_series": [
                kube_state(
                    "kube_pod_container_status_restarts_total",
                    "0+1x30",
                    "triton-7d9f-aaaaa",
                    container="triton",
                ),
                kube_state(
                    "kube_pod_container_status_restarts_total",
                    "0x30",
                    "triton-7d9f-bbbbb",
                    container="triton",
                ),
                kube_state(
                    "kube_pod_container_status_restarts_total",
                    "0+1x10 stale",
                    "triton-7d9f-ccccc",
                    container="triton",
                ),
            ],
            "alert_rule_test": [
                alert("TritonPodCrashLooping", "2m", []),
                alert(
                    "TritonPodCrashLooping",
                    "9m",
                    [
                        {"severity": "critical", "pod": "triton-7d9f-aaaaa"},
                        {"severity": "critical", "pod": "triton-7d9f-ccccc"},
                    ],
                ),
                alert(
                    "TritonPodCrashLooping",
                    "13m",
                    [{"severity": "critical", "pod": "triton-7d9f-aaaaa"}],
                ),
            ],
        },
        {
            "name": "GPU memory above 95 % fires; 50 % does not",
            "interval": "15s",
            "input_series": [
                series("nv_gpu_memory_used_bytes", "96x40", gpu_uuid="GPU-a"),
                series("nv_gpu_memory_total_bytes", "100x40", gpu_uuid="GPU-a"),
                series("nv_gpu_memory_used_bytes", "50x40", gpu_uuid="GPU-b"),
                series("nv_gpu_memory_total_bytes", "100x40", gpu_uuid="GPU-b"),
            ],
            "alert_rule_test": [
                alert(
                    "TritonGPUMemoryCritical",
                    "8m",
                    [{"severity": "critical", "pod": POD_A, "gpu_uuid": "GPU-a"}],
                )
            ],
        },
        {
            "name": "2 % errors burn fast (page) and slow (warn); 0.2 % stays under both",
            "interval": "1m",
            "input_series": [
                model_series("nv_inference_request_success", "0+980x120"),
                model_series("nv_inference_request_failure", "0+20x120", reason="BACKEND"),
                model_series("nv_inference_request_success", "0+998x120", model="mlp"),
                model_series("nv_inference_request_failure", "0+2x120", model="mlp", reason="BACKEND"),
            ],
            "alert_rule_test": [
                alert(
                    "TritonErrorBudgetBurn",
                    "90m",
                    [{"severity": "critical", "model": "linear"}, {"severity": "warning", "model": "linear"}],
                ),
            ],
        },
        {
            "name": "0.8 % errors burn slowly: a warning, no page",
            "interval": "1m",
            "input_series": [
                model_series("nv_inference_request_success", "0+992x420"),
                model_series("nv_inference_request_failure", "0+8x420", reason="BACKEND"),
            ],
            "alert_rule_test": [
                alert("TritonErrorBudgetBurn", "6h30m", [{"severity": "warning", "model": "linear"}]),
            ],
        },
    ]


def write_rule_file(item: render.Rendering, path: Path) -> Path:
    """`item`'s rules without annotations (prose, covered below): promtool compares annotations
    exactly; the firing logic is untouched."""
    path.write_text(yaml.safe_dump(rules.rule_file(item, annotations=False), sort_keys=False))
    return path


def promtool_test(rule_file: Path, groups: list[dict[str, Any]], scratch: Path) -> str:
    """Run `promtool test rules` on `groups` against `rule_file`; its output, asserted successful."""
    assert PROMTOOL is not None
    tests = {"rule_files": [str(rule_file)], "evaluation_interval": "30s", "tests": groups}
    return promtool_runner.run(PROMTOOL, tests, scratch, "triton-rules.test.yaml")


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory) -> Path:
    """The dev render's rules."""
    return write_rule_file(render.render("dev"), tmp_path_factory.mktemp("rules") / "triton-rules.yaml")


def test_promtool_checks_the_rendered_rules(rule_file):
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 30 rules found" in result.stdout


def test_every_alert_fires_when_it_should_and_only_then(rule_file, tmp_path):
    groups = alert_tests()
    start = time.perf_counter()
    promtool_test(rule_file, groups, tmp_path)
    print(f"promtool test rules: {len(groups)} groups in {time.perf_counter() - start:.2f} s")


def test_the_startup_budget_follows_the_startup_probe(render_with_rules, tmp_path):
    """A 25-minute startup budget (10 s x 150): a 22-minute first start fires nothing, where the
    default 10-minute budget would page three times over."""
    item = render_with_rules({"probes": {"startup": {"periodSeconds": 10, "failureThreshold": 150}}})
    exprs = {
        rule["alert"]: " ".join(rule["expr"].split())
        for group in rules.rule_file(item)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert 'container="triton"} > 1500' in exprs["TritonTargetDown"]
    assert 'container="triton"} <= 1500' in exprs["TritonMetricsMissing"]
    assert 'container="triton"} > 1500' in exprs["TritonModelLoadFailing"]
    start = {
        "name": "22-minute first start inside a 25-minute startup budget",
        "interval": "15s",
        "input_series": slow_start(22, steps=140),
        "alert_rule_test": silent(STARTING, "16m", "21m30s", "30m"),
    }
    promtool_test(write_rule_file(item, tmp_path / "long-budget.yaml"), [start], tmp_path)
    # The same start under the default budget: the case above is not one that passes anyway.
    with pytest.raises(AssertionError, match="TritonTargetDown"):
        promtool_test(write_rule_file(render.render("dev"), tmp_path / "default.yaml"), [start], tmp_path)


def test_every_alert_is_covered_by_a_unit_test():
    alerts = {
        rule["alert"]
        for group in rules.rule_file(render.render("dev"))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    tested = {case["alertname"] for group in alert_tests() for case in group.get("alert_rule_test", [])}
    assert alerts == tested


def test_every_alert_has_a_runbook_section_and_the_kube_state_metrics_need_is_written_down():
    alerts = {
        rule["alert"]
        for group in rules.rule_file(render.render("dev"))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    runbooks = (ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
    sections = dict((part.split("\n", 1)[0].strip(), part) for part in runbooks.split("\n## ")[1:])
    assert set(sections) == alerts
    assert "kube-state-metrics" in sections["TritonTargetDown"]
    values = (ROOT / "charts" / "triton" / "values.yaml").read_text(encoding="utf-8")
    target_down = values[values.index("      targetDown:") : values.index("      metricsMissing:")]
    assert "kube-state-metrics" in target_down and "TritonMetricsMissing" in target_down
    # The rules match kube-state-metrics' series on the pods' own namespace and pod labels, which
    # they keep only when it is scraped with honorLabels: both places say so.
    rule_values = values[values.index("  prometheusRule:") : values.index("    alerts:")]
    assert "honorLabels: true" in rule_values
    assert "honorLabels: true" in runbooks.split("\n## ", 1)[0]


def test_every_alert_carries_severity_namespace_summary_and_runbook():
    for env in ("dev", "prod"):
        for group in rules.rule_file(render.render(env))["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
                assert rule["labels"]["namespace"] == f"triton-{env}", rule["alert"]
                assert rule["labels"]["triton_release"] == RELEASE, rule["alert"]
                assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
                assert rule["annotations"]["runbook_url"].endswith("#" + rule["alert"].lower()), rule["alert"]


def test_latency_is_never_divided_by_batch_items():
    latency_rules = 0
    for group in rules.rule_file(render.render("dev"))["groups"]:
        for rule in group["rules"]:
            expr = " ".join(rule["expr"].split())
            if "duration_us" in expr:
                assert "nv_inference_count" not in expr, rule.get("record") or rule.get("alert")
                latency_rules += 1
    assert latency_rules, "no rule reads a duration: nothing was checked"


def test_rules_follow_their_values(render_with_rules):
    item = render_with_rules(
        {"monitoring": {"prometheusRule": {"alerts": {"meanLatency": {"thresholdMs": 40, "for": "1m"}}}}}
    )
    (mean,) = [
        r
        for g in rules.rule_file(item)["groups"]
        for r in g["rules"]
        if r.get("alert") == "TritonHighMeanLatency"
    ]
    assert mean["expr"].endswith("> 40000") and mean["for"] == "1m"


def test_the_deployment_and_crash_loop_windows_follow_the_startup_budget_or_their_values(render_with_rules):
    def alerts(item):
        return {r["alert"]: r for g in rules.rule_file(item)["groups"] for r in g["rules"] if "alert" in r}

    # Defaults: the progress deadline (budget 600 s + 600 s for the pull) and 3 x (600 s + 300 s).
    default = alerts(render.render("dev"))
    assert default["TritonNoReplicaAvailable"]["for"] == "1200s"
    assert "[2700s]" in default["TritonPodCrashLooping"]["expr"]
    longer = alerts(
        render_with_rules({"probes": {"startup": {"periodSeconds": 10, "failureThreshold": 150}}})
    )
    assert longer["TritonNoReplicaAvailable"]["for"] == "2100s"
    assert "[5400s]" in longer["TritonPodCrashLooping"]["expr"]
    overridden = alerts(
        render_with_rules(
            {
                "monitoring": {
                    "prometheusRule": {
                        "alerts": {"noReplicaAvailable": {"for": "30m"}, "crashLooping": {"window": "1h"}}
                    }
                }
            }
        )
    )
    assert overridden["TritonNoReplicaAvailable"]["for"] == "30m"
    assert "[1h]" in overridden["TritonPodCrashLooping"]["expr"]


@pytest.fixture
def render_with_rules(tmp_path):
    def render_dev(overrides):
        extra = tmp_path / "rules-values.yaml"
        extra.write_text(yaml.safe_dump(overrides))
        return render.render("dev", extra_files=[extra])

    return render_dev


# Series captured on real GPUs (tests/resources/gpu/README.md says where each comes from).
H200_CAPTURES = ("h200-triton-2.51-metrics-idle.txt", "h200-triton-2.51-metrics-busy.txt")


@pytest.fixture(scope="module")
def gpu_inputs() -> gpu_series.Inputs:
    """The GPU environment's render (prod, as `make test-gpu` runs it): its rules, its GPU-memory
    threshold and the labels its ServiceMonitor's scrape adds."""
    return gpu_bundle.observability_inputs(gpu_bundle.render_gpu())


def test_series_captured_on_a_real_gpu_are_replayed():
    assert set(H200_CAPTURES) <= {path.name for path in gpu_series.captures()}


@pytest.mark.parametrize("capture", gpu_series.captures(), ids=lambda path: path.name)
def test_gpu_memory_alert_on_series_captured_on_a_real_gpu(capture, gpu_inputs, tmp_path):
    """On Triton's own nv_gpu_* series and labels: silent on the memory use as captured (a model
    loaded: about 1 % of an H200), firing per pod and GPU once the used bytes are scaled just above
    the threshold and its `for` has passed, silent just below it."""
    samples = gpu_series.read(capture.read_text(encoding="utf-8"))
    assert gpu_series.problems(samples) == []
    verdict = gpu_series.check_alert(PROMTOOL, gpu_inputs, samples, tmp_path)
    assert verdict["fires_as_captured"] == []
    assert 0 < max(verdict["captured_ratio"].values()) < gpu_inputs.threshold - gpu_series.MARGIN
    assert verdict["fires_scaled_to"] > gpu_inputs.threshold > verdict["silent_scaled_to"]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("> 0.95", "> 0.99"),
        ("max by (namespace, pod, gpu_uuid) (nv_gpu", "max by (namespace, pod) (nv_gpu"),
        ('nv_gpu_memory_used_bytes{namespace="triton-prod"', 'nv_gpu_memory_used_bytes{namespace="triton"'),
    ],
    ids=["threshold-off-its-value", "gpu-label-dropped", "selector-misses-the-scrape"],
)
def test_the_captured_gpu_check_fails_on_a_wrong_rule(gpu_inputs, tmp_path, old, new):
    (rule,) = [
        rule
        for group in gpu_inputs.rules["groups"]
        for rule in group["rules"]
        if rule.get("alert") == gpu_series.ALERT
    ]
    assert old in rule["expr"]
    broken = _inputs_with(gpu_inputs, rule["expr"], rule["expr"].replace(old, new))
    capture = gpu_series.CAPTURES / H200_CAPTURES[1]
    with pytest.raises(AssertionError, match=gpu_series.ALERT):
        gpu_series.check_alert(
            PROMTOOL, broken, gpu_series.read(capture.read_text(encoding="utf-8")), tmp_path
        )


def _inputs_with(inputs: gpu_series.Inputs, expr: str, replacement: str) -> gpu_series.Inputs:
    text = inputs.to_json().replace(json.dumps(expr), json.dumps(replacement))
    assert text != inputs.to_json()
    return gpu_series.Inputs.from_json(text)
