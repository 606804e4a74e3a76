"""fleet's guards around a replica's own loads, on a real Triton (the session `server`)."""

from __future__ import annotations

import threading
import time

from tests.promotion.conftest import SLOW_INIT_S
from tritonops.promotion import fleet
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
        fleet._wait_until_not_loading(client, "slow", deadline_s=60)
        assert _states(client, "slow") == {"READY"}
    finally:
        other.join()
        client.unload("slow")
