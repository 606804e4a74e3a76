"""SIGKILL the `tritonops promote` process at each step, then status, reconcile and promote again:
the committed state is always the old or the new version (never a half-written file), the replicas
converge to it, and a re-run of the same promotion ends on the new version."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.promotion.conftest import Fleet
from tritonops.promotion import chain, lock, state
from tritonops.promotion import status as model_status
from tritonops.repository import committed_state

STEPS = ["materialize", "stage", "load", "check", "commit", "narrow"]


def _promote_command(fleet: Fleet, version: int) -> list[str]:
    """`tritonops promote` of a new `linear` version on the fleet, as a real process runs it."""
    return [
        sys.executable, "-m", "tritonops.cli", "promote", "linear", "--version", str(version),
        "--from", str(fleet.candidate(version)), "--repository", str(fleet.repository),
        "--work-dir", str(fleet.work_dir),
    ]  # fmt: skip


def promote_killed_at(fleet: Fleet, version: int, step: str) -> subprocess.CompletedProcess[str]:
    """Run `tritonops promote` as a real process and SIGKILL it as soon as it says `step` started."""
    command = _promote_command(fleet, version)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    assert process.stderr is not None
    for line in process.stderr:
        seen.append(line)
        if line.startswith(f"-> {step}:"):
            process.kill()
            break
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == -9, f"not killed at {step}: {''.join(seen)}{stderr}{stdout}"
    return subprocess.CompletedProcess(command, process.returncode, stdout, "".join(seen) + stderr)


def assert_whole_and_consistent(fleet: Fleet) -> None:
    """current.json parses and the pod's launcher would start on this repository."""
    state.read(fleet.repository)
    problems = [f for f in committed_state.check(fleet.repository) if f.severity.value == "error"]
    assert problems == []


@pytest.mark.parametrize("step", STEPS)
def test_a_promote_killed_at_each_step_leaves_old_or_new_and_a_rerun_converges(
    fleet_runtime: Fleet, figures, step
):
    fleet = fleet_runtime
    before = fleet.record().version
    version = fleet.new_version()
    promote_killed_at(fleet, version, step)
    assert_whole_and_consistent(fleet)
    seen = model_status.status(fleet.repository, fleet.replicas, "linear", key=fleet.key)
    committed = seen.models[0].committed
    assert committed is not None and committed["version"] in (before, version)
    figures(
        f"[killed at {step}] committed {committed['version']} (old {before}, new {version}); drift {seen.models[0].drift}"
    )
    # The dead promotion's lock is reported stale, with the command that clears it.
    assert (
        seen.lock is not None and seen.lock["stale"] and "tritonops unlock --repository" in seen.lock["clear"]
    )
    lock.clear(fleet.repository)
    reconciled = chain.reconcile(repository=fleet.repository, replicas=fleet.replicas, key=fleet.key)
    assert reconciled.result == "reconciled"
    pin = fleet.record().pin
    assert fleet.served() == [tuple(pin)] * 2
    again = chain.promote(
        repository=fleet.repository,
        replicas=fleet.replicas,
        key=fleet.key,
        model="linear",
        version=version,
        source=str(fleet.candidate(version)),
    )
    assert again.result in ("committed", "noop")
    assert fleet.record().version == version and fleet.served() == [(version,), (version,)]
    assert model_status.status(fleet.repository, fleet.replicas, key=fleet.key).in_sync


def test_a_stale_lock_is_reported_by_the_cli_with_how_to_clear_it(fleet_runtime: Fleet, run_cli):
    fleet = fleet_runtime
    version = fleet.new_version()
    promote_killed_at(fleet, version, "load")
    target = ["--repository", str(fleet.repository), "--work-dir", str(fleet.work_dir)]
    refused = run_cli("promote", "linear", "--version", str(version), *target)
    assert refused.returncode == 3 and "stale promotion lock" in refused.stderr
    assert f"tritonops unlock --repository {fleet.repository}" in refused.stderr
    assert "Traceback" not in refused.stderr
    status = run_cli("status", "linear", *target)
    assert "stale: clear it with `tritonops unlock" in status.stdout, status.stdout + status.stderr
    lock.clear(fleet.repository)
    reconciled = run_cli("reconcile", *target)
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    assert "converge" in reconciled.stdout and "reconcile reconciled" in reconciled.stdout
    assert fleet.served() == [tuple(fleet.record().pin)] * 2


def test_a_sigterm_during_the_load_restores_the_replicas_and_releases_the_lock(fleet_runtime: Fleet):
    # What a CI job's timeout sends: the chain restores as on any failure, instead of leaving the
    # candidate serving and the lock behind.
    fleet = fleet_runtime
    before = fleet.record()
    version = fleet.new_version()
    command = _promote_command(fleet, version)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("-> load:"):
            process.send_signal(signal.SIGTERM)
            break
    stdout, stderr = process.communicate(timeout=120)
    output = "".join(seen) + stderr + stdout
    assert process.returncode == 1, output
    assert "interrupted by a signal" in output
    assert lock.inspect(fleet.repository) is None
    assert fleet.record() == before
    # Restored by the chain (a load still finishing on a replica is narrowed by its agent).
    deadline = time.monotonic() + 30
    while fleet.served() != [tuple(before.pin)] * 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert fleet.served() == [tuple(before.pin)] * 2
    assert state.read(fleet.repository).history[-1].outcome == "failed"
