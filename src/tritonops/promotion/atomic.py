"""Whole-file writes that survive a crash: the old content or the new, never a mix.

Each write goes to a temporary file in the target's own folder (same filesystem, so the rename is
atomic), is flushed and fsynced, renamed over the target, and the folder is fsynced so that the
rename itself is on disk before the caller moves on to its next step (the commit protocol in
promotion/state.py orders three such writes and relies on each being durable before the next).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from tritonops.repository import checksums


def write_bytes(target: Path, data: bytes) -> None:
    """Replace `target` with `data` atomically and durably.

    The file keeps the existing target's mode, or gets what an ordinary `open()` would give it
    (0o666 less the umask): mkstemp's 0600 would hide a config or record from the pod, which reads
    the repository as another user.
    """
    mode = _mode_for(target)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_folder(target.parent)


def write_text(target: Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def fsync_folder(folder: Path) -> None:
    """Make a rename (or create/unlink) inside `folder` durable."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _mode_for(target: Path) -> int:
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~checksums.repository_umask()
