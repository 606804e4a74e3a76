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
