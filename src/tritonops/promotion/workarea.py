"""The repository's work area, `<repository>/.tritonops/`: staging, quarantine and kept configs.

It is on the same filesystem as the model folders, so a staged candidate moves into
`<repository>/<model>/<version>` with one atomic rename, and a rejected one moves out the same way.
Triton never loads it: it is not a version folder of any model, and the chart runs Triton in
explicit mode, where a top-level dot-folder is listed in the index but never loaded; `repo
validate` skips dot-named folders.

- `staging/<model>-<version>-<random>/`: a materialized candidate before its rename;
- `quarantine/<model>/<version>-<UTC stamp>/`: a rejected version folder (`<version>/`, untouched,
  with its checksum manifest when it had one) and `reason.json` (model, version, step, reason, at,
  by, where it was, its digest).
- `configs/<model>/<sha256 hex>.pbtxt`: a config.pbtxt a config promotion replaced, byte for byte,
  named by its configDigest, so that a rollback writes back the very text the record's `previous`
  names (current.json holds each config only as protobuf JSON, without its comments).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tritonops import errors
from tritonops.promotion import atomic, state
from tritonops.repository import checksums, committed_state

WORK_AREA = ".tritonops"
REASON_FILE = "reason.json"


def root(repository: Path) -> Path:
    return Path(repository) / WORK_AREA


def staging_dir(repository: Path) -> Path:
    return root(repository) / "staging"


def quarantine_dir(repository: Path) -> Path:
    return root(repository) / "quarantine"


def configs_dir(repository: Path) -> Path:
    return root(repository) / "configs"


def keep_config(repository: Path, model: str, config_bytes: bytes) -> Path:
    """Keep a copy of `config_bytes` named by its digest (atomically and durably, before the commit
    that replaces it); a copy that is there already is left as it is."""
    digest = state.config_digest(config_bytes)
    path = kept_config_path(repository, model, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or state.config_digest(path.read_bytes()) != digest:
        atomic.write_bytes(path, config_bytes)
    return path


def kept_config_path(repository: Path, model: str, digest: str) -> Path:
    """Where the kept config with `digest` (`sha256:<hex>`) is, or would be."""
    return configs_dir(repository) / model / f"{digest.removeprefix('sha256:')}.pbtxt"


def kept_config(repository: Path, model: str, digest: str) -> str | None:
    """The kept config with `digest`, or None when none is kept (or it no longer hashes to it)."""
    path = kept_config_path(repository, model, digest)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data.decode("utf-8") if state.config_digest(data) == digest else None


def new_staging(repository: Path, model: str, version: int) -> Path:
    """A new, empty staging folder for one candidate."""
    parent = staging_dir(repository)
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{model}-{version}-", dir=parent))
    # mkdtemp's 0700 would follow the folder into the model folder and hide the version from the
    # pod, which reads the repository as another user: give it an ordinary folder's mode.
    folder.chmod(0o777 & ~checksums.repository_umask())
    return folder


@dataclass(frozen=True)
class StageResult:
    """Where the candidate is now, its digest, and whether an identical folder was already there."""

    path: Path
    digest: str
    reused: bool

    def describe(self) -> str:
        if self.reused:
            return f"{self.path} already holds these files ({self.digest}): reused it"
        return f"staged into {self.path} ({self.digest})"


def stage(staged_dir: Path, repository: Path, model: str, version: int) -> StageResult:
    """Move a staged candidate into `<repository>/<model>/<version>` with one atomic rename, and
    write its checksum manifest beside it (`<version>.sha256`).

    The manifest goes in before the candidate's load on purpose: a file that appears in the model
    folder after a load makes Triton treat the model as modified at its next load, so the instant
    narrowing of a later commit or `--keep-previous` rollback would become a full reload of every
    version (measured: 0.1 s vs 2.3 s). Written now, the widening load absorbs it.

    A version folder that is already there is never overwritten: one with the same files (same
    digest) is reused and the staged copy removed; one with other files is refused (InputError).
    """
    model_dir = Path(repository) / model
    target = model_dir / str(version)
    if not model_dir.is_dir():
        raise errors.InputError(f"{model_dir}: no such model folder; the model needs its folder and config")
    digest = checksums.version_digest(staged_dir)
    if target.exists():
        existing = checksums.version_digest(target)
        if existing != digest:
            raise errors.InputError(
                f"{target} already exists with other files ({existing}; the candidate is {digest}). "
                "A version folder is never overwritten: promote the candidate under a new version "
                "number, or move the existing folder out of the repository first"
            )
        shutil.rmtree(staged_dir)
        write_manifest(target)
        return StageResult(target, digest, reused=True)
    try:
        os.rename(staged_dir, target)
    except OSError as error:
        raise errors.InputError(
            f"cannot move {staged_dir} to {target}: {error.strerror or error} (the work area "
            f"{root(repository)} must be on the repository's filesystem)"
        ) from None
    atomic.fsync_folder(model_dir)
    write_manifest(target)
    return StageResult(target, digest, reused=False)


def write_manifest(version_dir: Path) -> bool:
    """Write `<version>.sha256` beside a version folder that has none (the repository toolkit's
    format, which `tritonops repo checksum --verify` checks); False when one is there already."""
    if checksums.manifest_path(version_dir).exists():
        return False
    atomic.write_text(
        checksums.manifest_path(version_dir), checksums.manifest_text(checksums.file_digests(version_dir))
    )
    return True


def _pinned_on_disk(repository: Path, model: str) -> list[int] | None:
    try:
        text = (repository / model / state.CONFIG_FILE).read_text(encoding="utf-8")
    except OSError:
        return None
    pinned = committed_state.script().pinned_versions(text)
    return list(pinned) if pinned is not None else None


def quarantine(
    repository: Path,
    model: str,
    version: int,
    step: str,
    reason: str,
    *,
    folder: Path | None = None,
) -> Path:
    """Move a rejected candidate out of every folder Triton scans, with a reason file; return its
    quarantine folder. `folder` is the candidate's folder: its version folder by default, or a
    staging folder for a candidate rejected before it was staged.

    Refuses (InputError) to move a version the committed state commits or retains.
    """
    repository = Path(repository)
    source = folder if folder is not None else repository / model / str(version)
    if folder is None:
        record = state.effective(repository).get(model)
        if record is not None and version in record.pin:
            raise errors.InputError(
                f"{source}: version {version} of {model} is committed (pinned {record.pin}); "
                "a committed version is never quarantined"
            )
        pinned = _pinned_on_disk(repository, model)
        if pinned is not None and version in pinned:
            # A first commit whose record write failed after its config write: moving the folder
            # away would leave config.pbtxt pinning a version a restarted pod cannot find.
            raise errors.InputError(
                f"{source}: {model}/{state.CONFIG_FILE} pins version {version} ({pinned}); a version "
                "the config pins is never quarantined (`tritonops repo validate` shows the state)"
            )
    if not source.is_dir():
        raise errors.InputError(f"{source}: no such candidate folder to quarantine")
    digest = checksums.version_digest(source)
    destination = _new_quarantine_folder(repository, model, version)
    os.rename(source, destination / str(version))
    manifest = checksums.manifest_path(source)
    if folder is None and manifest.exists():
        os.rename(manifest, destination / manifest.name)
    atomic.fsync_folder(source.parent)
    # The quarantined files keep a manifest, so what was refused can be checked later.
    write_manifest(destination / str(version))
    reason_document = {
        "model": model,
        "version": version,
        "step": step,
        "reason": reason,
        "at": state.now(),
        "by": state.who(),
        "from": str(source),
        "digest": digest,
    }
    atomic.write_text(destination / REASON_FILE, json.dumps(reason_document, indent=2) + "\n")
    return destination


def _new_quarantine_folder(repository: Path, model: str, version: int) -> Path:
    parent = quarantine_dir(repository) / model
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for attempt in range(100):
        candidate = parent / (f"{version}-{stamp}" + (f"-{attempt}" if attempt else ""))
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise errors.InputError(f"{parent}: cannot make a new quarantine folder for version {version}")
