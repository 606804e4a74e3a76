"""Fixtures for the repository tier: a repository folder and a writer for model folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tritonops.triton import onnx_models

LINEAR_CONFIG = """
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ {{ name: "input" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "output" data_type: TYPE_FP32 dims: [ 2 ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 100 }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root


@pytest.fixture
def add_linear(repo: Path):
    """Add a linear ONNX model `name` with `config` (default: a correct batching config); a test
    that needs no config.pbtxt removes it."""

    def add(name: str = "linear", config: str | None = None, *, in_shape=("batch", 4), versions=(1,)) -> Path:
        for version in versions:
            onnx_models.linear(repo / name / str(version) / "model.onnx", in_shape=in_shape)
        text = LINEAR_CONFIG.format(name=name) if config is None else config
        (repo / name / "config.pbtxt").write_text(text)
        return repo / name

    return add


@pytest.fixture
def umask() -> Iterator[object]:
    """Set this process's umask (the CLI's child processes inherit it); restored afterwards."""
    saved = os.umask(0o022)

    def set_umask(value: int) -> None:
        os.umask(value)

    yield set_umask
    os.umask(saved)


def mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o777
