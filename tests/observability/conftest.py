"""Fixtures for the observability tier: the Prometheus and Alertmanager tools, skipped when absent."""

from __future__ import annotations

import shutil

import pytest


def _tool(*names: str) -> str:
    """The path of the first of `names` on PATH; skips the test when none is installed."""
    for name in names:
        if path := shutil.which(name):
            return path
    pytest.skip(
        f"{' or '.join(names)} not installed (Debian: apt-get install prometheus prometheus-alertmanager)"
    )


@pytest.fixture(scope="session")
def promtool() -> str:
    return _tool("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return _tool("amtool")


@pytest.fixture(scope="session")
def alertmanager_binary() -> str:
    """Debian names the binary prometheus-alertmanager; upstream tarballs name it alertmanager."""
    return _tool("prometheus-alertmanager", "alertmanager")
