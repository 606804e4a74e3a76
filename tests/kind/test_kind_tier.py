"""The kind tier: the chart installed with the real helm into a kind cluster whose GPU node is mocked
(ci/README.md), checked through the real scheduler, the real Triton image and the shared end-to-end
assertions (tests/e2e.py), then a promotion run in the cluster by the chart's promotion Job.

`make test-kind` creates the cluster and runs this module; anywhere else it is one skip that says
what is missing. The tests run in file order on one installed release: placement, serving, the
helm test, the Pending extra replica, then the promotion, which moves the release to version 2.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.kind import cluster

_MISSING = cluster.missing_prerequisites()
if _MISSING and cluster.required():
    # The workflow's kind job: a runner without the tools must fail, not pass having tested nothing.
    pytest.fail(f"{cluster.REQUIRE_ENV} is set: {_MISSING}", pytrace=False)
if _MISSING:
    pytest.skip(_MISSING, allow_module_level=True)

# Imported past the skip: pytest-helm-charts and the product's cluster code need a cluster to matter.
import pykube  # noqa: E402
from pytest_helm_charts.k8s.deployment import wait_for_deployments_to_run  # noqa: E402
from pytest_helm_charts.k8s.namespace import ensure_namespace_exists  # noqa: E402

from tests import e2e  # noqa: E402
from tests.promotion.models import linear_version  # noqa: E402
from tritonops.cluster import endpoints  # noqa: E402

pytestmark = pytest.mark.cluster

VALUES = (cluster.PROJECT_ROOT / "values" / "base.yaml", cluster.PROJECT_ROOT / "values" / "ci-kind.yaml")
SAMPLE_REPOSITORY = cluster.PROJECT_ROOT / "examples" / "model-repository"
DEPLOYMENT = cluster.RELEASE  # the chart's full name for release "triton"
SERVICE = cluster.RELEASE
SELECTOR = {"app.kubernetes.io/name": "triton", "app.kubernetes.io/instance": cluster.RELEASE}
TRITON_PORTS = (8000, 8002)  # values: ports.http, ports.metrics
API_HEADER = "admin-key"  # values/base.yaml: repositoryApi.restricted.header
INSTALL_TIMEOUT_S = 1200  # the first pull of the Triton image (about 15 GB) dominates


@pytest.fixture(scope="module")
def api(kube_cluster) -> pykube.HTTPClient:
    return kube_cluster.kube_client


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    """The sample repository plus `linear` version 2 (twice the weights), for the promotion."""
    folder = tmp_path_factory.mktemp("kind") / "models"
    shutil.copytree(SAMPLE_REPOSITORY, folder)
    linear_version(folder, "linear", 2, scale=2.0)
    return folder


@pytest.fixture(scope="module")
def installed(api, repository) -> pykube.Node:
    """The mocked GPU node, the filled claim, and the release installed with `--wait`."""
    gpu_node = cluster.mock_gpu_node(api)
    cluster.fresh_namespace(api)
    ensure_namespace_exists(api, cluster.NAMESPACE)
    cluster.create_all(api, cluster.seed_objects(cluster.repository_archive(repository)))
    cluster.wait_for_job(api, "seed-models", timeout_s=300)
    cluster.install_chart(VALUES, timeout_s=INSTALL_TIMEOUT_S)
    wait_for_deployments_to_run(api, [DEPLOYMENT], cluster.NAMESPACE, timeout_sec=120)
    return gpu_node


def _triton_pods(api) -> list[pykube.Pod]:
    pods = pykube.Pod.objects(api, namespace=cluster.NAMESPACE).filter(selector=SELECTOR)
    return sorted(pods, key=lambda pod: pod.name)


def _api_key(api) -> str:
    secret = pykube.Secret.objects(api, namespace=cluster.NAMESPACE).get(
        name=f"{cluster.RELEASE}-repository-api"
    )
    return base64.b64decode(secret.obj["data"]["key"]).decode()


class _Forwarded:
    """Every running Triton pod through `kubectl port-forward`, as tests/e2e.py addresses them."""

    def __init__(self, api) -> None:
        self.api = api

    def __enter__(self) -> e2e.Deployment:
        self._forwards = []
        pods = []
        for pod in _triton_pods(self.api):
            if pod.obj["status"].get("phase") != "Running":
                continue
            forward = cluster.port_forward(pod.name, TRITON_PORTS)
            local = forward.__enter__()
            self._forwards.append(forward)
            pods.append(
                e2e.Pod(pod.name, f"127.0.0.1:{local[8000]}", f"http://127.0.0.1:{local[8002]}/metrics")
            )
        assert pods, "no running Triton pod"
        return e2e.Deployment(pods, API_HEADER, _api_key(self.api))

    def __exit__(self, *exc) -> None:
        for forward in self._forwards:
            forward.__exit__(None, None, None)


def test_triton_lands_on_the_mocked_gpu_node_only(api, installed):
    pods = _triton_pods(api)
    assert len(pods) == 1
    spec = pods[0].obj["spec"]
    assert spec["nodeName"] == installed.name, "scheduled off the GPU node"
    assert spec["runtimeClassName"] == "nvidia"
    assert any(t.get("key") == cluster.GPU_TAINT_KEY for t in spec.get("tolerations", []))
    triton = next(c for c in spec["containers"] if c["name"] == "triton")
    assert triton["resources"]["limits"][cluster.GPU_RESOURCE] in ("1", 1)
    # The untainted worker stays free of Triton: what put the pod on the GPU node was the chart.
    general = cluster.node_in_pool(api, "general")
    assert general.name != installed.name


def test_every_pod_serves_the_committed_version_correctly(api, installed, repository):
    with _Forwarded(api) as deployment:
        e2e.assert_live_and_serving(deployment, "linear", 1)
        e2e.assert_inference_matches(
            deployment, "linear", e2e.reference_output(repository / "linear/1/model.onnx")
        )
        e2e.assert_repository_api_needs_key(deployment, "mlp")
        e2e.assert_metrics_count_requests(deployment, "linear")


def test_helm_test_passes(installed):
    # No --logs: Helm 3 deletes the succeeded hook pod (hook-succeeded) before it fetches the logs,
    # and then fails (helm/helm#9098).
    output = cluster.helm(
        "test", cluster.RELEASE, "--namespace", cluster.NAMESPACE, "--timeout", "300s", timeout_s=420
    )
    assert "Phase:          Succeeded" in output, output


def test_service_endpoints_name_every_ready_pod(api, installed):
    """The product's own discovery (EndpointSlices, through the kubernetes client) finds the pods."""
    found = endpoints.discover(SERVICE, cluster.NAMESPACE, endpoints.Connection(None, None))
    assert sorted(e.name for e in found.ready) == [pod.name for pod in _triton_pods(api)]


def test_a_replica_beyond_the_gpus_stays_pending_with_the_schedulers_reason(api, installed):
    deployment = pykube.Deployment.objects(api, namespace=cluster.NAMESPACE).get(name=DEPLOYMENT)
    # A patch of the replica count alone: pykube's scale() sends the whole object with its
    # resourceVersion, which the controller's status updates make stale (409 Conflict).
    deployment.patch({"spec": {"replicas": 2}})
    try:
        message = _wait_for_unschedulable(api, timeout_s=120)
        assert f"Insufficient {cluster.GPU_RESOURCE}" in message, message
    finally:
        deployment.patch({"spec": {"replicas": 1}})
        _wait_until(lambda: len(_triton_pods(api)) == 1, 180, "the extra replica to go")


def test_the_promotion_job_moves_every_pod_to_the_new_version(api, installed, repository):
    image = os.environ.get(cluster.IMAGE_ENV, "tritonops:kind")
    repository_name, _, tag = image.rpartition(":")
    cluster.install_chart(
        VALUES,
        {
            "promotion.job.enabled": True,
            "promotion.job.image.repository": repository_name,
            "promotion.job.image.tag": tag,
            # `make test-kind` builds the image and `kind load`s it: never pulled.
            "promotion.job.image.pullPolicy": "Never",
            "promotion.job.model": "linear",
            "promotion.job.version": 2,
        },
        timeout_s=600,
    )
    cluster.wait_for_job(api, _promotion_job(api), timeout_s=900)
    with _Forwarded(api) as deployment:
        e2e.assert_live_and_serving(deployment, "linear", 2)
        e2e.assert_inference_matches(
            deployment, "linear", e2e.reference_output(repository / "linear/2/model.onnx")
        )


def _promotion_job(api) -> str:
    jobs = [
        job.name
        for job in pykube.Job.objects(api, namespace=cluster.NAMESPACE).filter(
            selector={
                "app.kubernetes.io/instance": cluster.RELEASE,
                "app.kubernetes.io/component": "promotion",
            }
        )
    ]
    assert len(jobs) == 1, f"expected the one promotion Job, found {jobs}"
    return jobs[0]


def _wait_for_unschedulable(api, timeout_s: float) -> str:
    """The scheduler's message on the Triton pod it cannot place."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pod in _triton_pods(api):
            scheduled = cluster.pod_condition(pod.obj, "PodScheduled")
            if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
                assert pod.obj["status"].get("phase") == "Pending"
                return str(scheduled.get("message", ""))
        time.sleep(2)
    raise AssertionError(f"no Triton pod reported Unschedulable within {timeout_s:g} s")


def _wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}")
        time.sleep(2)
