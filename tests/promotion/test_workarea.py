"""The work area (`<repository>/.tritonops/`): a staged candidate moves into its version folder in
one rename (an identical folder is reused, a different one refused), and a rejected one moves out of
every folder Triton scans with its reason."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from tests.promotion.conftest import add_version
from tritonops import errors
from tritonops.promotion import atomic, workarea
from tritonops.repository import checksums, validator
from tritonops.triton import onnx_models


def staged_linear(repo: Path, version: int, **shape: object) -> Path:
    staging = workarea.new_staging(repo, "linear", version)
    onnx_models.linear(staging / "model.onnx", **shape)  # type: ignore[arg-type]
    return staging


def test_a_staged_candidate_moves_into_its_version_folder_with_its_manifest(repo: Path) -> None:
    staging = staged_linear(repo, 2)
    digest = checksums.version_digest(staging)

    result = workarea.stage(staging, repo, "linear", 2)

    assert (result.path, result.digest, result.reused) == (repo / "linear" / "2", digest, False)
    assert not staging.exists()
    assert not workarea.write_manifest(result.path)  # there already: never rewritten
    checks = {check.version: check for check in checksums.verify_manifests(repo / "linear")}
    assert checks[2].ok and checks[2].manifest == repo / "linear" / "2.sha256"
    # The pod reads the repository as another user: the folder is not left 0700 from mkdtemp.
    assert result.path.stat().st_mode & 0o055 == 0o055


def test_an_identical_version_folder_is_reused_and_says_so(repo: Path) -> None:
    add_version(repo, 2)
    staging = staged_linear(repo, 2)

    result = workarea.stage(staging, repo, "linear", 2)

    assert result.reused and not staging.exists()
    assert "already holds these files" in result.describe()


def test_a_version_folder_with_other_files_is_never_overwritten(repo: Path) -> None:
    add_version(repo, 2)
    before = checksums.version_digest(repo / "linear" / "2")
    staging = staged_linear(repo, 2, out_features=3)

    with pytest.raises(errors.InputError, match="already exists with other files"):
        workarea.stage(staging, repo, "linear", 2)

    assert checksums.version_digest(repo / "linear" / "2") == before
    assert staging.is_dir()


def test_a_quarantined_version_leaves_every_scanned_folder_with_its_reason(repo: Path) -> None:
    workarea.stage(staged_linear(repo, 2), repo, "linear", 2)
    digest = checksums.version_digest(repo / "linear" / "2")

    moved = workarea.quarantine(repo, "linear", 2, "check", "output 'output' holds NaN")

    assert moved.parent == repo / ".tritonops" / "quarantine" / "linear"
    assert moved.name.startswith("2-") and moved.name.endswith("Z")
    assert not (repo / "linear" / "2").exists() and not (repo / "linear" / "2.sha256").exists()
    assert checksums.version_digest(moved / "2") == digest
    assert (moved / "2.sha256").is_file()
    reason = json.loads((moved / "reason.json").read_text())
    assert {k: reason[k] for k in ("model", "version", "step", "reason", "digest")} == {
        "model": "linear",
        "version": 2,
        "step": "check",
        "reason": "output 'output' holds NaN",
        "digest": digest,
    }
    assert " pid " in reason["by"] and reason["from"] == str(repo / "linear" / "2")
    # Nothing Triton or `repo validate` scans holds the candidate any more.
    assert validator.validate(repo).findings == ()


def test_quarantining_the_same_version_twice_keeps_both(repo: Path) -> None:
    first = workarea.quarantine(repo, "linear", 2, "verify", "bad", folder=staged_linear(repo, 2))
    second = workarea.quarantine(repo, "linear", 2, "verify", "bad", folder=staged_linear(repo, 2))
    assert first != second and (first / "2").is_dir() and (second / "2").is_dir()


def test_a_committed_version_is_never_quarantined(repo: Path) -> None:
    with pytest.raises(errors.InputError, match="is committed"):
        workarea.quarantine(repo, "linear", 1, "check", "no")
    assert (repo / "linear" / "1").is_dir()


def test_staging_into_a_missing_model_folder_is_refused(repo: Path) -> None:
    staging = staged_linear(repo, 1)
    shutil.rmtree(repo / "linear")
    with pytest.raises(errors.InputError, match="no such model folder"):
        workarea.stage(staging, repo, "linear", 1)


def test_an_operators_private_umask_never_hides_the_record_or_a_staged_version_from_the_pods(
    repo: Path,
) -> None:
    """Pods read the repository as another user: umask 077 must not leave 0600/0700 behind."""
    saved = os.umask(0o077)
    try:
        staging = workarea.new_staging(repo, "linear", 7)
        atomic.write_bytes(repo / "current.json", b"{}")
    finally:
        os.umask(saved)
    assert stat.S_IMODE(staging.stat().st_mode) == 0o755
    assert stat.S_IMODE((repo / "current.json").stat().st_mode) == 0o644
