"""Fixtures for the cluster tier: the fake API server and a kubeconfig for it, and the promotion
tier's two real replicas (`fleet_runtime`, reused from tests/promotion/conftest.py) that the
promotion Job's end-to-end test promotes on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.fake_apiserver import FakeApiServer, write_kubeconfig
from tests.promotion.conftest import fleet_runtime  # noqa: F401  (a fixture, used by name)


@pytest.fixture
def fake_api() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def kubeconfig(tmp_path: Path, fake_api: FakeApiServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig for the fake, in $KUBECONFIG; never in-cluster (the tests may run in a pod)."""
    path = write_kubeconfig(tmp_path / "kubeconfig", fake_api.url, namespace="ml")
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return path
