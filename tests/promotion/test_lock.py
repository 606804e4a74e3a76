"""The repository's promotion lock: one holder at a time, named to whoever is refused; a lock left
by a dead process or a silent holder is stale, reported with the command that clears it; `tritonops
unlock` removes only a stale lock unless forced."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import ROOT
from tritonops import errors
from tritonops.promotion import atomic, lock, state

HOLDER = """
import sys, time
from pathlib import Path
from tritonops.promotion import lock
with lock.hold(Path(sys.argv[1]), "linear", "tritonops promote linear --version 2"):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(repo: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock (a promotion in progress)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(repo)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "held\n"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def write_lock(repo: Path, **changes: object) -> Path:
    owner = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "user": "ops",
        "command": "tritonops promote linear --version 2",
        "model": "linear",
        "startedAt": state.now(),
        "heartbeatAt": state.now(),
        **changes,
    }
    path = lock.path(repo)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(owner), encoding="utf-8")
    return path


def stamp(seconds_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).strftime(state.TIMESTAMP_FORMAT)


def test_a_second_promotion_is_refused_naming_the_holder(repo: Path, holder: subprocess.Popen[str]) -> None:
    with (
        pytest.raises(errors.PromotionLocked) as raised,
        lock.hold(repo, "linear", "tritonops rollback linear"),
    ):
        pass

    assert not isinstance(raised.value, errors.StaleLock)
    assert raised.value.exit_code == 3
    message = str(raised.value)
    assert f"a promotion is in progress in {repo}" in message
    assert "`tritonops promote linear --version 2` for model linear by " in message
    assert f"pid {holder.pid}" in message and "wait for it to finish" in message


def test_the_holder_releases_the_lock_and_the_next_one_takes_it(repo: Path) -> None:
    with lock.hold(repo, "linear", "first") as owner:
        found = lock.inspect(repo)
        assert found is not None and found.owner == owner and not found.stale
    assert lock.inspect(repo) is None
    with lock.hold(repo, "linear", "second"):
        assert lock.inspect(repo) is not None


def test_a_lock_left_by_a_killed_process_is_stale_and_says_how_to_clear_it(
    repo: Path, holder: subprocess.Popen[str], run_cli
) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)

    with pytest.raises(errors.StaleLock) as raised, lock.hold(repo, "linear", "tritonops promote linear"):
        pass

    message = str(raised.value)
    assert message.startswith(f"{lock.path(repo)}: stale promotion lock left by `tritonops promote linear")
    assert f"process {holder.pid} is gone" in message
    assert f"`tritonops unlock --repository {repo}`" in message
    cleared = run_cli("unlock", "--repository", str(repo))
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.startswith(f"removed {lock.path(repo)}: held by `tritonops promote linear")
    with lock.hold(repo, "linear", "tritonops promote linear"):
        pass


def test_a_lock_without_a_heartbeat_for_a_minute_is_stale(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On another host its pid cannot be checked: only the heartbeat tells.
    monkeypatch.setattr(lock, "CONFIRM_S", 0.1)
    write_lock(repo, host="other-node", pid=1, startedAt=stamp(300), heartbeatAt=stamp(90))

    with (
        pytest.raises(errors.StaleLock, match=r"no heartbeat for 9\d s \(more than 60 s\)"),
        lock.hold(repo, "linear", "x"),
    ):
        pass


def test_a_recent_heartbeat_from_another_host_is_a_live_lock(repo: Path) -> None:
    write_lock(repo, host="other-node", pid=1, heartbeatAt=stamp(10))

    found = lock.inspect(repo)

    assert found is not None and not found.stale
    with pytest.raises(errors.PromotionLocked, match="by ops@other-node pid 1"), lock.hold(repo, "m", "x"):
        pass


def test_unlock_refuses_a_live_lock_and_force_removes_it(
    repo: Path, holder: subprocess.Popen[str], run_cli
) -> None:
    refused = run_cli("unlock", "--repository", str(repo))

    assert refused.returncode == 3
    assert "refusing to remove a live lock" in refused.stderr and f"pid {holder.pid}" in refused.stderr
    assert lock.path(repo).exists()
    forced = run_cli("unlock", "--repository", str(repo), "--force")
    assert forced.returncode == 0, forced.stderr
    assert not lock.path(repo).exists()


def test_unlock_without_a_lock_says_so(repo: Path, run_cli) -> None:
    result = run_cli("unlock", "--repository", str(repo))
    assert (result.returncode, result.stdout) == (0, f"no promotion lock in {repo}\n")


def test_unlock_needs_a_repository_when_no_runtime_was_started(tmp_path: Path, run_cli) -> None:
    result = run_cli("unlock", "--work-dir", str(tmp_path / "none"))
    assert result.returncode == 2
    assert "give --repository DIR" in result.stderr and "Traceback" not in result.stderr


def test_unlock_defaults_to_the_repository_the_local_runtime_serves(
    repo: Path, tmp_path: Path, run_cli
) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "plan.json").write_text(json.dumps({"repository": str(repo)}))
    write_lock(repo, pid=1, host="gone-node", heartbeatAt=stamp(600))

    result = run_cli("unlock", "--work-dir", str(tmp_path / "work"))

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"removed {lock.path(repo)}: held by ")
    assert not lock.path(repo).exists()


def test_a_missing_repository_is_refused_and_not_created(tmp_path: Path) -> None:
    with (
        pytest.raises(errors.InputError, match="no such model repository"),
        lock.hold(tmp_path / "nope", "m", "x"),
    ):
        pass
    assert not (tmp_path / "nope").exists()


def test_the_holder_refreshes_its_heartbeat(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.05)
    with lock.hold(repo, "linear", "x") as owner:
        monkeypatch.setattr(state, "now", lambda: "2099-01-01T00:00:00Z")
        deadline = time.monotonic() + 5
        while json.loads(lock.path(repo).read_text())["heartbeatAt"] == owner.heartbeat_at:
            assert time.monotonic() < deadline, "no heartbeat within 5 s"
            time.sleep(0.02)


def test_a_holder_whose_lock_was_forced_away_leaves_the_new_holders_lock_alone(repo: Path) -> None:
    with lock.hold(repo, "linear", "first"):
        lock.clear(repo, force=True)
        write_lock(repo, command="second", pid=1)
    found = lock.inspect(repo)
    assert found is not None and found.owner is not None and found.owner.command == "second"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _wait_for_heartbeat(repo: Path, before: str) -> None:
    deadline = time.monotonic() + 5
    while json.loads(lock.path(repo).read_text())["heartbeatAt"] == before:
        assert time.monotonic() < deadline, "no heartbeat within 5 s"
        time.sleep(0.02)


def test_the_lock_is_readable_by_everyone_after_creation_and_after_a_heartbeat(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pods' agents read it as another user: 0600 would hide every promotion from them.
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.05)
    with lock.hold(repo, "linear", "x") as owner:
        assert _mode(lock.path(repo)) == 0o644
        monkeypatch.setattr(state, "now", lambda: "2099-01-01T00:00:00Z")
        _wait_for_heartbeat(repo, owner.heartbeat_at)
        assert _mode(lock.path(repo)) == 0o644


def _watching(monkeypatch: pytest.MonkeyPatch, meanwhile) -> list[float]:
    """Replace the lock module's sleep with `meanwhile` (what happens while it watches)."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        meanwhile()

    monkeypatch.setattr(lock, "time", SimpleNamespace(sleep=sleep))
    return slept


def test_a_lock_from_another_host_whose_heartbeat_still_moves_is_live_whatever_the_clocks_say(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its clock runs 90 s behind ours, but its holder keeps heartbeating.
    old = write_lock(repo, host="other-node", pid=1, heartbeatAt=stamp(90)).read_text()
    slept = _watching(monkeypatch, lambda: write_lock(repo, host="other-node", pid=1, heartbeatAt=stamp(84)))

    with pytest.raises(errors.PromotionLocked) as raised, lock.hold(repo, "linear", "x"):
        pass
    assert not isinstance(raised.value, errors.StaleLock)
    assert "a promotion is in progress" in str(raised.value) and "heartbeat still moves" in str(raised.value)
    assert slept == [lock.CONFIRM_S] and lock.CONFIRM_S > lock.HEARTBEAT_S

    lock.path(repo).write_text(old)
    with pytest.raises(errors.PromotionLocked, match="refusing to remove a live lock"):
        lock.clear(repo)
    assert lock.path(repo).exists()


def test_a_lock_from_another_host_whose_heartbeat_stays_put_is_stale_after_one_more_look(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_lock(repo, host="other-node", pid=1, heartbeatAt=stamp(90))
    slept = _watching(monkeypatch, lambda: None)

    with pytest.raises(errors.StaleLock, match="no heartbeat for"), lock.hold(repo, "linear", "x"):
        pass
    assert slept == [lock.CONFIRM_S]
    assert lock.clear(repo) is not None and not lock.path(repo).exists()
    assert slept == [lock.CONFIRM_S] * 2


def test_a_lock_judged_by_this_hosts_process_table_is_not_watched(
    repo: Path, holder: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    slept = _watching(monkeypatch, lambda: None)
    with pytest.raises(errors.StaleLock), lock.hold(repo, "linear", "x"):
        pass
    assert slept == []


def test_check_held_passes_while_the_lock_is_ours_and_names_what_happened_when_removed(repo: Path) -> None:
    with lock.hold(repo, "linear", "promote linear --version 2") as owner:
        lock.check_held(repo, owner)
        lock.clear(repo, force=True)
        with pytest.raises(errors.PromotionLocked) as raised:
            lock.check_held(repo, owner)
    message = str(raised.value)
    assert f"{lock.path(repo)}: this promotion (`promote linear --version 2`, pid {os.getpid()})" in message
    assert "the lock file was removed" in message and "stopping before the commit" in message


def test_check_held_names_the_holder_that_replaced_us(repo: Path) -> None:
    with lock.hold(repo, "linear", "first") as owner:
        lock.clear(repo, force=True)
        write_lock(repo, command="second", pid=1, host="other-node")
        with pytest.raises(
            errors.PromotionLocked, match=r"now names `second` for model linear by ops@other-node"
        ):
            lock.check_held(repo, owner)


def test_a_heartbeat_that_cannot_be_written_loses_the_lock(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.05)

    def failing(target: Path, text: str) -> None:
        raise OSError(5, "Input/output error")

    with lock.hold(repo, "linear", "x") as owner:
        monkeypatch.setattr(atomic, "write_text", failing)
        deadline = time.monotonic() + 5
        while True:
            try:
                lock.check_held(repo, owner)
            except errors.PromotionLocked as error:
                assert "a heartbeat could not be written (Input/output error)" in str(error)
                break
            assert time.monotonic() < deadline, "the failed heartbeat was not recorded"
            time.sleep(0.02)
    assert lock.inspect(repo) is None  # released all the same: the file was still ours


def test_the_heartbeat_thread_records_a_lock_taken_away(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.05)
    with lock.hold(repo, "linear", "first") as owner:
        lock.clear(repo, force=True)
        write_lock(repo, command="second", pid=1, host="other-node")
        deadline = time.monotonic() + 5
        while (lock.path(repo), owner) not in lock._LOST:  # the thread looks, and records it
            assert time.monotonic() < deadline, "the heartbeat thread did not notice"
            time.sleep(0.02)
        lock.clear(repo, force=True)
        write_lock(repo, command="first", pid=owner.pid, startedAt=owner.started_at)  # ours again by name
        with pytest.raises(errors.PromotionLocked, match="now names `second`"):
            lock.check_held(repo, owner)


def test_a_link_that_worked_but_answered_eexist_holds_the_lock(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # NFS: the server made the link, its reply was lost, the retry answered EEXIST.
    real_link = os.link

    def link(source: str, target: Path) -> None:
        real_link(source, target)
        raise FileExistsError(17, "File exists")

    monkeypatch.setattr(lock.os, "link", link)
    with lock.hold(repo, "linear", "x") as owner:
        found = lock.inspect(repo)
        assert found is not None and found.owner == owner
    assert lock.inspect(repo) is None
