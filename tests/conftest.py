"""Shared test helpers: the project root and a runner for the real `tritonops` CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_cli():
    """Run `tritonops ARGS` as a real process; returns the CompletedProcess."""

    def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tritonops.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=120, check=False)

    return run
