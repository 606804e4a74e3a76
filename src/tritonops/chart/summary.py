"""A short summary of what a rendering would deploy: `describe` gives the facts as plain data (what
`summary --json` prints), `summarize` the same facts as text for people."""

from __future__ import annotations

from typing import Any

from tritonops.chart import render


def describe(item: render.Rendering) -> dict[str, Any]:
    """Namespace, workload, scheduling, model repository, probes, monitoring and objects, as JSON-able data."""
    deployment = item.one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "triton")
    args = container.get("args", [])
    server_args = args[args.index("--") + 1 :] if "--" in args else args
    committed = item.values["server"]["committedState"]
    resources = container.get("resources") or {}
    return {
        "environment": item.environment.name,
        "release": item.environment.release,
        "namespace": item.environment.namespace,
        "image": container["image"],
        "image_digest_pinned": bool(item.values["image"].get("digest")),
        "replicas": _replicas(item, deployment),
        "disruption_budget": _disruption_budget(item),
        "scheduling": {
            "gpus": {k: v for k, v in (resources.get("limits") or {}).items() if k.startswith("nvidia.com/")},
            "node_selector": dict(pod.get("nodeSelector") or {}),
        },
        "resources": {"requests": resources.get("requests") or {}, "limits": resources.get("limits") or {}},
        "models": {
            "path": item.values["modelRepository"]["path"],
            "source": _model_source(item.values["modelRepository"]),
            "startup": [arg.split("=", 1)[1] for arg in server_args if arg.startswith("--load-model=")],
            "committed_state": committed["file"] if committed["enabled"] else None,
        },
        "probes": {
            name: _probe(container.get(f"{name}Probe"))
            for name in ("startup", "liveness", "readiness")
            if container.get(f"{name}Probe")
        },
        "monitoring": {
            "service_monitor": _release_label(item, "ServiceMonitor"),
            "prometheus_rule": _release_label(item, "PrometheusRule"),
        },
        "objects": [{"kind": m.kind, "name": m.name} for m in item.manifests],
    }


def summarize(item: render.Rendering) -> str:
    """`describe` as text: one `key: value` line per fact, lists one item per line."""
    facts = describe(item)
    scheduling, models, probes = facts["scheduling"], facts["models"], facts["probes"]
    startup = ", ".join(models["startup"]) or "none listed"
    if models["committed_state"]:
        startup += f" + the committed state ({models['committed_state']})"
    pairs = [
        ("image", facts["image"] + ("" if facts["image_digest_pinned"] else " (tag, not digest-pinned)")),
        ("replicas", _replicas_text(facts["replicas"])),
        ("disruption", _pairs(facts["disruption_budget"]) or "no PodDisruptionBudget"),
        ("scheduling", _scheduling_text(scheduling)),
        ("resources", _resources_text(facts["resources"])),
        ("models", f"{models['path']} from {models['source']}"),
        ("startup", startup),
        *((f"{name} probe", _probe_text(probe)) for name, probe in probes.items()),
        ("monitoring", _monitoring_text(facts["monitoring"])),
    ]
    key_width = max(len(key) for key, _ in pairs) + 2
    lines = [f"{facts['environment']}: release {facts['release']} in namespace {facts['namespace']}"]
    lines += [f"  {key + ':':<{key_width}}{value}" for key, value in pairs]
    lines.append(f"  objects ({len(facts['objects'])}):")
    width = max((len(o["kind"]) for o in facts["objects"]), default=0)
    lines += [f"    {o['kind']:<{width}}  {o['name']}" for o in facts["objects"]]
    return "\n".join(lines)


def _replicas(item: render.Rendering, deployment: dict[str, Any]) -> dict[str, Any]:
    hpas = item.of_kind("HorizontalPodAutoscaler")
    if not hpas:
        return {"fixed": deployment["spec"].get("replicas")}
    spec = hpas[0].body["spec"]
    return {
        "autoscaled": {
            "min": spec.get("minReplicas", 1),
            "max": spec["maxReplicas"],
            "metrics": [_metric(metric) for metric in spec.get("metrics", [])],
        }
    }


def _metric(metric: dict[str, Any]) -> str:
    if metric["type"] == "Resource":
        resource = metric["resource"]
        target = resource.get("target", {})
        value = target.get("averageUtilization", target.get("averageValue", ""))
        return (
            f"{resource['name']} utilisation (target {value}{'%' if 'averageUtilization' in target else ''})"
        )
    source = metric[metric["type"][0].lower() + metric["type"][1:]]
    target = source.get("target", {})
    value = target.get("averageValue", target.get("value", ""))
    return f"{metric['type']} metric {source['metric']['name']} (target {value})"


def _disruption_budget(item: render.Rendering) -> dict[str, Any]:
    pdbs = item.of_kind("PodDisruptionBudget")
    if not pdbs:
        return {}
    return {key: value for key, value in pdbs[0].body["spec"].items() if key != "selector"}


def _model_source(repository: dict[str, Any]) -> str:
    if repository["pvc"]["enabled"]:
        pvc = repository["pvc"]
        origin = (
            f"existing claim {pvc['existingClaim']}"
            if pvc.get("existingClaim")
            else f"NFS {pvc['nfs']['server']}:{pvc['nfs']['path']}"
        )
        return f"{origin}{' (read-only)' if pvc.get('readOnly') else ''}"
    if repository["objectStore"]["enabled"]:
        return f"object store {repository['objectStore']['uri']}"
    if repository["download"]["enabled"]:
        return f"{len(repository['download']['artifacts'])} downloaded artifact(s), SHA-256 verified"
    return "the image"


def _probe(probe: dict[str, Any]) -> dict[str, Any]:
    if "httpGet" in probe:
        check = f"GET {probe['httpGet'].get('path', '/')}"
    elif "exec" in probe:
        check = " ".join(probe["exec"]["command"])
    else:
        check = ", ".join(key for key in ("tcpSocket", "grpc") if key in probe) or "unknown"
    period, threshold = probe.get("periodSeconds", 10), probe.get("failureThreshold", 3)
    return {
        "check": check,
        "period_s": period,
        "failure_threshold": threshold,
        "budget_s": period * threshold,
    }


def _release_label(item: render.Rendering, kind: str) -> str | None:
    found = item.of_kind(kind)
    if not found:
        return None
    return str((found[0].body["metadata"].get("labels") or {}).get("release", ""))


def _replicas_text(replicas: dict[str, Any]) -> str:
    if "fixed" in replicas:
        return str(replicas["fixed"])
    auto = replicas["autoscaled"]
    return f"{auto['min']}-{auto['max']} by HPA on {', '.join(auto['metrics']) or 'its default metric'}"


def _pairs(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in mapping.items())


def _scheduling_text(scheduling: dict[str, Any]) -> str:
    selector = ", ".join(f"{k}={v}" for k, v in scheduling["node_selector"].items())
    where = f"; nodes {selector}" if selector else ""
    if not scheduling["gpus"]:
        return f"CPU only (instance groups must be KIND_CPU){where}"
    return f"GPU {_pairs(scheduling['gpus'])}{where}"


def _resources_text(resources: dict[str, Any]) -> str:
    requests, limits = resources["requests"], resources["limits"]
    parts = [f"{name} {requests.get(name, '-')}/{limits.get(name, '-')}" for name in ("cpu", "memory")]
    return ", ".join(parts) + " (request/limit)"


def _probe_text(probe: dict[str, Any]) -> str:
    return (
        f"{probe['check']}, every {probe['period_s']}s, fails after {probe['failure_threshold']} "
        f"(budget {probe['budget_s']}s)"
    )


def _monitoring_text(monitoring: dict[str, Any]) -> str:
    parts = [
        f"{kind} (release={label})" if label else f"{kind}"
        for kind, label in (
            ("ServiceMonitor", monitoring["service_monitor"]),
            ("PrometheusRule", monitoring["prometheus_rule"]),
        )
        if label is not None
    ]
    return ", ".join(parts) or "no ServiceMonitor or PrometheusRule"
