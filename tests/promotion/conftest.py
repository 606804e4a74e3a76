"""Fixtures for the promotion tier: one real Triton holding the smoke and traffic models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.promotion import models
from tritonops.triton import client as triton_client
from tritonops.triton import server as triton_server

SERVED = ["linear", "scaled", "infinite", "ints", "wrong_shape", "wrong_type", "missing_output"]


@pytest.fixture(scope="session")
def server(backends: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[triton_server.Server]:
    """A plain tritonserver (explicit mode) serving models that answer rightly and wrongly; `linear`
    has a second version on disk, loaded by the tests that need it."""
    repository = tmp_path_factory.mktemp("promotion-models")
    models.linear_version(repository, "linear", 1)
    models.linear_version(repository, "linear", 2, scale=2.0)
    models.linear_version(repository, "scaled", 1, scale=2.0)
    models.infinite_version(repository, "infinite", 1)
    models.int_bool_model(repository, "ints")
    models.python_model(repository, "wrong_shape", "np.concatenate([x, x])")
    models.python_model(repository, "wrong_type", "x.astype(np.int32)")
    models.python_model(repository, "missing_output", "x + 1", extra_output=True)
    with triton_server.start(
        repository,
        log_path=repository.parent / "promotion-models.log",
        backend_directory=backends,
        load_models=SERVED,
    ) as started:
        yield started


@pytest.fixture
def client(server: triton_server.Server) -> Iterator[triton_client.Client]:
    with triton_client.Client(server.url.removeprefix("http://"), grpc_address=server.grpc_url) as c:
        yield c
