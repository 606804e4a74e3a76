"""Fixtures for the CI tier: the copyable workflow, chart-testing's config, and the chart's metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tritonops.chart import environments

ROOT = environments.PROJECT_ROOT
CI_DIR = ROOT / "ci"
WORKFLOW = CI_DIR / "github-workflow.yml"
CT_CONFIG = CI_DIR / "ct.yaml"
CHART_YAML = environments.CHART_DIR / "Chart.yaml"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def workflow() -> dict[str, Any]:
    return load_yaml(WORKFLOW)


@pytest.fixture(scope="session")
def ct_config() -> dict[str, Any]:
    return load_yaml(CT_CONFIG)


@pytest.fixture(scope="session")
def chart_metadata() -> dict[str, Any]:
    return load_yaml(CHART_YAML)
