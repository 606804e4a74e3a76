"""`tritonops reconcile` compares the config each replica serves with the committed one (the agent's
comparison) as well as its versions: a replica serving the committed version with another config
(a config promotion that missed it) gets the committed config, one that serves it is left alone.
On a bare Triton (no agent beside it, which would converge it first)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.promotion.conftest import LINEAR_CONFIG, add_version, commit_version
from tritonops.promotion import chain, state
from tritonops.promotion.replicas import ApiKey, Replica
from tritonops.triton import client as triton_client
from tritonops.triton import server as triton_server


@pytest.fixture
def bare(backends: Path, tmp_path: Path) -> Iterator[tuple[Path, Replica]]:
    repository = tmp_path / "models"
    (repository / "linear").mkdir(parents=True)
    (repository / "linear" / "config.pbtxt").write_text(LINEAR_CONFIG, encoding="utf-8")
    add_version(repository, 1)
    commit_version(repository, 1)
    with triton_server.start(
        repository, log_path=tmp_path / "triton.log", backend_directory=backends, load_models=["linear"]
    ) as started:
        yield repository, Replica("bare", started.url.removeprefix("http://"), started.grpc_url)


def test_reconcile_loads_the_committed_config_where_another_is_served_and_only_there(bare):
    repository, replica = bare
    key = ApiKey(None)
    record = state.read(repository).records["linear"]
    with triton_client.Client(replica.http_address) as client:
        # The committed version with another config, as a replica a config promotion missed serves it.
        client.load("linear", config={**dict(record.config or {}), "max_batch_size": 4})
        assert client.model_config("linear").max_batch_size == 4
        done = chain.reconcile(repository=repository, replicas=[replica], key=key)
        assert client.model_config("linear").max_batch_size == 8
    assert done.result == "reconciled"
    assert [r.detail for r in done.steps[-1].replicas] != ["serves [1] with the committed config"]
    again = chain.reconcile(repository=repository, replicas=[replica], key=key)
    assert [r.detail for r in again.steps[-1].replicas] == ["serves [1] with the committed config"]
