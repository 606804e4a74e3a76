"""Fixtures for the promotion tier: a repository with `linear` committed by the promotion tool's
own commit, and writers for candidate version folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonops.promotion import state
from tritonops.repository import checksums, committed_state
from tritonops.triton import onnx_models

LINEAR_CONFIG = """\
# y = x @ W + b: four features in, two out.
name: "linear"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "input" data_type: TYPE_FP32 dims: [ 4 ] } ]  # "#" inside a string stays: "a#b"
output [ { name: "output" data_type: TYPE_FP32 dims: [ 2 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""


def add_version(repository: Path, version: int, model: str = "linear") -> Path:
    """A correct `linear` version folder."""
    return onnx_models.linear(repository / model / str(version) / "model.onnx").parent


def commit_version(
    repository: Path, version: int, *, retained: tuple[int, ...] = (), model: str = "linear"
) -> state.Record:
    """Commit an existing version folder with the promotion tool's commit."""
    config = (repository / model / "config.pbtxt").read_text(encoding="utf-8")
    record = state.Record(
        model,
        version,
        digest=checksums.version_digest(repository / model / str(version)),
        retained=retained,
        source=f"test:{version}",
    )
    pinned = state.config_with_pin(config, [version, *retained])
    return state.commit(repository, model, record, pinned)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """`linear` version 1 committed (pinned, recorded with both digests)."""
    root = tmp_path / "models"
    (root / "linear").mkdir(parents=True)
    (root / "linear" / "config.pbtxt").write_text(LINEAR_CONFIG, encoding="utf-8")
    add_version(root, 1)
    commit_version(root, 1)
    return root


def launcher_check(repository: Path) -> list[object]:
    """What the pod's launcher does before it starts Triton: parse the record and check the
    repository against it (digests included); raises CommittedStateError when it would refuse."""
    script = committed_state.script()
    path = str(repository / "current.json")
    records = script.parse(script.read_bytes(path), path)
    return list(script.check_repository(str(repository), records, state_path=path, verify_digest=True))
