"""Fixtures for the Triton tier: our onnxruntime backend imported in-process.

The assembled backends folder (`backends`) is shared with tests/runtime and lives in tests/conftest.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

from tritonops.triton import server as triton_server


@pytest.fixture(scope="session")
def backend_module() -> Iterator[ModuleType]:
    """Our backend's model.py imported in-process, with the wheel's triton_python_backend_utils."""
    utils_folder = str(triton_server.wheel_root() / "backends" / "python")
    sys.path.insert(0, utils_folder)
    try:
        from tritonops.triton.backends.onnxruntime import model

        yield model
    finally:
        sys.path.remove(utils_folder)
