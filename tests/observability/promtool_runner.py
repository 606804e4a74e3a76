"""`promtool test rules` on a test document built in Python: the one runner that the alert tests, the
dashboard's query tests and the GPU checks share. Standard library and PyYAML only: the GPU machine
runs it too (tests/gpu/test_gpu_node.py), where the project's own package cannot be imported."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml


def run(promtool: str, document: dict[str, Any], scratch: Path, name: str = "rules.test.yaml") -> str:
    """Write `document` (rule_files, evaluation_interval, tests) to `scratch/name` and run promtool on
    it; its output, asserted successful (promtool prints what it expected and what it got)."""
    test_file = scratch / name
    test_file.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    result = subprocess.run(
        [promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout
    return result.stdout
