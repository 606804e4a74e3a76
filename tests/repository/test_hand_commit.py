"""A hand-written committed state keeps working beside `tritonops promote`: the steps (manifest, pin,
record with the digests `repo validate` prints) give a repository that `repo validate` and the
pod's launcher accept, and every committed-state message says what to do."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tritonops.chart import environments
from tritonops.repository import checksums, validator

LAUNCH = environments.CHART_DIR / "files" / "launch.py"
PIN = "version_policy { specific { versions: [ 1 ] } }\n"


def _write_record(repo: Path, entry: dict[str, object]) -> None:
    document = {"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {"linear": entry}}
    (repo / "current.json").write_text(json.dumps(document), encoding="utf-8")


def test_the_readme_steps_commit_a_version_the_launcher_accepts(run_cli, repo, add_linear, tmp_path):
    model = add_linear()
    # 1. the manifest, 2. the pin, 3. the record with the version: validate prints both digests.
    assert run_cli("repo", "checksum", str(model), "--write").returncode == 0
    (model / "config.pbtxt").write_text((model / "config.pbtxt").read_text() + PIN)
    _write_record(repo, {"version": 1})
    first = run_cli("repo", "validate", str(repo))
    assert first.returncode == 0, first.stdout
    (digest,) = re.findall(r'"digest": "(sha256:[0-9a-f]{64})"', first.stdout)
    (config_digest,) = re.findall(r'"configDigest": "(sha256:[0-9a-f]{64})"', first.stdout)
    # The digest is the sha256 of the version's manifest, the config digest that of config.pbtxt.
    manifest_sha = "sha256:" + hashlib.sha256((model / "1.sha256").read_bytes()).hexdigest()
    assert digest == manifest_sha == checksums.version_digest(model / "1")
    assert config_digest == "sha256:" + hashlib.sha256((model / "config.pbtxt").read_bytes()).hexdigest()
    # 4. the digests in the record: validate is clean and the launcher starts on it.
    _write_record(repo, {"version": 1, "digest": digest, "configDigest": config_digest})
    second = run_cli("repo", "validate", str(repo))
    assert second.returncode == 0 and "0 error(s), 0 warning(s)" in second.stdout, second.stdout
    server = tmp_path / "tritonserver"
    server.write_text(f"#!{sys.executable}\n", encoding="utf-8")
    server.chmod(0o755)
    state, arguments = f"--committed-state={repo / 'current.json'}", f"--repository={repo}"
    launched = subprocess.run(
        [sys.executable, str(LAUNCH), state, arguments, "--", str(server)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert launched.returncode == 0, launched.stderr


def _break(repo: Path, model: Path, how: str) -> None:
    if how == "model-folder-missing":
        shutil.rmtree(model)
    elif how == "version-folder-missing":
        shutil.rmtree(model / "1")
    elif how == "pin-missing":
        (model / "config.pbtxt").write_text((model / "config.pbtxt").read_text().replace(PIN, ""))
    elif how == "no-digest":
        _write_record(repo, {"version": 1})
    elif how == "files-changed":
        (model / "1" / "extra.txt").write_text("x")
    elif how == "config-changed":
        (model / "config.pbtxt").write_text((model / "config.pbtxt").read_text() + "# tuned\n")


HOW_TO_FIX = {
    "model-folder-missing": "remove models.linear from the committed-state record (",
    "version-folder-missing": "commit a version that is there (`tritonops rollback linear --to VERSION",
    "pin-missing": "Repair the pin in this file: version_policy { specific { versions: [1] } }",
    "no-digest": 'After checking the files, add "digest": "sha256:',
    "files-changed": 'set models.linear.digest to "sha256:',
    "config-changed": 'set models.linear.configDigest to "sha256:',
}


@pytest.mark.parametrize("how", list(HOW_TO_FIX))
def test_committed_state_messages_say_what_to_do(repo, add_linear, how):
    model = add_linear()
    (model / "config.pbtxt").write_text((model / "config.pbtxt").read_text() + PIN)
    config_digest = "sha256:" + hashlib.sha256((model / "config.pbtxt").read_bytes()).hexdigest()
    digest = checksums.version_digest(model / "1")
    _write_record(repo, {"version": 1, "digest": digest, "configDigest": config_digest})
    assert validator.validate(repo).findings == ()
    _break(repo, model, how)
    messages = [finding.message for finding in validator.validate(repo).findings]
    assert messages, how
    # The promotion tool exists: no message sends the user to do by hand what it does.
    assert not [m for m in messages if "by hand" in m or "until" in m], messages
    assert any(HOW_TO_FIX[how] in m for m in messages), messages
