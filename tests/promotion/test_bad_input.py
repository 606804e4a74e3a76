"""Bad input to `tritonops promote/rollback/reconcile/status`: a clear error that names what is
wrong, a non-zero exit, no traceback, and nothing changed (files and replicas).

The CLI's own main() runs in-process here (tests/conftest.py's run_cli: argument parsing, error
handling and exit codes are the same code as in a `tritonops` process; tests/promotion/test_crash.py
runs real processes)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.promotion.conftest import Fleet
from tritonops.promotion import replicas, workarea


def snapshot(repository: Path) -> dict[str, str]:
    """Every file under the repository (the work area included) and its sha256."""
    return {
        str(path.relative_to(repository)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(repository.rglob("*"))
        if path.is_file()
    }


def endpoints(fleet: Fleet) -> str:
    return ",".join(
        f"http://{r.http_address}?grpc={r.grpc_address.rsplit(':', 1)[1]}"
        for r in fleet.replicas
        if r.grpc_address
    )


GATE_WINDOW_NEGATIVE = ("--prometheus", "http://127.0.0.1:9", "--gate-window", "-1")


@pytest.mark.parametrize(
    ("arguments", "code", "words"),
    [
        (["promote", "nosuch", "--version", "2"], 2, "nosuch: no such model folder"),
        (
            ["promote", "linear", "--version", "99"],
            2,
            "linear/99: no such version folder; give --from SOURCE",
        ),
        (["promote", "linear", "--version", "99", "--from", "/no/such/folder"], 2, "/no/such/folder"),
        (["promote", "linear", "--version", "0"], 2, "--version 0: give a positive version number"),
        (["promote", "linear", "--version", "99", "--canary", "2"], 2, "--canary 2: give 1 to 1 replicas"),
        (["promote", "linear", "--version", "99", "--gate", "up == bool 1"], 2, "--gate needs --prometheus"),
        (
            [*("promote", "linear", "--version", "99", "--gate", "up == bool 1"), *GATE_WINDOW_NEGATIVE],
            2,
            "--gate-window -1: the window must be >= 0 seconds",
        ),
        (["rollback", "nosuch"], 2, "nosuch: no such model folder"),
        (["reconcile", "nosuch"], 2, "nosuch: nothing is committed for it"),
    ],
    ids=[
        "unknown-model",
        "missing-version",
        "missing-source",
        "version-0",
        "canary-too-big",
        "gate-without-prometheus",
        "gate-window-negative",
        "rollback-unknown",
        "reconcile-unknown",
    ],
)
def test_bad_arguments_are_refused_and_nothing_changes(fleet_runtime: Fleet, run_cli, arguments, code, words):
    fleet = fleet_runtime
    before, served = snapshot(fleet.repository), fleet.served()
    result = run_cli(*arguments, "--repository", str(fleet.repository), "--work-dir", str(fleet.work_dir))
    assert result.returncode == code, result.stdout + result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
    assert snapshot(fleet.repository) == before and fleet.served() == served


def test_an_unreachable_endpoint_is_named_and_nothing_changes(fleet_runtime: Fleet, run_cli, tmp_path):
    fleet = fleet_runtime
    before = snapshot(fleet.repository)
    version = fleet.new_version()
    good = endpoints(fleet).split(",")[0]
    result = run_cli(
        "promote", "linear", "--version", str(version), "--from", str(fleet.candidate(version)),
        "--repository", str(fleet.repository), "--endpoints", f"{good},http://127.0.0.1:9?grpc=7", "--json",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    error = json.loads(result.stdout)
    assert "replica 127.0.0.1:9" in error["error"] and "nothing was changed" in error["error"]
    assert snapshot(fleet.repository) == before


def test_a_wrong_key_is_refused_by_the_replicas_and_nothing_changes(
    fleet_runtime: Fleet, run_cli, monkeypatch
):
    fleet = fleet_runtime
    before, served = snapshot(fleet.repository), fleet.served()
    version = fleet.new_version()
    monkeypatch.setenv(replicas.KEY_ENV, "not-the-key")
    result = run_cli(
        "promote", "linear", "--version", str(version), "--from", str(fleet.candidate(version)),
        "--repository", str(fleet.repository), "--endpoints", endpoints(fleet),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "repository API refused the call" in result.stderr and "check the key" in result.stderr
    assert "triton-grpc-protocol" not in result.stderr, "the gRPC form of the header is not the user's"
    assert snapshot(fleet.repository) == before and fleet.served() == served


def test_a_repository_the_replicas_do_not_serve_fails_at_the_load_without_waiting_out_the_deadline(
    fleet_runtime: Fleet, run_cli, monkeypatch, tmp_path
):
    fleet = fleet_runtime
    elsewhere = tmp_path / "models"
    shutil.copytree(fleet.repository, elsewhere, ignore=shutil.ignore_patterns(workarea.WORK_AREA))
    before, served = snapshot(fleet.repository), fleet.served()
    version = fleet.new_version()
    monkeypatch.setenv(replicas.KEY_ENV, fleet.key.key or "")
    result = run_cli(
        "promote", "linear", "--version", str(version), "--from", str(fleet.candidate(version)),
        "--repository", str(elsewhere), "--endpoints", endpoints(fleet), "--load-timeout", "600",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"version(s) [{version}] not in the model repository this server reads" in result.stderr
    assert "does it serve the repository given with --repository?" in result.stderr
    assert snapshot(fleet.repository) == before and fleet.served() == served


def test_a_model_the_replicas_do_not_know_is_refused_naming_their_models_without_the_work_area(
    fleet_runtime: Fleet, run_cli, monkeypatch, tmp_path
):
    fleet = fleet_runtime
    elsewhere = tmp_path / "models"
    shutil.copytree(fleet.repository, elsewhere, ignore=shutil.ignore_patterns(workarea.WORK_AREA))
    shutil.copytree(elsewhere / "fresh", elsewhere / "ghost")
    before, served = snapshot(fleet.repository), fleet.served()
    monkeypatch.setenv(replicas.KEY_ENV, fleet.key.key or "")
    result = run_cli(
        "promote", "ghost", "--version", "1", "--repository", str(elsewhere), "--endpoints", endpoints(fleet)
    )
    assert result.returncode == 2, result.stdout + result.stderr
    # The replicas' repository has a `.tritonops` work area, which Triton's index lists.
    assert (fleet.repository / workarea.WORK_AREA).is_dir()
    assert "ghost: not in the model repository that" in result.stderr
    assert "serves (its index lists adopted, fresh, linear)" in result.stderr
    assert ".tritonops" not in result.stderr
    assert snapshot(fleet.repository) == before and fleet.served() == served


@pytest.mark.parametrize(
    "command", [["promote", "linear", "--version", "5"], ["rollback", "linear"], ["reconcile"]]
)  # status reports it and still lists the replicas: tests/promotion/test_status.py
def test_a_malformed_current_json_is_named_and_nothing_changes(
    fleet_runtime: Fleet, run_cli, tmp_path, command
):
    fleet = fleet_runtime
    copy = tmp_path / "models"
    shutil.copytree(fleet.repository, copy, ignore=shutil.ignore_patterns(workarea.WORK_AREA))
    (copy / "current.json").write_text(
        '{"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {"linear": {"version": "two"}}}'
    )
    before = snapshot(copy)
    result = run_cli(*command, "--repository", str(copy), "--endpoints", endpoints(fleet))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{copy / 'current.json'}" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(copy) == before


def test_status_of_an_unknown_model_is_refused_naming_the_models(repo: Path) -> None:
    from tritonops import errors
    from tritonops.promotion import status

    with pytest.raises(errors.InputError, match=r"nosuch: no such model in .* \(models: linear\)"):
        status.status(repo, (), "nosuch")
    assert [m.model for m in status.status(repo, (), "linear").models] == ["linear"]


@pytest.mark.parametrize(
    "command", [["promote", "linear", "--version", "2"], ["rollback", "linear"], ["reconcile"], ["status"]]
)
def test_endpoints_without_a_repository_say_that_the_repository_is_needed(run_cli, tmp_path, command):
    never = tmp_path / "never-started"
    result = run_cli(*command, "--endpoints", "http://127.0.0.1:9", "--work-dir", str(never))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == (
        "tritonops: --endpoints needs --repository DIR: the model repository those replicas serve, "
        "mounted read-write here (env TRITONOPS_REPOSITORY)\n"
    )
    assert not never.exists()


def test_rollback_to_a_missing_version_folder_names_the_versions_there(fleet_runtime: Fleet, run_cli):
    fleet = fleet_runtime
    before, served = snapshot(fleet.repository), fleet.served()
    there = sorted(int(p.name) for p in (fleet.repository / "linear").iterdir() if p.name.isdigit())
    target = ("--repository", str(fleet.repository), "--work-dir", str(fleet.work_dir))
    result = run_cli("rollback", "linear", "--to", "99", *target)
    assert result.returncode == 2, result.stdout + result.stderr
    folder = fleet.repository / "linear" / "99"
    assert (
        f"{folder}: no such version folder; the model folder holds version(s) {', '.join(map(str, there))}. "
        "Roll back to one of them with --to VERSION, or bring version 99 back with "
        f"`tritonops promote linear --version 99 --from SOURCE --work-dir {fleet.work_dir} "
        f"--repository {fleet.repository}`"
    ) in result.stderr
    assert "give --from" not in result.stderr
    assert snapshot(fleet.repository) == before and fleet.served() == served


def test_a_candidate_refused_at_verify_prints_its_whole_outcome_as_json(fleet_runtime: Fleet, run_cli):
    fleet = fleet_runtime
    before = fleet.record()
    version = fleet.new_version()
    source = fleet.candidate(version, build="mismatched")
    target = ("--repository", str(fleet.repository), "--work-dir", str(fleet.work_dir))
    result = run_cli("promote", "linear", "--version", str(version), "--from", str(source), *target, "--json")
    assert result.returncode == 2, result.stdout + result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["exit_code"] == 2 and "input" in outcome["error"]
    assert (outcome["result"], outcome["failed_step"], outcome["candidate"]) == ("failed", "verify", version)
    assert outcome["version"] == before.version
    assert [(s["name"], s["status"]) for s in outcome["steps"]] == [
        ("materialize", "ok"),
        ("verify", "failed"),
    ]
    quarantined = Path(outcome["quarantined"])
    assert quarantined.parent == workarea.quarantine_dir(fleet.repository) / "linear" and quarantined.is_dir()
    assert fleet.record() == before and fleet.served() == [tuple(before.pin)] * 2


@pytest.mark.parametrize(
    ("command", "instead"),
    [
        (["promote", "linear", "--version", "2"], "give --endpoints http://HOST:PORT[?grpc=PORT],..."),
        (["reconcile"], "give --endpoints http://HOST:PORT[?grpc=PORT],..."),
        (["tune", "linear", "--p99-budget", "10"], "give --endpoint http://HOST:PORT[?grpc=PORT]"),
    ],
)
def test_without_a_local_runtime_the_commands_say_what_to_give_or_start(run_cli, tmp_path, command, instead):
    never = tmp_path / "never-started"
    result = run_cli(*command, "--work-dir", str(never))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"tritonops: no local runtime in {never}: {instead}"), result.stderr
    assert result.stderr.endswith(f", or start one (`tritonops up --work-dir {never}`)\n"), result.stderr
    assert not never.exists()
