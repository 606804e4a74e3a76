"""Prometheus, run here on a rendering: a scrape configuration derived from the ServiceMonitor the
way prometheus-operator derives it (port, path, interval, timeout, target labels), a whole
configuration with the rendered rules (`rules.py`), and a real Prometheus server on loopback (Debian's
`prometheus`) with the few HTTP calls the live checks make."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tritonops import errors
from tritonops.chart import render
from tritonops.observability import rule_file
from tritonops.triton import server as triton_server


@dataclass(frozen=True)
class Target:
    """One pod the ServiceMonitor would select: its name, the address of its metrics port, and
    the addresses of its other scraped ports by port name (the agent's `agent-metrics`)."""

    pod: str
    address: str
    others: tuple[tuple[str, str], ...] = ()

    def address_of(self, port: str) -> str | None:
        return self.address if port == "metrics" else dict(self.others).get(port)


def scrape_config(
    item: render.Rendering, targets: Sequence[Target], endpoint_index: int = 0
) -> dict[str, Any]:
    """A scrape job equivalent to what prometheus-operator generates from one ServiceMonitor
    endpoint: job = the Service's name (unless the endpoint's relabelings set it), and namespace,
    service, pod, endpoint labels on every target that has an address for the endpoint's port."""
    monitor = item.one("ServiceMonitor")
    service = item.one("Service")
    endpoint = monitor["spec"]["endpoints"][endpoint_index]
    port_names = {port["name"] for port in service["spec"]["ports"]}
    if endpoint["port"] not in port_names:
        raise errors.InputError(
            f"ServiceMonitor endpoint port {endpoint['port']!r} is not a Service port {sorted(port_names)}"
        )
    namespace = monitor["metadata"]["namespace"]
    labels = {
        "job": service["metadata"]["name"],
        "namespace": namespace,
        "service": service["metadata"]["name"],
        "endpoint": endpoint["port"],
    }
    # The operator appends an endpoint's relabelings after its own: a static replacement wins.
    for relabeling in endpoint.get("relabelings", []):
        if relabeling.get("sourceLabels") or relabeling.get("action", "replace") != "replace":
            raise errors.InputError(
                f"ServiceMonitor endpoint {endpoint['port']!r}: only static `replace` relabelings run here"
            )
        labels[relabeling["targetLabel"]] = relabeling["replacement"]
    return {
        "job_name": f"serviceMonitor/{namespace}/{monitor['metadata']['name']}/{endpoint_index}",
        "metrics_path": endpoint.get("path", "/metrics"),
        "scrape_interval": endpoint.get("interval", "30s"),
        "scrape_timeout": endpoint.get("scrapeTimeout", "10s"),
        "static_configs": [
            {"targets": [address], "labels": {**labels, "pod": target.pod}}
            for target in targets
            if (address := target.address_of(endpoint["port"])) is not None
        ],
    }


class Prometheus:
    """A real Prometheus server on loopback (Debian's `prometheus`), for the live checks."""

    def __init__(self, config: dict[str, Any], work_dir: Path, port: int) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise errors.ToolError("prometheus is not installed; run `make setup`")
        work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = work_dir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = work_dir / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={work_dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--web.enable-lifecycle",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout_s: float = 30.0) -> None:

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise errors.ToolError(f"prometheus exited: {self.log_path.read_text()[-1000:]}")
            try:
                self._get("/-/ready")
                return
            except errors.TritonOpsError:
                time.sleep(0.2)
        raise errors.ToolError(f"prometheus not ready within {timeout_s} s")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""

        data = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        return list(data["data"]["result"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/alerts")["data"]["alerts"])

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/rules")["data"]["groups"])

    def stop(self) -> None:

        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def _get(self, path: str) -> dict[str, Any]:

        try:
            with triton_server.LOOPBACK_OPENER.open(self.url + path, timeout=10) as response:
                body = response.read()
        except (urllib.error.URLError, OSError) as error:
            raise errors.ToolError(f"{self.url}{path}: {error}") from error
        return dict(json.loads(body)) if body.strip().startswith(b"{") else {}


def prometheus_config(
    item: render.Rendering, targets: Sequence[Target], rule_path: Path, *, interval: str = "1s"
) -> dict[str, Any]:
    """A whole Prometheus configuration: a scrape job per ServiceMonitor endpoint that the targets
    have an address for (Triton's metrics, the agent's), and the rendered rules."""
    jobs = []
    for index in range(len(item.one("ServiceMonitor")["spec"]["endpoints"])):
        job = scrape_config(item, targets, index)
        if job["static_configs"]:
            jobs.append({**job, "scrape_interval": interval, "scrape_timeout": interval})
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rule_file.write_rule_file(item, rule_path))],
        "scrape_configs": jobs,
    }
