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


SCALED_OBJECT_SPEC_FIELDS = {
    "advanced",
    "cooldownPeriod",
    "fallback",
    "idleReplicaCount",
    "initialCooldownPeriod",
    "maxReplicaCount",
    "minReplicaCount",
    "pollingInterval",
    "scaleTargetRef",
    "triggers",
}
TRIGGER_FIELDS = {"authenticationRef", "metadata", "metricType", "name", "type", "useCachedMetrics"}
METRIC_TYPES = {"AverageValue", "Value", "Utilization"}


def check_scaled_object(body: dict[str, Any], others: Sequence[dict[str, Any]]) -> list[str]:
    """What KEDA needs from a ScaledObject: a rendered Deployment to scale that no HPA scales too,
    and well-formed triggers (a Prometheus one with an address, a query and a numeric threshold)."""
    problems = _metadata_problems(body)
    spec = body.get("spec") or {}
    problems += [f"spec.{key}: unknown field" for key in sorted(set(spec) - SCALED_OBJECT_SPEC_FIELDS)]
    namespace = body.get("metadata", {}).get("namespace")
    target = spec.get("scaleTargetRef") or {}
    deployment = _rendered(others, "Deployment", namespace, target.get("name"))
    if target.get("kind", "Deployment") != "Deployment" or deployment is None:
        problems.append("spec.scaleTargetRef: names no rendered Deployment in the namespace")
    elif "replicas" in (deployment.get("spec") or {}):
        # Every sync (helm upgrade, Argo CD) would reset the count KEDA's HPA chose.
        problems.append("spec.scaleTargetRef: the Deployment sets replicas, which the autoscaler owns")
    # KEDA creates an HPA for its target; a second one would fight it over the replicas.
    hpa_targets = {
        ((other.get("spec") or {}).get("scaleTargetRef") or {}).get("name")
        for other in others
        if other.get("kind") == "HorizontalPodAutoscaler"
        and other.get("metadata", {}).get("namespace") == namespace
    }
    if target.get("name") in hpa_targets:
        problems.append("spec.scaleTargetRef: a rendered HorizontalPodAutoscaler scales the same Deployment")
    low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high):
        problems.append(f"spec.minReplicaCount: {low!r} must be an integer no greater than maxReplicaCount")
    triggers = spec.get("triggers")
    if not isinstance(triggers, list) or not triggers:
        return [*problems, "spec.triggers: at least one trigger is required"]
    for index, trigger in enumerate(triggers):
        problems += _trigger_problems(f"spec.triggers[{index}]", trigger)
    return problems


def _trigger_problems(where: str, trigger: dict[str, Any]) -> list[str]:
    problems = [f"{where}.{key}: unknown field" for key in sorted(set(trigger) - TRIGGER_FIELDS)]
    if not trigger.get("type"):
        problems.append(f"{where}.type: required")
    if "metricType" in trigger and trigger["metricType"] not in METRIC_TYPES:
        problems.append(f"{where}.metricType: {trigger['metricType']!r} is not one of {sorted(METRIC_TYPES)}")
    metadata = trigger.get("metadata") or {}
    problems += [
        f"{where}.metadata.{key}: must be a string (KEDA reads trigger metadata as strings)"
        for key, value in metadata.items()
        if not isinstance(value, str)
    ]
    if trigger.get("type") == "prometheus":
        problems += [
            f"{where}.metadata.{key}: required" for key in ("serverAddress", "query") if not metadata.get(key)
        ]
        try:
            float(metadata.get("threshold", ""))
        except ValueError:
            problems.append(f"{where}.metadata.threshold: {metadata.get('threshold')!r} is not a number")
    return problems


def _rendered(
    others: Sequence[dict[str, Any]], kind: str, namespace: str | None, name: str | None
) -> dict[str, Any] | None:
    """The rendered object of that kind, namespace and name, if any."""
    return next(
        (
            other
            for other in others
            if other.get("kind") == kind
            and other.get("metadata", {}).get("namespace") == namespace
            and other.get("metadata", {}).get("name") == name
        ),
        None,
    )


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
    ("keda.sh/v1alpha1", "ScaledObject"): check_scaled_object,
}
