"""Which protocol the repository calls use: does a slow load over HTTP hold up HTTP probes and
inference on the same server?

Measured here on the real 2.51 server with a Python-backend model whose initialize sleeps, while
threads poll /v2/health/live and infer on another model over HTTP:

- over HTTP, the load request occupies an HTTP worker thread until the model is ready. With one
  worker (`--http-thread-count=1`) no probe and no inference is answered while the load runs: they
  queue and are answered only after the load returns. With the default 8 workers one load holds one
  of them, so as many slow loads as workers (several models, or the agent and the tool together)
  stall the kubelet's probes and the clients;
- over gRPC, the load never touches the HTTP workers: probes and inference keep being answered on
  HTTP while the load runs, and other gRPC calls are answered too.

So tritonops sends load, unload and the repository index over gRPC whenever it knows the gRPC
address (tritonops.triton.client.Client). The assertions are about order (answered before the load
returned, or only after), not about durations.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tritonops.triton import client as triton_client
from tritonops.triton import server as triton_server

INIT_SLEEP_S = 3
# Requests sent in the first moments of the load may have reached a worker before the load did.
SETTLE_S = 0.5

SLOW_MODEL = f"""
import time


class TritonPythonModel:
    def initialize(self, args):
        time.sleep({INIT_SLEEP_S})

    def execute(self, requests):
        return []
"""

FAST_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() + 1)])
            for r in requests
        ]
"""

CONFIG = """
backend: "python"
max_batch_size: 0
input [{ name: "IN" data_type: TYPE_FP32 dims: [2] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [2] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""


@dataclass(frozen=True)
class Answer:
    kind: str  # "live" (HTTP probe), "grpc-index" (a gRPC repository call) or "infer" (HTTP)
    sent: float
    answered: float
    ok: bool


@dataclass(frozen=True)
class Window:
    """One load under traffic: when the load was sent and returned, and every answer meanwhile."""

    load_sent: float
    load_returned: float
    answers: list[Answer]

    # The slow model's initialize sleeps INIT_SLEEP_S: from SETTLE_S after the load was sent until
    # SETTLE_S before that sleep ends, the load certainly runs inside Triton. The client's own
    # `load_returned` is not used as the edge: on a busy machine the thread that records it may
    # run after the worker already answered the next request.
    @property
    def certainly_loading(self) -> tuple[float, float]:
        return self.load_sent + SETTLE_S, self.load_sent + INIT_SLEEP_S - SETTLE_S

    def answered_during_load(self, kind: str) -> list[Answer]:
        start, end = self.certainly_loading
        return [a for a in self.answers if a.kind == kind and start < a.answered < end]

    def held_across_load(self, kind: str) -> list[Answer]:
        """Requests sent around the load's start or while it certainly ran, answered only after."""
        _, end = self.certainly_loading
        return [
            a
            for a in self.answers
            if a.kind == kind and self.load_sent - SETTLE_S < a.sent < end <= a.answered
        ]


@pytest.fixture(scope="module")
def server(backends: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[triton_server.Server]:
    """One HTTP worker thread, so that a worker held by a load is visible."""
    repository = tmp_path_factory.mktemp("slow-load-repository")
    for name, source in (("slow", SLOW_MODEL), ("fast", FAST_MODEL)):
        (repository / name / "1").mkdir(parents=True)
        (repository / name / "1" / "model.py").write_text(source)
        (repository / name / "config.pbtxt").write_text(CONFIG)
    with triton_server.start(
        repository,
        log_path=repository.parent / "slow-load.log",
        backend_directory=backends,
        load_models=["fast"],
        extra_args=["--http-thread-count=1"],
    ) as started:
        yield started


def _address(server: triton_server.Server) -> str:
    return server.url.removeprefix("http://")


def under_traffic(server: triton_server.Server, load: Callable[[], None]) -> Window:
    """Run `load` while two threads poll HTTP live, one reads the repository index over gRPC and two infer over HTTP."""
    stop = threading.Event()
    answers: list[Answer] = []

    def record(kind: str, call: Callable[[], object]) -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                call()
                ok = True
            except Exception:
                ok = False
            answers.append(Answer(kind, sent, time.monotonic(), ok))
            time.sleep(0.01)

    def http_live() -> None:
        with triton_server.LOOPBACK_OPENER.open(f"{server.url}/v2/health/live", timeout=30) as response:
            assert response.status == 200

    def infer_loop() -> None:
        with triton_client.Client(_address(server)) as client:
            record("infer", lambda: client.infer("fast", {"IN": np.ones(2, dtype=np.float32)}))

    def grpc_index_loop() -> None:
        with triton_client.Client(_address(server), grpc_address=server.grpc_url) as client:
            record("grpc-index", client.repository_index)

    threads = [
        threading.Thread(target=record, args=("live", http_live)),
        threading.Thread(target=record, args=("live", http_live)),
        threading.Thread(target=grpc_index_loop),
        threading.Thread(target=infer_loop),
        threading.Thread(target=infer_loop),
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(SETTLE_S)
        load_sent = time.monotonic()
        load()
        load_returned = time.monotonic()
        time.sleep(SETTLE_S)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    with triton_client.Client(_address(server), grpc_address=server.grpc_url) as client:
        client.unload("slow")
    return Window(load_sent, load_returned, answers)


def test_an_http_load_holds_the_http_worker_so_probes_and_inference_wait(server):
    with triton_client.Client(_address(server)) as http_only:
        window = under_traffic(server, lambda: http_only.load("slow"))
    for kind in ("live", "infer"):
        assert window.answered_during_load(kind) == [], f"{kind} was answered while the HTTP load ran"
        held = window.held_across_load(kind)
        # Not refused either: they waited for the worker and were answered once the load returned.
        assert held and all(a.ok for a in held), kind


def test_a_grpc_load_leaves_http_probes_and_inference_answering(server):
    with triton_client.Client(_address(server), grpc_address=server.grpc_url) as repository_client:
        window = under_traffic(server, lambda: repository_client.load("slow"))
    for kind in ("live", "infer", "grpc-index"):
        during = window.answered_during_load(kind)
        assert during, f"{kind} was not answered while the gRPC load ran"
        assert all(a.ok for a in during), kind
    # The load itself really ran that long: the model's initialize sleeps.
    assert window.load_returned - window.load_sent >= INIT_SLEEP_S
