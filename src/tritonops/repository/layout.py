"""The folder structure of a model repository as Triton reads it.

Triton treats every sub-folder of the repository as a model and every sub-folder of a model whose
name *starts* with a number as a version: it parses the leading integer, so `3.failed_x` is read as
version 3 and `007` as version 7, and it silently skips names that do not start with one. Here each
of those is classified so that validation can reject it instead.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from tritonops.repository.findings import FindingSink

LEADING_NUMBER = re.compile(r"^([0-9]+)")


@dataclass(frozen=True)
class ModelFolder:
    """One model folder: its config, its version folders, and anything Triton would misread."""

    name: str
    path: Path
    config: Path | None
    versions: dict[int, Path] = field(default_factory=dict)
    readable: bool = True


def model_folders(root: Path, sink: FindingSink) -> list[Path]:
    """The folders Triton would load as models; unreadable entries become findings.

    Dot-names are not models: the promotion tool's work area (`<root>/.tritonops`, staging and
    quarantine) lives there, and Triton lists such a folder in its index but never loads it in the
    explicit mode the chart runs with the committed state.
    """
    folders = []
    for entry in _entries(root, sink) or []:
        if entry.name.startswith("."):
            continue
        if _is_usable_directory(entry, sink):
            folders.append(Path(entry.path))
    return sorted(folders, key=lambda path: path.name)


def read_model_folder(path: Path, sink: FindingSink) -> ModelFolder:
    """Classify a model folder's entries: config, versions, and misleading folders."""
    config = None
    versions: dict[int, Path] = {}
    entries = _entries(path, sink)
    if entries is None:
        return ModelFolder(path.name, path, None, readable=False)
    for entry in entries:
        if entry.name == "config.pbtxt" and not entry.is_dir():
            config = Path(entry.path)
            continue
        if not _is_usable_directory(entry, sink):
            continue
        version = _version_number(entry.name, Path(entry.path), sink)
        if version is not None:
            versions[version] = Path(entry.path)
    return ModelFolder(path.name, path, config, dict(sorted(versions.items())))


def _version_number(name: str, path: Path, sink: FindingSink) -> int | None:
    leading = LEADING_NUMBER.match(name)
    where = {"file": str(path), "version": name, "field": "version folder"}
    if leading is None:
        sink.error(
            f"folder {name!r} is not a version: Triton skips it silently; move it out of the model "
            "folder or rename it to a version number",
            **where,
        )
        return None
    number = int(leading.group(1))
    if leading.group(1) != name:
        sink.error(
            f"Triton reads {name!r} as version {number} (it parses the leading number); move it "
            "outside every folder Triton scans",
            **where,
        )
        return None
    if name.startswith("0"):
        sink.error(
            f"version folder {name!r} has a leading zero; Triton would read it as {number}: rename it "
            f"to {number if number else 'a positive number'}",
            **where,
        )
        return None
    return number


def _entries(path: Path, sink: FindingSink) -> list[os.DirEntry[str]] | None:
    try:
        with os.scandir(path) as iterator:
            return sorted(iterator, key=lambda entry: entry.name)
    except OSError as error:
        sink.error(f"cannot list folder: {error.strerror or error}; check its permissions", file=str(path))
        return None


def _is_usable_directory(entry: os.DirEntry[str], sink: FindingSink) -> bool:
    """A directory Triton can enter; symlink loops and broken links become findings."""
    if entry.is_symlink():
        try:
            os.stat(entry.path)
        except OSError as error:
            problem = "symlink loop" if error.errno == errno.ELOOP else "broken symlink"
            sink.error(f"{problem}: {os.readlink(entry.path)!r}; fix or remove the link", file=entry.path)
            return False
    try:
        return entry.is_dir()
    except OSError as error:
        sink.error(f"cannot inspect: {error.strerror or error}", file=entry.path)
        return False
