"""Fixtures for the chart tier: renderings of each environment, and renders with overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tritonops.chart import render


@pytest.fixture(scope="session")
def rendered() -> dict[str, render.Rendering]:
    """Each environment rendered once with its committed values files."""
    return {name: render.render(name) for name in ("dev", "prod", "local")}


@pytest.fixture
def render_with(tmp_path: Path):
    """Render an environment with an extra values file holding `overrides` (the real -f path)."""

    def render_env(env: str, overrides: dict[str, Any]) -> render.Rendering:
        extra = tmp_path / f"overrides-{len(list(tmp_path.iterdir()))}.yaml"
        extra.write_text(yaml.safe_dump(overrides), encoding="utf-8")
        return render.render(env, extra_files=[extra])

    return render_env
