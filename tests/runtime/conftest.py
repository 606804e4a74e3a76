"""Fixtures for the runtime tier: our backend imported in-process, and one assembled backends folder."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tritonops import tritonserver


@pytest.fixture(scope="session")
def backend_module() -> Iterator[ModuleType]:
    """Our backend's model.py imported in-process, with the wheel's triton_python_backend_utils."""
    utils_folder = str(tritonserver.wheel_root() / "backends" / "python")
    sys.path.insert(0, utils_folder)
    try:
        from tritonops.backends.onnxruntime import model

        yield model
    finally:
        sys.path.remove(utils_folder)


@pytest.fixture(scope="session")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One assembled backends folder shared by every server the tests start."""
    return tritonserver.assemble_backends(tmp_path_factory.mktemp("triton-work"))


def free_port_offset(replicas: int, rendered_ports: tuple[int, ...] = (8000, 8001, 8002)) -> int:
    """An offset at which every replica's shifted ports (rendered + offset + 10*i) are free now."""
    import random
    import socket

    rng = random.Random()
    for _ in range(50):
        offset = rng.randrange(20000, 40000, 100)
        wanted = [port + offset + 10 * index for index in range(replicas) for port in rendered_ports]
        try:
            sockets = []
            for port in wanted:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind((tritonserver.LOOPBACK, port))
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
    from tritonops.runtime import controlling

    started: list[Path] = []

    def start(
        replicas: int = 1, *, set_values: tuple[str, ...] = FAST_PROBES, repository: Path | None = None
    ):
        work_dir = tmp_path / f"work{len(started)}"
        started.append(work_dir)
        return controlling.up(
            "local",
            work_dir=work_dir,
            replicas=replicas,
            repository=repository,
            port_offset=free_port_offset(replicas),
            set_values=set_values,
        )

    yield start
    for work_dir in started:
        controlling.down(work_dir)
