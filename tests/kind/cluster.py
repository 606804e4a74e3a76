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


def create_all(api: pykube.HTTPClient, objects: Sequence[dict[str, Any]]) -> None:
    for body in objects:
        kind = pykube.object_factory(api, body["apiVersion"], body["kind"])
        if not kind(api, body).exists():
            kind(api, body).create()


# --- helm, kubectl ------------------------------------------------------------------------------


def helm(*args: str, timeout_s: float = 1200) -> str:
    """The real helm against the tier's cluster (KUBECONFIG); a failure shows helm's own words."""
    done = subprocess.run(["helm", *args], capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise AssertionError(
            f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def install_chart(
    values_files: Sequence[Path], set_values: Mapping[str, object] | None = None, *, timeout: str = "900s"
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
    return helm(*args, "--wait", "--timeout", timeout)


_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)")


@contextmanager
def port_forward(pod: str, ports: Sequence[int], *, namespace: str = NAMESPACE) -> Iterator[dict[int, int]]:
    """`kubectl port-forward pod/<pod>` on free local ports: {pod port: local port}."""
    process = subprocess.Popen(
        ["kubectl", "port-forward", "--namespace", namespace, f"pod/{pod}", *(f":{p}" for p in ports)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        local: dict[int, int] = {}
        deadline = time.monotonic() + 30
        assert process.stdout is not None
        while len(local) < len(ports):
            line = process.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise AssertionError(f"kubectl port-forward pod/{pod} did not start: {line!r}")
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
