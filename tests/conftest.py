"""Shared test helpers: the project root, a runner for the real `tritonops` CLI, and one assembled
backends folder for every tritonserver the tests start (tests/triton and tests/runtime)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tritonops.triton import server as triton_server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_cli():
    """Run `tritonops ARGS` as a real process; returns the CompletedProcess."""

    def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tritonops.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=120, check=False)

    return run


@pytest.fixture(scope="session")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One assembled backends folder shared by every server the tests start."""
    return triton_server.assemble_backends(tmp_path_factory.mktemp("triton-work"))
