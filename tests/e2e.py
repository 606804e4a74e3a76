"""The end-to-end assertions on a running deployment, shared by both tiers that run one: the local
runtime (tests/runtime, every `make test`) and the kind cluster (tests/kind, `make test-kind`). Each
tier only says how its pods are reached; what "serves correctly" means is written once, here, so
the local tier keeps exercising the assertions the cluster tier relies on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from tritonops import errors
from tritonops.triton import client as triton_client

# Two rows for the four-feature `linear` model of the sample repository.
BATCH = np.array([[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 0.25, 2.0]], dtype=np.float32)

# The counters a served request moves (per model).
REQUEST_COUNTERS = (
    "nv_inference_request_success",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_queue_duration_us",
    "nv_inference_request_duration_us",
)


@dataclass(frozen=True)
class Pod:
    """One Triton replica as a test reaches it: a local process or a port-forwarded pod."""

    name: str
    http_address: str  # host:port
    metrics_url: str


@dataclass(frozen=True)
class Deployment:
    """Every replica of one release and the restricted-API key its repository API expects."""

    pods: Sequence[Pod]
    api_header: str
    api_key: str | None


@contextmanager
def connect(deployment: Deployment, pod: Pod, *, authorised: bool = True) -> Iterator[triton_client.Client]:
    if not authorised:
        with triton_client.Client(pod.http_address) as anonymous:
            yield anonymous
        return
    with triton_client.Client(
        pod.http_address, api_header=deployment.api_header, api_key=deployment.api_key
    ) as client:
        yield client


def reference_output(model_file: Path, batch: np.ndarray = BATCH) -> np.ndarray:
    """What onnxruntime itself computes for `batch`: the answer every replica must give."""
    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": batch})[0]


def assert_live_and_serving(deployment: Deployment, model: str, version: int) -> None:
    """Every pod is live and serves exactly `version` of `model` (no other version is ready)."""
    for pod in deployment.pods:
        with connect(deployment, pod) as client:
            assert client.live(), f"{pod.name}: not live"
            assert client.model_ready(model, version), f"{pod.name}: {model} v{version} is not ready"
            served = client.ready_versions(model)
        assert served == [version], f"{pod.name}: {model} serves {served}, expected only [{version}]"


def assert_repository_api_needs_key(deployment: Deployment, model: str) -> None:
    """A load without the key is refused on every pod; with it, the load goes through."""
    for pod in deployment.pods:
        with (
            connect(deployment, pod, authorised=False) as anonymous,
            pytest.raises(errors.RepositoryApiForbidden),
        ):
            anonymous.load(model)
        with connect(deployment, pod) as client:
            client.load(model)
            assert client.model_ready(model), f"{pod.name}: {model} not ready after an authorised load"


def assert_inference_matches(
    deployment: Deployment, model: str, expected: np.ndarray, batch: np.ndarray = BATCH
) -> None:
    """Every pod answers `batch` with what onnxruntime computes for the same model file."""
    for pod in deployment.pods:
        with connect(deployment, pod) as client:
            got = client.infer(model, {"input": batch})["output"]
        assert np.allclose(got, expected, rtol=1e-5, atol=1e-6), f"{pod.name}: {got} != {expected}"


def assert_metrics_count_requests(
    deployment: Deployment, model: str, *, requests: int = 3, batch: np.ndarray = BATCH, within_s: float = 10
) -> None:
    """`requests` inferences on each pod move every request counter of `model` on that pod's
    /metrics, by exactly `requests` successes and `requests * len(batch)` items."""
    for pod in deployment.pods:
        before = triton_client.scrape_metrics(pod.metrics_url)
        with connect(deployment, pod) as client:
            for _ in range(requests):
                client.infer(model, {"input": batch})
        after = _counters_moved(pod.metrics_url, before, model, within_s)
        success = _delta(after, before, "nv_inference_request_success", model)
        items = _delta(after, before, "nv_inference_count", model)
        assert (success, items) == (requests, requests * len(batch)), (
            f"{pod.name}: {success} successes and {items} items after {requests} requests of {len(batch)}"
        )


def _counters_moved(
    metrics_url: str, before: triton_client.Samples, model: str, within_s: float
) -> triton_client.Samples:
    """The first scrape on which every request counter of `model` has risen (Triton updates its
    metrics every --metrics-interval-ms)."""
    deadline = time.monotonic() + within_s
    while True:
        after = triton_client.scrape_metrics(metrics_url)
        moved = {counter: _delta(after, before, counter, model) > 0 for counter in REQUEST_COUNTERS}
        if all(moved.values()):
            return after
        if time.monotonic() > deadline:
            raise AssertionError(f"{metrics_url}: counters of {model} that did not move: {moved}")
        time.sleep(0.5)


def _delta(after: triton_client.Samples, before: triton_client.Samples, counter: str, model: str) -> float:
    return triton_client.metric_total(after, counter, model=model) - triton_client.metric_total(
        before, counter, model=model
    )
