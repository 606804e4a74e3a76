"""Triton behaviour 12, checked on the real 2.51 server: what a plain load does after a load that
carried a config override.

ARCHITECTURE.md expected, from Triton's lifecycle tests, that an override sticks for later plain
loads. On the 2.51 server here it depends on the case, and neither outcome can be relied on:
- an override that pins a lower version, then a plain load: the file's config comes back (the
  highest folder serves again), although nothing changed on disk;
- the file pins version 1, an override widens to {1, 2} (what the promotion chain does while it
  loads a candidate), then a plain load: the override stays in force, although the file says 1.
So a load without an override means neither "the file" nor "the last override". Every load
tritonops sends (the chain, the rollback, the agent, `tune`) carries the config it means; these
tests pin the server's behaviour down so that a Triton upgrade that changes it is noticed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tritonops.promotion import state
from tritonops.triton import client as triton_client
from tritonops.triton import server as triton_server

MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())])
            for r in requests
        ]
"""

# No version_policy: the default (latest 1) serves the highest folder, version 2.
CONFIG = """
name: "m"
backend: "python"
max_batch_size: 0
input [{ name: "IN" data_type: TYPE_FP32 dims: [2] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [2] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""


@pytest.fixture(scope="module")
def server(
    backends: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[triton_client.Client, Path]]:
    repository = tmp_path_factory.mktemp("override-repository")
    for version in (1, 2):
        (repository / "m" / str(version)).mkdir(parents=True)
        (repository / "m" / str(version) / "model.py").write_text(MODEL)
    (repository / "m" / "config.pbtxt").write_text(CONFIG)
    with (
        triton_server.start(
            repository,
            log_path=repository.parent / "override.log",
            backend_directory=backends,
            load_models=["m"],
        ) as started,
        triton_client.Client(started.url.removeprefix("http://"), grpc_address=started.grpc_url) as client,
    ):
        yield client, repository


def test_a_plain_load_after_an_override_goes_back_to_the_config_on_disk(server):
    client, _ = server
    assert client.ready_versions("m") == [2], "the file's default policy serves the highest folder"

    client.load("m", config=state.config_json(state.config_with_pin(CONFIG, [1])))
    assert client.ready_versions("m") == [1]
    assert list(client.model_config("m").version_policy.specific.versions) == [1]

    # Nothing changed on disk, yet the plain load is not skipped: it reads config.pbtxt again.
    client.load("m")
    assert client.ready_versions("m") == [2]
    assert not client.model_config("m").version_policy.HasField("specific")


def test_a_widening_override_outlives_a_plain_load_although_the_file_pins_the_old_version(server):
    """The promotion chain's state between load and commit: the file pins the committed version,
    the override widens to {committed, candidate}. A plain load (another tool, an operator's curl)
    does not narrow it back: only a load that sends a config does."""
    client, repository = server
    config_file = repository / "m" / "config.pbtxt"
    committed = state.config_with_pin(CONFIG, [1])
    config_file.write_text(committed)
    try:
        client.load("m", config=state.config_json(committed))
        client.load("m", config=state.config_json(state.config_with_pin(CONFIG, [1, 2])))
        assert client.ready_versions("m") == [1, 2]
        client.load("m")
        assert client.ready_versions("m") == [1, 2], "the override outlived the plain loads"
        client.load("m", config=state.config_json(committed))
        assert client.ready_versions("m") == [1]
    finally:
        config_file.write_text(CONFIG)
        client.load("m", config=state.config_json(CONFIG))
