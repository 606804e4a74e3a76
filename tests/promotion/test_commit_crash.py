"""A promote process killed (SIGKILL) right after each of the commit's three writes leaves the old
or the new committed version, never a half-written file or a pod that refuses to start, and the
next run converges (finalize, then the commit again)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.promotion.conftest import add_version, launcher_check
from tritonops.promotion import state


def commit_killed_after(repository: Path, version: int, kill_after: int) -> int:
    command = [sys.executable, "-m", "tests.promotion.crash_commit", str(repository), "linear", str(version)]
    result = subprocess.run(
        [*command, str(kill_after)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode


# (killed after write N, the version in force, what finalize records)
CRASHES = [(1, 1, "failed"), (2, 2, "committed"), (3, 2, None)]


@pytest.mark.parametrize(
    ("kill_after", "in_force", "finalized"), CRASHES, ids=["pending", "config", "record"]
)
def test_a_commit_killed_after_any_write_leaves_the_old_or_the_new_version_and_converges(
    repo: Path, kill_after: int, in_force: int, finalized: str | None
) -> None:
    add_version(repo, 2)

    assert commit_killed_after(repo, 2, kill_after) == -signal.SIGKILL

    # Both files are whole, and the pod's launcher starts on exactly one committed version.
    json.loads((repo / "current.json").read_text(encoding="utf-8"))
    state.parse_config((repo / "linear" / "config.pbtxt").read_text(encoding="utf-8"))
    warnings = launcher_check(repo)
    assert state.effective(repo)["linear"].version == in_force
    assert [w.field for w in warnings] == (["models.linear.pending"] if finalized else [])  # type: ignore[attr-defined]

    messages = state.finalize(repo)

    read = state.read(repo)
    assert read.records["linear"].version == in_force and read.records["linear"].pending is None
    assert launcher_check(repo) == []
    if finalized is None:
        assert messages == []
    else:
        (message,) = messages
        assert message.startswith("linear: ")
        last = read.history[-1]
        assert (last.version, last.outcome, last.step) == (2, finalized, "commit")
    if in_force == 2:
        assert read.records["linear"].previous is not None
        assert read.records["linear"].previous.version == 1
        assert [h.outcome for h in read.history].count("committed") == 2

    # A re-run converges on version 2 whatever was left.
    assert commit_killed_after(repo, 2, 0) == 0
    assert state.effective(repo)["linear"].version == 2
    assert launcher_check(repo) == []


def test_a_first_commit_killed_after_its_config_write_leaves_the_model_uncommitted(repo: Path) -> None:
    (repo / "second").mkdir()
    (repo / "second" / "config.pbtxt").write_text(
        (repo / "linear" / "config.pbtxt").read_text().replace('"linear"', '"second"'), encoding="utf-8"
    )
    add_version(repo, 1, model="second")
    command = [sys.executable, "-m", "tests.promotion.crash_commit", str(repo), "second", "1", "1"]

    killed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)

    assert killed.returncode == -signal.SIGKILL
    assert "second" not in state.read(repo).records
    assert launcher_check(repo) == []
