"""Prometheus views of a rendering: the PrometheusRule's groups as a plain rule file (what
promtool and a bare Prometheus read), and a scrape configuration derived from the ServiceMonitor
the way prometheus-operator derives it (port, path, interval, timeout, target labels)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tritonops import errors, rendering


@dataclass(frozen=True)
class Target:
    """One pod the ServiceMonitor would select: its name and the address of its metrics port."""

    pod: str
    address: str


def rule_file(item: rendering.Rendering) -> dict[str, Any]:
    """The rendered PrometheusRule's spec as a Prometheus rule file ({"groups": [...]})."""
    rules = item.of_kind("PrometheusRule")
    if not rules:
        raise errors.InputError(
            f"{item.environment.name}: no PrometheusRule rendered; set monitoring.prometheusRule.enabled=true"
        )
    return {"groups": rules[0].body["spec"]["groups"]}


def write_rule_file(item: rendering.Rendering, path: Path) -> Path:
    path.write_text(yaml.safe_dump(rule_file(item), sort_keys=False), encoding="utf-8")
    return path


def scrape_config(item: rendering.Rendering, targets: Sequence[Target]) -> dict[str, Any]:
    """A scrape job equivalent to what prometheus-operator generates from the ServiceMonitor:
    job = the Service's name, and namespace, service, pod, endpoint labels on every target."""
    monitor = item.one("ServiceMonitor")
    service = item.one("Service")
    endpoint = monitor["spec"]["endpoints"][0]
    port_names = {port["name"] for port in service["spec"]["ports"]}
    if endpoint["port"] not in port_names:
        raise errors.InputError(
            f"ServiceMonitor endpoint port {endpoint['port']!r} is not a Service port {sorted(port_names)}"
        )
    namespace = monitor["metadata"]["namespace"]
    return {
        "job_name": f"serviceMonitor/{namespace}/{monitor['metadata']['name']}/0",
        "metrics_path": endpoint.get("path", "/metrics"),
        "scrape_interval": endpoint.get("interval", "30s"),
        "scrape_timeout": endpoint.get("scrapeTimeout", "10s"),
        "static_configs": [
            {
                "targets": [target.address],
                "labels": {
                    "job": service["metadata"]["name"],
                    "namespace": namespace,
                    "service": service["metadata"]["name"],
                    "pod": target.pod,
                    "endpoint": endpoint["port"],
                },
            }
            for target in targets
        ],
    }
