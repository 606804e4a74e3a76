"""What the kind tier does to its cluster: find out whether it can run, mock the GPU node, fill the
model repository claim, install the chart with the real helm, and reach pods through
`kubectl port-forward`. Kubernetes objects go through pytest-helm-charts' pykube client; nothing
here talks to a cluster the tier did not create (`make test-kind` names it in TRITONOPS_KIND_CLUSTER).
"""

from __future__ import annotations

import base64
import io
import os
import re
import selectors
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pykube
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CI_DIR = PROJECT_ROOT / "ci"
GPU_MOCK_DIR = CI_DIR / "gpu-mock"
CLUSTER_ENV = "TRITONOPS_KIND_CLUSTER"
# Set by the workflow's kind job: there, a missing tool is a failure, never a green skip.
REQUIRE_ENV = "TRITONOPS_REQUIRE_KIND"
IMAGE_ENV = "TRITONOPS_KIND_IMAGE"
TOOLS = ("docker", "kind", "helm", "kubectl")

# ci/kind-config.yaml labels its workers by pool; ci/gpu-mock/ makes the `gpu` one a GPU node.
POOL_LABEL = "tritonops.dev/kind-pool"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"

NAMESPACE = "triton-ci"
RELEASE = "triton"
CLAIM = "triton-models"  # values/ci-kind.yaml: modelRepository.pvc.existingClaim
SEED_IMAGE = "busybox:1.36.1"
TRITON_UID = 1000  # the chart's securityContext.runAsUser


def missing_tools(environ: Mapping[str, str] | None = None) -> str | None:
    """Why no kind cluster can be made here (a tool or the docker engine is missing); None if one can."""
    environ = os.environ if environ is None else environ
    missing = [tool for tool in TOOLS if shutil.which(tool, path=environ.get("PATH")) is None]
    if "docker" not in missing and not _docker_engine_answers(environ):
        missing.append("a running docker engine (`docker info` fails)")
    if missing:
        return (
            f"kind tier: needs {', '.join(TOOLS)} and a docker engine; missing here: {', '.join(missing)}. "
            "Run `make test-kind` where they exist (ci/README.md)"
        )
    return None


def required(environ: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return environ.get(REQUIRE_ENV, "") not in ("", "0")


def missing_prerequisites(environ: Mapping[str, str] | None = None) -> str | None:
    """Why the kind tier cannot run here, in one sentence; None when it can."""
    environ = os.environ if environ is None else environ
    if reason := missing_tools(environ):
        return reason
    if not environ.get(CLUSTER_ENV):
        return (
            f"kind tier: {CLUSTER_ENV} is not set; `make test-kind` creates the kind cluster from "
            "ci/kind-config.yaml and sets it (the tier never installs into a cluster it did not create)"
        )
    if not environ.get("KUBECONFIG"):
        return f"kind tier: KUBECONFIG is not set for the kind cluster {environ[CLUSTER_ENV]}"
    return None


def _docker_engine_answers(environ: Mapping[str, str]) -> bool:
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=20,
            env=dict(environ),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


# --- the GPU mock -------------------------------------------------------------------------------


def gpu_mock_manifests() -> tuple[dict[str, Any], dict[str, Any]]:
    """ci/gpu-mock/: the Node patch (labels, taint, capacity, allocatable) and the RuntimeClass."""
    node = yaml.safe_load((GPU_MOCK_DIR / "node-patch.yaml").read_text())
    runtime_class = yaml.safe_load((GPU_MOCK_DIR / "runtimeclass.yaml").read_text())
    return node, runtime_class


def node_in_pool(api: pykube.HTTPClient, pool: str) -> pykube.Node:
    nodes = list(pykube.Node.objects(api).filter(selector={POOL_LABEL: pool}))
    if len(nodes) != 1:
        raise AssertionError(
            f"expected one node labelled {POOL_LABEL}={pool} (ci/kind-config.yaml), found {len(nodes)}"
        )
    return nodes[0]


def mock_gpu_node(api: pykube.HTTPClient, *, timeout_s: float = 120) -> pykube.Node:
    """Turn the `gpu` worker into what the GPU Operator would make of a one-GPU node, and wait until
    the scheduler can count on it: `.status.allocatable` carries the GPU."""
    node = node_in_pool(api, "gpu")
    patch, runtime_class = gpu_mock_manifests()
    node.patch({"metadata": {"labels": patch["metadata"]["labels"]}, "spec": patch["spec"]})
    node.patch({"status": patch["status"]}, subresource="status")
    kind = pykube.object_factory(api, runtime_class["apiVersion"], runtime_class["kind"])
    if not kind(api, runtime_class).exists():
        kind(api, runtime_class).create()
    want = patch["status"]["allocatable"][GPU_RESOURCE]
    deadline = time.monotonic() + timeout_s
    while True:
        node.reload()
        if node.obj["status"].get("allocatable", {}).get(GPU_RESOURCE) == want:
            return node
        if time.monotonic() > deadline:
            raise AssertionError(
                f"node {node.name}: .status.allocatable[{GPU_RESOURCE}] is "
                f"{node.obj['status'].get('allocatable', {}).get(GPU_RESOURCE)!r}, not {want!r}, "
                f"{timeout_s:g} s after the patch"
            )
        time.sleep(2)


# --- the model repository claim -----------------------------------------------------------------


def repository_archive(repository: Path) -> bytes:
    """The repository as a gzipped tar, owned by Triton's user (the seed Job keeps owners)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(repository.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            info = archive.gettarinfo(str(path), arcname=str(path.relative_to(repository)))
            info.uid = info.gid = TRITON_UID
            info.uname = info.gname = ""
            if info.isfile():
                with path.open("rb") as handle:
                    archive.addfile(info, handle)
            else:
                archive.addfile(info)
    return buffer.getvalue()


def seed_objects(archive: bytes, *, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """A ConfigMap with the archive, the ReadWriteOnce claim, and the Job that unpacks the one into
    the other. The Job runs on the GPU node: kind's local-path volumes bind to the node of their
    first consumer, and Triton (and the promotion Job) must mount the claim there."""
    labels = {"app.kubernetes.io/part-of": "tritonops-kind-tier"}
    seed = f"tar -xzf /seed/repository.tar.gz -C /models && chown {TRITON_UID}:{TRITON_UID} /models"
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "seed-models", "namespace": namespace, "labels": labels},
        "binaryData": {"repository.tar.gz": base64.b64encode(archive).decode()},
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": CLAIM, "namespace": namespace, "labels": labels},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "seed-models", "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 2,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {POOL_LABEL: "gpu"},
                    "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [
                        {
                            "name": "seed",
                            "image": SEED_IMAGE,
                            # Root only to hand the files to Triton's user; tar keeps the owners.
                            "command": ["sh", "-ec", seed],
                            "volumeMounts": [
                                {"name": "seed", "mountPath": "/seed", "readOnly": True},
                                {"name": "models", "mountPath": "/models"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "seed", "configMap": {"name": "seed-models"}},
                        {"name": "models", "persistentVolumeClaim": {"claimName": CLAIM}},
                    ],
                },
            },
        },
    }
    return [config_map, claim, job]


def fresh_namespace(api: pykube.HTTPClient, name: str = NAMESPACE, *, timeout_s: float = 300) -> None:
    """Delete what an earlier run left (its claim holds that run's committed versions) and wait
    until the namespace is gone, so every run starts from the seed repository."""
    namespace = pykube.Namespace.objects(api).get_or_none(name=name)
    if namespace is None:
        return
    namespace.delete()
    deadline = time.monotonic() + timeout_s
    while pykube.Namespace.objects(api).get_or_none(name=name) is not None:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"namespace {name} from an earlier run still terminating after {timeout_s:g} s"
            )
        time.sleep(3)


def job_finished(job: Mapping[str, Any]) -> str | None:
    """ "Complete" or "Failed" once the Job controller says so, else None. Any position counts:
    since Kubernetes 1.31 `SuccessCriteriaMet` or `FailureTarget` may come first."""
    conditions = {c.get("type"): c.get("status") for c in job.get("status", {}).get("conditions", [])}
    if conditions.get("Complete") == "True":
        return "Complete"
    if conditions.get("Failed") == "True" or conditions.get("FailureTarget") == "True":
        return "Failed"
    return None


def wait_for_job(api: pykube.HTTPClient, name: str, *, timeout_s: float, namespace: str = NAMESPACE) -> None:
    """Until the Job completes; a failed Job fails at once, with its pods' logs."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = pykube.Job.objects(api, namespace=namespace).get_or_none(name=name)
        state = job_finished(job.obj) if job is not None else None
        if state == "Complete":
            return
        if state == "Failed" or time.monotonic() > deadline:
            raise AssertionError(
                f"Job {name}: {state or f'not complete after {timeout_s:g} s'}\n{job_logs(api, name, namespace)}"
            )
        time.sleep(3)


def job_logs(api: pykube.HTTPClient, name: str, namespace: str = NAMESPACE) -> str:
    pods = pykube.Pod.objects(api, namespace=namespace).filter(selector={"job-name": name})
    return "\n".join(f"--- pod {pod.name}:\n{pod.logs(tail_lines=200)}" for pod in pods) or "(no pod)"


def create_all(api: pykube.HTTPClient, objects: Sequence[dict[str, Any]]) -> None:
    for body in objects:
        kind = pykube.object_factory(api, body["apiVersion"], body["kind"])
        if not kind(api, body).exists():
            kind(api, body).create()


# --- helm, kubectl ------------------------------------------------------------------------------


def helm(*args: str, timeout_s: float) -> str:
    """The real helm against the tier's cluster (KUBECONFIG); a failure shows helm's own words.
    `timeout_s` stays above helm's own --timeout, so helm reports its failure before this gives up."""
    done = subprocess.run(["helm", *args], capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise AssertionError(
            f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def install_chart(
    values_files: Sequence[Path], set_values: Mapping[str, object] | None = None, *, timeout_s: int = 900
) -> str:
    """`helm upgrade --install --wait` of charts/triton as the tier's release: strings are set as
    strings, numbers and booleans as what they are."""
    args = [
        "upgrade",
        "--install",
        RELEASE,
        str(PROJECT_ROOT / "charts" / "triton"),
        "--namespace",
        NAMESPACE,
    ]
    for path in values_files:
        args += ["--values", str(path)]
    for key, value in (set_values or {}).items():
        if isinstance(value, str):
            args += ["--set-string", f"{key}={value}"]
        else:
            args += ["--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    return helm(*args, "--wait", "--timeout", f"{timeout_s}s", timeout_s=timeout_s + 120)


_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)")


@contextmanager
def port_forward(pod: str, ports: Sequence[int], *, namespace: str = NAMESPACE) -> Iterator[dict[int, int]]:
    """`kubectl port-forward pod/<pod>` on free local ports: {pod port: local port}. Waits at most
    30 s for kubectl to say where it listens (a silent kubectl must not hang the tier)."""
    process = subprocess.Popen(
        ["kubectl", "port-forward", "--namespace", namespace, f"pod/{pod}", *(f":{p}" for p in ports)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    try:
        local: dict[int, int] = {}
        seen: list[str] = []
        deadline = time.monotonic() + 30
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while len(local) < len(ports):
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(timeout=left):
                    raise AssertionError(f"kubectl port-forward pod/{pod}: no listener within 30 s: {seen}")
                line = process.stdout.readline()
                if not line:
                    raise AssertionError(f"kubectl port-forward pod/{pod} exited: {seen}")
                seen.append(line.strip())
                if match := _FORWARDING.search(line):
                    local[int(match.group(2))] = int(match.group(1))
        yield local
    finally:
        process.terminate()
        process.wait(timeout=10)


def pod_condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for condition in pod.get("status", {}).get("conditions", []):
        if condition.get("type") == kind:
            return condition
    return {}


def triton_image() -> str:
    """The Triton image the ci-kind render runs (the script pulls it on the GPU node first)."""
    from tritonops.chart import render

    deployment = next(m.body for m in render.render("ci-kind").manifests if m.kind == "Deployment")
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


if __name__ == "__main__":  # ci/kind.sh asks these two questions
    import sys

    if sys.argv[1:] == ["missing-tools"]:
        print(missing_tools() or "")
    elif sys.argv[1:] == ["triton-image"]:
        print(triton_image())
    else:
        sys.exit("usage: python -m tests.kind.cluster missing-tools|triton-image")
