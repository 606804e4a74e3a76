"""A short, human summary of what a rendering would deploy."""

from __future__ import annotations

from typing import Any

from tritonops import rendering


def summarize(item: rendering.Rendering) -> str:
    """Namespace, workload, scheduling, model repository, probes and monitoring, one line each."""
    deployment = item.one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "triton")
    server_args = container["args"][container["args"].index("--") + 1 :]
    lines = [
        f"environment {item.environment.name}: release {item.environment.release} "
        f"in namespace {item.environment.namespace}",
        f"  image       {container['image']}",
        f"  replicas    {_replicas(item, deployment)}",
        f"  scheduling  {_scheduling(container, pod)}",
        f"  resources   {_resources(container)}",
        f"  models      {_model_source(item.values['modelRepository'])}; startup: {_startup(server_args, item)}",
        f"  probes      {_probes(container)}",
        f"  monitoring  {_monitoring(item)}",
        f"  objects     {', '.join(f'{m.kind}/{m.name}' for m in item.manifests)}",
    ]
    return "\n".join(lines)


def _replicas(item: rendering.Rendering, deployment: dict[str, Any]) -> str:
    hpas = item.of_kind("HorizontalPodAutoscaler")
    if hpas:
        spec = hpas[0].body["spec"]
        metrics = ", ".join(_metric_name(metric) for metric in spec["metrics"])
        text = f"HPA {spec['minReplicas']}-{spec['maxReplicas']} on {metrics}"
    else:
        text = str(deployment["spec"].get("replicas"))
    pdbs = item.of_kind("PodDisruptionBudget")
    if pdbs:
        budget = {k: v for k, v in pdbs[0].body["spec"].items() if k != "selector"}
        text += f"; PDB {budget}"
    return text


def _metric_name(metric: dict[str, Any]) -> str:
    if metric["type"] == "Resource":
        return f"{metric['resource']['name']} utilisation"
    source = metric[metric["type"].lower()]
    return f"{metric['type']} metric {source['metric']['name']} (target {source['target']['averageValue']})"


def _scheduling(container: dict[str, Any], pod: dict[str, Any]) -> str:
    gpus = {k: v for k, v in container["resources"]["limits"].items() if k.startswith("nvidia.com/")}
    if not gpus:
        return "CPU only (instance groups must be KIND_CPU)"
    selector = ", ".join(f"{k}={v}" for k, v in (pod.get("nodeSelector") or {}).items())
    return f"GPU {gpus} on nodes {selector}"


def _resources(container: dict[str, Any]) -> str:
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    return (
        f"cpu {requests['cpu']}/{limits['cpu']}, memory {requests['memory']}/{limits['memory']} "
        "(request/limit)"
    )


def _model_source(repository: dict[str, Any]) -> str:
    if repository["pvc"]["enabled"]:
        pvc = repository["pvc"]
        origin = (
            f"existing claim {pvc['existingClaim']}"
            if pvc["existingClaim"]
            else (f"NFS {pvc['nfs']['server']}:{pvc['nfs']['path']}")
        )
        return f"{repository['path']} from {origin}{' (read-only)' if pvc['readOnly'] else ''}"
    if repository["objectStore"]["enabled"]:
        return f"object store {repository['objectStore']['uri']}"
    if repository["download"]["enabled"]:
        return f"{len(repository['download']['artifacts'])} downloaded artifact(s), SHA-256 verified"
    return f"baked into the image at {repository['path']}"


def _startup(server_args: list[str], item: rendering.Rendering) -> str:
    models = [arg.split("=", 1)[1] for arg in server_args if arg.startswith("--load-model=")]
    committed = item.values["server"]["committedState"]
    text = ", ".join(models) or "none listed"
    if committed["enabled"]:
        text += f" + the committed state ({committed['file']})"
    return text


def _probes(container: dict[str, Any]) -> str:
    startup = container["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    return f"startup budget {budget}s on /v2/health/live; readiness = committed versions ready"


def _monitoring(item: rendering.Rendering) -> str:
    monitors = item.of_kind("ServiceMonitor")
    if not monitors:
        return "no ServiceMonitor"
    return f"ServiceMonitor release={monitors[0].body['metadata']['labels']['release']}"
