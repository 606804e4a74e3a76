"""Fixtures for the runtime tier: free ports for a runtime, fast probes, and a runtime that always comes down.

The assembled backends folder (`backends`) is shared with tests/triton and lives in tests/conftest.py."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

import pytest

from tritonops.triton import server as triton_server

# Offsets keep every shifted port between 10000 and the kernel's ephemeral range (32768 up), which
# outgoing connections and `free_ports` draw from. Each pytest-xdist worker gets its own share of
# the offsets, so two workers never pick the same ports between checking and binding them.
OFFSETS = range(2000, 24000, 100)


def _worker_share() -> range:
    """This worker's offsets: every n-th one, n the number of xdist workers (all of them without xdist)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return OFFSETS[int(worker) % count :: count]


def free_port_offset(replicas: int, rendered_ports: tuple[int, ...] = (8000, 8001, 8002, 8003)) -> int:
    """An offset at which every replica's shifted ports (rendered + offset + 10*i) are free now."""
    share = _worker_share()
    rng = random.Random()
    for _ in range(50):
        offset = rng.choice(share)
        wanted = [port + offset + 10 * index for index in range(replicas) for port in rendered_ports]
        try:
            sockets = []
            for port in wanted:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind((triton_server.LOOPBACK, port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return offset
    raise RuntimeError("no free port range found")


# Fast probes for the tests: the same design, shorter periods (the kubelet logic is unchanged).
FAST_PROBES = (
    "probes.liveness.periodSeconds=1",
    "probes.liveness.failureThreshold=2",
    "probes.liveness.timeoutSeconds=1",
    "probes.readiness.periodSeconds=1",
    "probes.readiness.failureThreshold=1",
)


@pytest.fixture
def start_runtime(tmp_path: Path):
    """Start `tritonops up` (real supervisor, real servers) and always bring it down again."""
    from tritonops.runtime import control

    started: list[Path] = []

    def start(
        replicas: int = 1, *, set_values: tuple[str, ...] = FAST_PROBES, repository: Path | None = None
    ):
        work_dir = tmp_path / f"work{len(started)}"
        started.append(work_dir)
        return control.up(
            "local",
            work_dir=work_dir,
            replicas=replicas,
            repository=repository,
            port_offset=free_port_offset(replicas),
            set_values=set_values,
        )

    yield start
    for work_dir in started:
        control.down(work_dir)
