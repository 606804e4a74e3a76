"""Checks for custom resources no OpenAPI schema covers offline.

Each check returns the problems the resource's operator would reject or silently ignore: a
ServiceMonitor that selects no Service port, an Argo CD Application whose values files do not
exist. Problems are plain strings naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DURATION = re.compile(r"^(0|([0-9]+(ms|s|m|h))+)$")

SERVICE_MONITOR_SPEC_FIELDS = {
    "attachMetadata",
    "bodySizeLimit",
    "endpoints",
    "jobLabel",
    "keepDroppedTargets",
    "labelLimit",
    "labelNameLengthLimit",
    "labelValueLengthLimit",
    "namespaceSelector",
    "podTargetLabels",
    "sampleLimit",
    "scrapeClass",
    "scrapeProtocols",
    "selector",
    "targetLabels",
    "targetLimit",
}
ENDPOINT_FIELDS = {
    "authorization",
    "basicAuth",
    "bearerTokenFile",
    "bearerTokenSecret",
    "enableHttp2",
    "filterRunning",
    "followRedirects",
    "honorLabels",
    "honorTimestamps",
    "interval",
    "metricRelabelings",
    "oauth2",
    "params",
    "path",
    "port",
    "proxyUrl",
    "relabelings",
    "scheme",
    "scrapeTimeout",
    "targetPort",
    "tlsConfig",
    "trackTimestampsStaleness",
}


def check_service_monitor(body: dict[str, Any], others: Sequence[dict[str, Any]]) -> list[str]:
    """What prometheus-operator needs from a ServiceMonitor, and that it selects a rendered Service port."""
    problems = _metadata_problems(body)
    spec = body.get("spec") or {}
    problems += [f"spec.{key}: unknown field" for key in sorted(set(spec) - SERVICE_MONITOR_SPEC_FIELDS)]
    if not (body.get("metadata", {}).get("labels") or {}).get("release"):
        problems.append("metadata.labels.release: missing; Prometheus selects ServiceMonitors by it")
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    if not selector:
        problems.append("spec.selector.matchLabels: required, or the monitor selects every Service")
    endpoints = spec.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        return [*problems, "spec.endpoints: at least one endpoint is required"]
    namespace = body.get("metadata", {}).get("namespace")
    match_names = (spec.get("namespaceSelector") or {}).get("matchNames") or []
    if namespace not in match_names:
        problems.append(f"spec.namespaceSelector.matchNames: should be limited to {namespace!r}")
    port_names = _selected_port_names(selector, namespace, others)
    if not port_names:
        problems.append("spec.selector: matches no rendered Service in the namespace")
    for index, endpoint in enumerate(endpoints):
        problems += _endpoint_problems(f"spec.endpoints[{index}]", endpoint, port_names)
    return problems


def _endpoint_problems(where: str, endpoint: dict[str, Any], port_names: set[str]) -> list[str]:
    problems = [f"{where}.{key}: unknown field" for key in sorted(set(endpoint) - ENDPOINT_FIELDS)]
    port = endpoint.get("port")
    if not port and "targetPort" not in endpoint:
        problems.append(f"{where}.port: required (a named Service port)")
    elif port and port_names and port not in port_names:
        problems.append(
            f"{where}.port: {port!r} is not a port of the selected Service ({sorted(port_names)})"
        )
    for key in ("interval", "scrapeTimeout"):
        if key in endpoint and not DURATION.match(str(endpoint[key])):
            problems.append(f"{where}.{key}: {endpoint[key]!r} is not a Prometheus duration")
    return problems


def _selected_port_names(
    selector: dict[str, str], namespace: str | None, others: Sequence[dict[str, Any]]
) -> set[str]:
    names: set[str] = set()
    for other in others:
        metadata = other.get("metadata", {})
        labels = metadata.get("labels") or {}
        if other.get("kind") != "Service" or metadata.get("namespace") != namespace:
            continue
        if all(labels.get(key) == value for key, value in selector.items()):
            names.update(port.get("name", "") for port in other.get("spec", {}).get("ports", []))
    return names


def check_prometheus_rule(body: dict[str, Any], others: Sequence[dict[str, Any]]) -> list[str]:
    """What prometheus-operator needs from a PrometheusRule: named groups of well-formed rules."""
    problems = _metadata_problems(body)
    if not (body.get("metadata", {}).get("labels") or {}).get("release"):
        problems.append("metadata.labels.release: missing; Prometheus selects rules by it")
    groups = (body.get("spec") or {}).get("groups")
    if not isinstance(groups, list) or not groups:
        return [*problems, "spec.groups: at least one group is required"]
    names = [group.get("name") for group in groups]
    problems += [
        f"spec.groups: duplicate group name {name!r}"
        for name in sorted({n for n in names if names.count(n) > 1})
    ]
    for index, group in enumerate(groups):
        where = f"spec.groups[{index}]"
        if not group.get("name"):
            problems.append(f"{where}.name: required")
        if "interval" in group and not DURATION.match(str(group["interval"])):
            problems.append(f"{where}.interval: {group['interval']!r} is not a Prometheus duration")
        for rule_index, rule in enumerate(group.get("rules") or []):
            problems += _rule_problems(f"{where}.rules[{rule_index}]", rule)
        if not group.get("rules"):
            problems.append(f"{where}.rules: at least one rule is required")
    return problems


def _rule_problems(where: str, rule: dict[str, Any]) -> list[str]:
    problems = []
    if bool(rule.get("alert")) == bool(rule.get("record")):
        problems.append(f"{where}: set exactly one of alert or record")
    if not str(rule.get("expr", "")).strip():
        problems.append(f"{where}.expr: required")
    if "for" in rule and not DURATION.match(str(rule["for"])):
        problems.append(f"{where}.for: {rule['for']!r} is not a Prometheus duration")
    if rule.get("record") and ("for" in rule or "annotations" in rule):
        problems.append(f"{where}: recording rules take no `for` or `annotations`")
    for key in ("labels", "annotations"):
        values = rule.get(key) or {}
        problems += [
            f"{where}.{key}.{name}: must be a string" for name, v in values.items() if not isinstance(v, str)
        ]
    return problems


def check_application(body: dict[str, Any], repository_root: Path) -> list[str]:
    """What Argo CD needs from an Application that deploys this chart from this repository."""
    problems = _metadata_problems(body)
    if body.get("apiVersion") != "argoproj.io/v1alpha1":
        problems.append(f"apiVersion: {body.get('apiVersion')!r} is not argoproj.io/v1alpha1")
    spec = body.get("spec") or {}
    if not spec.get("project"):
        problems.append("spec.project: required")
    source = spec.get("source") or {}
    for key in ("repoURL", "targetRevision", "path"):
        if not source.get(key):
            problems.append(f"spec.source.{key}: required")
    chart_path = repository_root / str(source.get("path", ""))
    if source.get("path") and not (chart_path / "Chart.yaml").is_file():
        problems.append(f"spec.source.path: {source['path']!r} holds no Chart.yaml in this repository")
    value_files = (source.get("helm") or {}).get("valueFiles") or []
    if not value_files:
        problems.append("spec.source.helm.valueFiles: list the base and environment values files")
    for value_file in value_files:
        if not (chart_path / value_file).resolve().is_file():
            problems.append(
                f"spec.source.helm.valueFiles: {value_file!r} does not exist relative to the chart"
            )
    destination = spec.get("destination") or {}
    if not destination.get("namespace"):
        problems.append("spec.destination.namespace: required")
    if bool(destination.get("server")) == bool(destination.get("name")):
        problems.append("spec.destination: set exactly one of server or name")
    return problems


def _metadata_problems(body: dict[str, Any]) -> list[str]:
    metadata = body.get("metadata") or {}
    return [f"metadata.{key}: required" for key in ("name", "namespace") if not metadata.get(key)]


CheckFunction = Callable[[dict[str, Any], Sequence[dict[str, Any]]], list[str]]

# Custom resources the chart renders, by (apiVersion, kind).
RENDERED_CHECKS: dict[tuple[str, str], CheckFunction] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): check_service_monitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): check_prometheus_rule,
}
