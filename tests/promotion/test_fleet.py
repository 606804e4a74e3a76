"""fleet's guards around a replica's own loads, on a real Triton (the session `server`)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from tests.promotion.conftest import SLOW_INIT_S
from tritonops import errors
from tritonops.promotion import fleet
from tritonops.promotion.replicas import Replica
from tritonops.triton import client as triton_client


def _states(client: triton_client.Client, model: str) -> set[str]:
    return {str(e.get("state")) for e in client.repository_index() if e.get("name") == model}


def test_a_widening_load_waits_for_a_load_already_running_on_the_replica(server, client):
    """The agent may be converging the model when the lock is taken: the promotion's load must not
    run beside it (two concurrent loads of one model load it twice, behaviour 14)."""
    address = server.url.removeprefix("http://")

    def load_elsewhere() -> None:
        with triton_client.Client(address, grpc_address=server.grpc_url) as elsewhere:
            elsewhere.load("slow", timeout_s=60)

    other = threading.Thread(target=load_elsewhere)
    other.start()
    try:
        deadline = time.monotonic() + SLOW_INIT_S
        while "LOADING" not in _states(client, "slow"):
            assert time.monotonic() < deadline, "the slow model never showed LOADING"
            time.sleep(0.05)
        fleet.wait_until_not_loading(client, "slow", deadline_s=60)
        assert _states(client, "slow") == {"READY"}
    finally:
        other.join()
        client.unload("slow")


def test_an_interrupt_stops_every_worker_at_its_next_poll_and_reaches_the_caller():
    """Ctrl-C or SIGTERM while replicas wait for readiness: no worker keeps polling until its
    deadline (the pool's exit would wait for it), and the interrupt is what the caller gets."""
    replicas = [Replica(f"replica-{index}", f"127.0.0.1:{9000 + index}") for index in range(2)]
    polling = threading.Barrier(3)
    outcomes: list[str] = []

    def wait_for_readiness(replica: Replica) -> str:
        polling.wait(timeout=10)
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                fleet._pause(0.05)
        except errors.TritonUnavailable as error:
            outcomes.append(str(error))
            raise
        outcomes.append("polled until the deadline")
        return "ready"

    def interrupt_once_both_poll() -> None:
        polling.wait(timeout=10)
        os.kill(os.getpid(), signal.SIGINT)  # a real signal: it wakes the main thread's wait

    threading.Thread(target=interrupt_once_both_poll, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        fleet.each(replicas, wait_for_readiness)
    # A signal that lands while the pool starts its second thread returns before that thread is
    # joined; it stops at its next poll all the same.
    settled = time.monotonic() + 10
    while len(outcomes) < 2 and time.monotonic() < settled:
        time.sleep(0.05)
    assert outcomes == ["stopped: the run was interrupted"] * 2


def test_outside_an_interrupted_run_a_pause_is_a_plain_sleep():
    results = fleet.each([Replica("replica-0", "127.0.0.1:9000")], lambda replica: fleet._pause(0) or "done")
    assert [(result.ok, result.detail) for result in results] == [(True, "done")]
