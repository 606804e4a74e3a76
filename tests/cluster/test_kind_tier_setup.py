"""What of the kind tier can be checked without a cluster: it skips with one reason where it cannot
run, its GPU mock and seed objects are valid Kubernetes objects, and the ci-kind render would be
placed on the mocked GPU node (and only there) by the scheduler's own rules."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.kind import cluster
from tests.promotion.models import linear_version
from tritonops.chart import gates, render

TIER = cluster.PROJECT_ROOT / "tests" / "kind"


def _tool_shims(folder: Path, *, docker_info_ok: bool) -> Path:
    """Stand-ins for docker, kind, helm and kubectl on PATH: no docker engine can run here. The
    docker one answers `docker info` as an engine would, or fails as a client without one does."""
    folder.mkdir()
    for tool in cluster.TOOLS:
        script = folder / tool
        code = 0 if tool != "docker" or docker_info_ok else 1
        script.write_text(f"#!/bin/sh\nexit {code}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def _run_tier(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(TIER)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cluster.PROJECT_ROOT,
        timeout=120,
        check=False,
    )


def test_without_the_tools_the_tier_is_one_skip_naming_what_is_missing(tmp_path):
    shims = _tool_shims(tmp_path / "bin", docker_info_ok=False)
    (shims / "kind").unlink()
    env = {**os.environ, "PATH": f"{shims}:/usr/bin:/bin"}
    env.pop(cluster.CLUSTER_ENV, None)
    done = _run_tier(env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout and "passed" not in done.stdout, done.stdout
    reason = next(line for line in done.stdout.splitlines() if line.startswith("SKIPPED"))
    assert "missing here: kind, a running docker engine" in reason, reason
    assert "make test-kind" in reason


def test_where_the_tier_is_required_a_missing_tool_fails_instead_of_skipping(tmp_path):
    shims = _tool_shims(tmp_path / "bin", docker_info_ok=False)
    env = {**os.environ, "PATH": f"{shims}:/usr/bin:/bin", cluster.REQUIRE_ENV: "1"}
    done = _run_tier(env)
    assert done.returncode != 0, done.stdout
    assert f"{cluster.REQUIRE_ENV} is set" in done.stdout and "a running docker engine" in done.stdout
    script = subprocess.run(
        ["bash", str(cluster.CI_DIR / "kind.sh")],
        capture_output=True,
        text=True,
        env={**env, "PY": sys.executable},
        cwd=cluster.PROJECT_ROOT,
        timeout=120,
        check=False,
    )
    assert script.returncode == 1 and "a running docker engine" in script.stderr, script.stderr


@pytest.mark.parametrize(
    ("conditions", "state"),
    [
        # Kubernetes 1.31+: SuccessCriteriaMet first, Complete appended later.
        ([{"type": "SuccessCriteriaMet", "status": "True"}], None),
        (
            [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}],
            "Complete",
        ),
        ([{"type": "Complete", "status": "True"}], "Complete"),
        ([{"type": "FailureTarget", "status": "True"}], "Failed"),
        ([{"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}], "Failed"),
        ([{"type": "Complete", "status": "False"}], None),
        ([], None),
    ],
)
def test_a_job_counts_as_finished_by_its_conditions_wherever_they_stand(conditions, state):
    assert cluster.job_finished({"status": {"conditions": conditions}}) == state


def test_with_the_tools_but_no_tier_cluster_it_never_touches_the_current_context(tmp_path):
    shims = _tool_shims(tmp_path / "bin", docker_info_ok=True)
    environ = {"PATH": str(shims), "KUBECONFIG": str(tmp_path / "someone-elses-config")}
    reason = cluster.missing_prerequisites(environ)
    assert reason is not None and f"{cluster.CLUSTER_ENV} is not set" in reason
    assert cluster.missing_prerequisites({**environ, cluster.CLUSTER_ENV: "tritonops"}) is None


def test_the_gpu_mock_and_seed_objects_are_valid_kubernetes_objects(tmp_path):
    node, runtime_class = cluster.gpu_mock_manifests()
    (tmp_path / "m").mkdir()
    objects = [node, runtime_class, *cluster.seed_objects(b"archive")]
    for body in objects:
        kubernetes_validate.validate(body, gates.KUBERNETES_VERSION, strict=True)
    # Both what the scheduler reads (allocatable) and what the node reports (capacity).
    assert node["status"]["capacity"] == node["status"]["allocatable"] == {cluster.GPU_RESOURCE: "1"}


def test_kind_config_has_one_gpu_worker_and_one_general_worker():
    config = yaml.safe_load((cluster.CI_DIR / "kind-config.yaml").read_text())
    pools = [n.get("labels", {}).get(cluster.POOL_LABEL) for n in config["nodes"] if n["role"] == "worker"]
    assert sorted(pools) == ["general", "gpu"]


def test_the_ci_kind_render_is_placed_on_the_mocked_gpu_node_only():
    """The scheduler's filters, applied by hand to the rendered pod: the mocked node passes every
    one, and the untainted worker (no GPU, no labels) fails on the GPU request."""
    pod = _ci_kind_pod_spec()
    node, runtime_class = cluster.gpu_mock_manifests()
    gpu_labels = {cluster.POOL_LABEL: "gpu", **node["metadata"]["labels"]}
    assert pod["runtimeClassName"] == runtime_class["metadata"]["name"]
    assert _fits(pod, gpu_labels, node["spec"]["taints"], node["status"]["allocatable"]) == []
    assert "nodeSelector" in _fits(pod, {cluster.POOL_LABEL: "general"}, [], {})
    assert f"Insufficient {cluster.GPU_RESOURCE}" in _fits(pod, gpu_labels, node["spec"]["taints"], {})


def test_a_second_replica_wants_more_gpus_than_the_mock_has():
    pod = _ci_kind_pod_spec()
    node, _ = cluster.gpu_mock_manifests()
    wanted = sum(int(c["resources"]["limits"].get(cluster.GPU_RESOURCE, 0)) for c in pod["containers"])
    assert wanted * 2 > int(node["status"]["allocatable"][cluster.GPU_RESOURCE]) >= wanted


def test_the_seed_archive_gives_tritons_user_the_repository(tmp_path):
    repository = tmp_path / "models"
    linear_version(repository, "linear", 1)
    (repository / "linear" / "1" / "__pycache__").mkdir()
    with tarfile.open(fileobj=io.BytesIO(cluster.repository_archive(repository))) as archive:
        members = archive.getmembers()
    assert {m.name for m in members} >= {"linear", "linear/1", "linear/1/model.onnx"}
    assert not any("__pycache__" in m.name for m in members)
    assert {(m.uid, m.gid) for m in members} == {(cluster.TRITON_UID, cluster.TRITON_UID)}


def _ci_kind_pod_spec() -> dict:
    rendered = render.render("ci-kind")
    deployment = next(m.body for m in rendered.manifests if m.kind == "Deployment")
    return deployment["spec"]["template"]["spec"]


def _fits(pod: dict, labels: dict, taints: list, allocatable: dict) -> list[str]:
    """Why the scheduler would refuse `pod` on a node with these labels, taints and resources."""
    reasons = []
    if any(labels.get(key) != value for key, value in pod.get("nodeSelector", {}).items()):
        reasons.append("nodeSelector")
    tolerated = {
        (t.get("key"), t.get("effect")) for t in pod.get("tolerations", []) if t.get("operator") == "Exists"
    }
    if any((t["key"], t["effect"]) not in tolerated for t in taints if t["effect"] == "NoSchedule"):
        reasons.append("untolerated taint")
    wanted = sum(int(c["resources"]["requests"].get(cluster.GPU_RESOURCE, 0)) for c in pod["containers"])
    if wanted > int(allocatable.get(cluster.GPU_RESOURCE, 0)):
        reasons.append(f"Insufficient {cluster.GPU_RESOURCE}")
    return reasons
