"""`tritonops status` when it cannot know everything: a committed record that cannot be read, a
repository API that refuses the key, no replicas to compare with. What it cannot know is said as
such (never as drift), what it can know is still shown, and the exit code says a problem was found.

The CLI's own main() runs in-process (tests/conftest.py's run_cli)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.promotion.conftest import Fleet
from tests.promotion.test_bad_input import endpoints, snapshot
from tritonops.promotion import replicas, workarea

MALFORMED = (
    '{"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {"linear": {"version": "two"}}}'
)
RECIPE_PARAGRAPH = "In an emergency without the tool"
RECIPE_SECTION = "### Promoting and rolling back a model"


def malformed_copy(fleet: Fleet, tmp_path: Path) -> Path:
    """The fleet's repository copied, with a current.json whose `linear` version is not a number."""
    copy = tmp_path / "models"
    shutil.copytree(fleet.repository, copy, ignore=shutil.ignore_patterns(workarea.WORK_AREA))
    (copy / "current.json").write_text(MALFORMED)
    return copy


def test_status_with_an_unreadable_record_names_the_field_and_still_lists_what_each_replica_serves(
    fleet_runtime: Fleet, run_cli, tmp_path, monkeypatch
):
    fleet = fleet_runtime
    monkeypatch.setenv(replicas.KEY_ENV, fleet.key.key or "")
    copy = malformed_copy(fleet, tmp_path)
    before, served = snapshot(copy), fleet.served()
    result = run_cli("status", "--repository", str(copy), "--endpoints", endpoints(fleet))
    assert result.returncode == 1, result.stdout + result.stderr
    text = result.stdout
    assert f"the committed record cannot be read: {copy / 'current.json'}" in text
    assert "models.linear.version must be a positive integer" in text
    assert "a pod that starts now refuses to start" in text
    assert f'"Promoting and rolling back a model", paragraph "{RECIPE_PARAGRAPH}"' in text
    assert "linear: committed version unknown" in text
    # Every replica is still listed with what it serves of `linear` (read from its repository index).
    for replica, versions in zip(fleet.replicas, served, strict=True):
        name, serves = re.escape(replica.http_address), re.escape(str(list(versions or ())))
        assert re.search(rf"^ +{name} +serves {serves}", text, re.M), text
    assert "COMMITTED RECORD UNREADABLE" in text and "in sync" not in text
    assert "Traceback" not in result.stderr and snapshot(copy) == before

    as_json = run_cli("status", "--repository", str(copy), "--endpoints", endpoints(fleet), "--json")
    assert as_json.returncode == 1, as_json.stdout + as_json.stderr
    models = json.loads(as_json.stdout)["models"]
    error = models["record_error"]
    assert error["file"] == str(copy / "current.json") and RECIPE_PARAGRAPH in error["fix"]
    assert [(p["field"], p["model"]) for p in error["problems"]] == [("models.linear.version", "linear")]
    assert models["in_sync"] is None
    linear = next(m for m in models["models"] if m["model"] == "linear")
    assert linear["committed"] is None
    assert [r["serves"] for r in linear["replicas"]] == [list(v) for v in served]


def test_the_recipe_status_points_to_is_in_the_readme():
    # status names this section and paragraph: renaming them must change status too.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.index(RECIPE_SECTION)
    next_section = readme.find("\n## ", section)
    assert RECIPE_PARAGRAPH in readme[section:next_section]


@pytest.mark.parametrize("given", ["not-the-key", None], ids=["wrong-key", "no-key"])
def test_a_refused_key_leaves_served_versions_unknown_not_drift(
    fleet_runtime: Fleet, run_cli, monkeypatch, given
):
    fleet = fleet_runtime
    if given is None:
        monkeypatch.delenv(replicas.KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(replicas.KEY_ENV, given)
    committed = fleet.record().pin
    target = ("--repository", str(fleet.repository), "--endpoints", endpoints(fleet))
    result = run_cli("status", "linear", *target)
    assert result.returncode == 1, result.stdout + result.stderr
    text = result.stdout
    for replica in fleet.replicas:
        line = next(line for line in text.splitlines() if line.strip().startswith(replica.http_address))
        assert (
            "serves unknown" in line and "served versions unknown: the repository API refused the key" in line
        )
        # The open per-version ready endpoint still says whether the committed versions are ready.
        assert f"version(s) {committed} ready on the open /v2/models/linear/versions/N/ready" in line
        assert "drift" not in line and "unreachable" not in line
    assert "DRIFT" not in text and "in sync" not in text
    assert "$TRITONOPS_API_KEY or --api-key-file FILE, and --api-header NAME" in text

    as_json = run_cli("status", "linear", *target, "--json")
    assert as_json.returncode == 1, as_json.stdout + as_json.stderr
    models = json.loads(as_json.stdout)["models"]
    (linear,) = models["models"]
    assert [(r["serves"], r["ready"], r["drift"]) for r in linear["replicas"]] == [(None, True, None)] * 2
    assert all(
        r["reason"].startswith("served versions unknown: the repository API refused the key")
        for r in linear["replicas"]
    )
    assert linear["drift"] == [] and models["in_sync"] is None
    assert models["unknown"] == sorted(r.http_address for r in fleet.replicas)
    assert "--api-key-file" in models["hint"]
    assert "--api-key-file" in as_json.stderr


def test_status_with_the_right_key_is_in_sync(fleet_runtime: Fleet, run_cli, monkeypatch):
    # The counterpart of the refused key: the same call with the key reads every replica's versions.
    fleet = fleet_runtime
    monkeypatch.setenv(replicas.KEY_ENV, fleet.key.key or "")
    target = ("--repository", str(fleet.repository), "--endpoints", endpoints(fleet))
    result = run_cli("status", "linear", *target)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("in sync with the committed state")
    assert "unknown" not in result.stdout


def test_status_with_only_a_repository_shows_the_committed_record(repo: Path, run_cli, tmp_path):
    # No local runtime in the work folder and no --endpoints: the record alone, and why no replica.
    work = tmp_path / "never-started"
    result = run_cli("status", "--repository", str(repo), "--work-dir", str(work))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "linear: version 1 committed" in result.stdout
    assert "replicas are not shown: give --endpoints http://HOST:PORT[?grpc=PORT]" in result.stdout
    assert "in sync" not in result.stdout and "nothing was started" not in result.stderr
    as_json = run_cli("status", "--repository", str(repo), "--work-dir", str(work), "--json")
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    models = json.loads(as_json.stdout)["models"]
    assert models["in_sync"] is None and models["replicas_not_shown"].startswith("replicas are not shown")
    assert models["models"][0]["committed"]["version"] == 1
    (repo / "current.json").write_text(MALFORMED)
    unreadable = run_cli("status", "--repository", str(repo), "--work-dir", str(work))
    assert unreadable.returncode == 1 and "models.linear.version" in unreadable.stdout


def test_a_no_op_promotion_hints_status_with_the_options_it_was_given(fleet_runtime: Fleet, run_cli):
    fleet = fleet_runtime
    version = fleet.record().version
    target = ("--repository", str(fleet.repository), "--work-dir", str(fleet.work_dir))
    result = run_cli("promote", "linear", "--version", str(version), *target)
    assert result.returncode == 0, result.stdout + result.stderr
    hint = f"`tritonops status --work-dir {fleet.work_dir} --repository {fleet.repository}` shows what"
    assert hint in result.stdout
    # Run as printed, the hint shows this runtime's replicas.
    status = run_cli("status", "--work-dir", str(fleet.work_dir), "--repository", str(fleet.repository))
    assert status.returncode != 2 and "replica-0" in status.stdout, status.stdout + status.stderr
