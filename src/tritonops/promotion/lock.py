"""The repository's promotion lock: `<repository>/.tritonops/promotion.lock`.

One promotion (or rollback, or reconcile that writes) at a time per repository. The lock file is
created exclusively and whole: its JSON is written to a temporary file that is then hard-linked to
the lock's name, which fails when the name exists (exclusive like O_CREAT|O_EXCL, and safe on NFS),
so nobody ever reads a half-written owner. It holds {pid, host, user, command, model, startedAt,
heartbeatAt}; the holder refreshes heartbeatAt every HEARTBEAT_S seconds.

The file is 0644 (mkstemp's 0600 would hide it from the pods' agents, which read the repository
as another user and must see a promotion in progress); heartbeat rewrites keep that mode. On NFS a
link() answered EEXIST may still have succeeded (the reply to a retried request was lost), so the
temporary file's link count decides, as in the classic NFS-safe O_EXCL recipe.

A lock is stale when its holder is on this host and its pid is gone, or when its heartbeat is
older than STALE_AFTER_S (a holder on another host, or a frozen one). That age compares another
host's clock with ours, so before calling a lock from another host stale, promote and unlock read it
again after CONFIRM_S (a little more than one heartbeat): a heartbeat that moved meanwhile is a
live holder whatever the clocks say. A live lock refuses a second holder with
errors.PromotionLocked naming the owner; a stale one with errors.StaleLock naming the dead owner
and the command that clears it (`tritonops unlock --repository DIR`). Nothing takes a stale lock
over by itself: the state it protected may need `finalize`, which the next promotion runs under the
lock it then takes.

The holder's heartbeat thread notices when the lock stops being its own (forced away, replaced or
removed) or a heartbeat cannot be written, and records it: `check_held(repository, owner)` raises
PromotionLocked saying so, and the chain calls it right before its commit writes.

The per-pod agent reads the same file: a live lock means "a promotion is in progress: do not act".
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tritonops import errors
from tritonops.promotion import atomic, state, workarea

LOCK_FILE = "promotion.lock"
HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0
# How long promote/unlock watch a lock from another host that looks stale by the wall clock.
CONFIRM_S = HEARTBEAT_S + 1.0
# Everyone may read the lock: the pods' agents run as another user.
LOCK_MODE = 0o644


@dataclass(frozen=True)
class LockOwner:
    """Who holds (or held) the lock, as its file says."""

    pid: int
    host: str
    user: str
    command: str
    model: str | None
    started_at: str
    heartbeat_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "host": self.host,
            "user": self.user,
            "command": self.command,
            "model": self.model,
            "startedAt": self.started_at,
            "heartbeatAt": self.heartbeat_at,
        }

    @classmethod
    def from_json(cls, document: Any) -> LockOwner:
        """Raises ValueError unless `document` is a complete owner."""
        try:
            owner = cls(
                pid=int(document["pid"]),
                host=str(document["host"]),
                user=str(document["user"]),
                command=str(document["command"]),
                model=None if document.get("model") is None else str(document["model"]),
                started_at=str(document["startedAt"]),
                heartbeat_at=str(document["heartbeatAt"]),
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a lock owner: missing or mistyped {error}") from None
        _seconds_since(owner.heartbeat_at)  # a ValueError for a timestamp that cannot be read
        return owner

    def describe(self) -> str:
        model = f" for model {self.model}" if self.model else ""
        return (
            f"`{self.command}`{model} by {self.user}@{self.host} pid {self.pid}, started "
            f"{_age_text(self.started_at)} ago, last heartbeat {_age_text(self.heartbeat_at)} ago"
        )


@dataclass(frozen=True)
class LockStatus:
    """A lock file found in a repository: its owner (None when the file cannot be read as one),
    whether it is stale, and why."""

    path: Path
    owner: LockOwner | None
    stale: bool
    why: str
    text: str = field(default="", repr=False, compare=False)  # the file as read

    def describe(self) -> str:
        who = self.owner.describe() if self.owner else "an unreadable owner"
        return f"{self.path}: held by {who}" + (f" ({self.why})" if self.why else "")


def path(repository: Path) -> Path:
    return workarea.root(repository) / LOCK_FILE


def inspect(repository: Path) -> LockStatus | None:
    """The repository's lock, or None when nobody holds it."""
    lock = path(repository)
    try:
        text = lock.read_text(encoding="utf-8")
        modified = lock.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError as error:
        raise errors.InputError(
            f"{lock}: cannot read the promotion lock: {error.strerror or error}"
        ) from None
    try:
        owner = LockOwner.from_json(json.loads(text))
    except ValueError as error:
        # Never half-written by this module (it links a complete file into place), so this is a
        # foreign or damaged file: stale once nobody could still be writing it.
        age = datetime.now(UTC).timestamp() - modified
        stale = age > STALE_AFTER_S
        return LockStatus(lock, None, stale, f"unreadable ({error}), {age:.0f} s old", text)
    stale, why = _staleness(owner)
    return LockStatus(lock, owner, stale, why, text)


def _confirmed(repository: Path, found: LockStatus) -> LockStatus | None:
    """`found` again, unless its stale verdict rests on another host's clock and the file changed
    within CONFIRM_S (a heartbeat: live); None when the lock went away meanwhile."""
    if not found.stale or (found.owner is not None and found.owner.host == socket.gethostname()):
        return found  # judged by our own clock or our own process table
    time.sleep(CONFIRM_S)
    again = inspect(repository)
    if again is None or again.text == found.text:
        return again
    if again.stale:
        return replace(again, stale=False, why="its heartbeat still moves, whatever the clocks say")
    return again


def _staleness(owner: LockOwner) -> tuple[bool, str]:
    if owner.host == socket.gethostname() and not _alive(owner.pid):
        return True, f"process {owner.pid} is gone from {owner.host}"
    silent = _seconds_since(owner.heartbeat_at)
    if silent > STALE_AFTER_S:
        return True, f"no heartbeat for {silent:.0f} s (more than {STALE_AFTER_S:.0f} s)"
    return False, ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


@contextlib.contextmanager
def hold(repository: Path, model: str | None, command: str) -> Iterator[LockOwner]:
    """Hold the repository's promotion lock for the block, refreshing its heartbeat.

    Raises PromotionLocked naming the live owner, or StaleLock naming the dead one and the command
    that clears it.
    """
    repository = Path(repository)
    if not repository.is_dir():
        raise errors.InputError(f"{repository}: no such model repository")
    lock = path(repository)
    lock.parent.mkdir(exist_ok=True)
    stamp = state.now()
    owner = LockOwner(
        pid=os.getpid(),
        host=socket.gethostname(),
        user=state.who().split("@", 1)[0],
        command=command,
        model=model,
        started_at=stamp,
        heartbeat_at=stamp,
    )
    _acquire(repository, lock, owner)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(lock, owner, stop), name="promotion-lock", daemon=True)
    beat.start()
    try:
        yield owner
    finally:
        stop.set()
        beat.join()
        _release(lock, owner)
        with _LOST_GUARD:
            _LOST.pop((lock, owner), None)


# What the heartbeat threads found: (lock path, owner) -> how the lock was lost.
_LOST: dict[tuple[Path, LockOwner], str] = {}
_LOST_GUARD = threading.Lock()


def check_held(repository: Path, owner: LockOwner) -> None:
    """Raise PromotionLocked unless `owner` (what hold() yielded) still holds the repository's lock:
    its heartbeat thread saw the lock taken or removed, or could not write a heartbeat (others may
    then judge it stale), or the file does not name `owner` now. Call it right before a commit."""
    lock = path(Path(repository))
    with _LOST_GUARD:
        lost = _LOST.get((lock, owner))
    if lost is None and not _ours(lock, owner):
        lost = _whose(lock)
    if lost is not None:
        raise errors.PromotionLocked(
            f"{lock}: this promotion (`{owner.command}`, pid {owner.pid}) no longer holds the "
            f"promotion lock: {lost}; stopping before the commit. Check `tritonops status`, then run "
            "it again"
        )


def _whose(lock: Path) -> str:
    """How the lock file reads now, for a holder that finds it is not its own."""
    try:
        found = LockOwner.from_json(json.loads(lock.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return "the lock file was removed (a forced `tritonops unlock`?)"
    except (OSError, ValueError) as error:
        return f"the lock file cannot be read as ours ({error})"
    return f"the lock file now names {found.describe()}"


def _lose(lock: Path, owner: LockOwner, why: str) -> None:
    with _LOST_GUARD:
        _LOST.setdefault((lock, owner), why)


def _acquire(repository: Path, lock: Path, owner: LockOwner) -> None:
    for _ in range(3):  # the holder may release between our attempt and our look at its file
        if _create(lock, owner):
            return
        found = inspect(repository)
        if found is not None:
            found = _confirmed(repository, found)
        if found is None:
            continue
        if found.stale:
            raise errors.StaleLock(_stale_message(repository, found))
        raise errors.PromotionLocked(
            f"a promotion is in progress in {repository}: {found.describe()}; wait for it to finish "
            f"(the lock is {found.path})"
        )
    raise errors.PromotionLocked(f"{lock}: the lock keeps changing hands; try again")


def _stale_message(repository: Path, found: LockStatus) -> str:
    who = found.owner.describe() if found.owner else "an owner that cannot be read"
    return (
        f"{found.path}: stale promotion lock left by {who} ({found.why}). Check that no promotion "
        f"is still running, then clear it with `{unlock_command(repository)}`; the next promotion "
        "completes or drops any commit it cut short"
    )


def unlock_command(repository: Path) -> str:
    return f"tritonops unlock --repository {shlex.quote(str(repository))}"


def _create(lock: Path, owner: LockOwner) -> bool:
    """Link a complete owner file into place; False when the lock exists."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{LOCK_FILE}.", dir=lock.parent)
    try:
        os.fchmod(descriptor, LOCK_MODE)  # before the link: the lock is never seen 0600
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(owner.to_json(), handle)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, lock)
        except FileExistsError:
            # NFS: a retried link whose first reply was lost answers EEXIST though it worked.
            if os.stat(temporary).st_nlink != 2:
                return False
        atomic.fsync_folder(lock.parent)
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _heartbeat(lock: Path, owner: LockOwner, stop: threading.Event) -> None:
    """Refresh heartbeatAt while the lock is still ours; record when it is not (a forced unlock
    may have given it away) or a heartbeat cannot be written (others may then judge it stale)."""
    while not stop.wait(HEARTBEAT_S):
        if not _ours(lock, owner):
            _lose(lock, owner, _whose(lock))
            return
        refreshed = {**owner.to_json(), "heartbeatAt": state.now()}
        try:
            atomic.write_text(lock, json.dumps(refreshed))  # keeps the lock's 0644
        except OSError as error:
            _lose(lock, owner, f"a heartbeat could not be written ({error.strerror or error})")


def _ours(lock: Path, owner: LockOwner) -> bool:
    try:
        found = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    mine = owner.to_json()
    return all(found.get(key) == mine[key] for key in ("pid", "host", "startedAt", "command", "model"))


def _release(lock: Path, owner: LockOwner) -> None:
    if _ours(lock, owner):
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        atomic.fsync_folder(lock.parent)


def clear(repository: Path, force: bool = False) -> LockStatus | None:
    """Remove the repository's lock when it is stale (any lock with `force`); the lock removed, or
    None when there was none. A live lock without `force` raises PromotionLocked."""
    if not Path(repository).is_dir():
        raise errors.InputError(f"{repository}: no such model repository")
    found = inspect(repository)
    if found is not None and not force:
        found = _confirmed(repository, found)
    if found is None:
        return None
    if not found.stale and not force:
        raise errors.PromotionLocked(
            f"refusing to remove a live lock: {found.describe()}. Wait for it to finish; only if you "
            f"know that holder is gone (e.g. its machine died), remove it with `{unlock_command(repository)} --force`"
        )
    with contextlib.suppress(FileNotFoundError):
        found.path.unlink()
    return found


def _seconds_since(timestamp: str) -> float:
    moment = datetime.strptime(timestamp, state.TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    return (datetime.now(UTC) - moment).total_seconds()


def _age_text(timestamp: str) -> str:
    try:
        seconds = _seconds_since(timestamp)
    except ValueError:
        return "an unknown time"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
