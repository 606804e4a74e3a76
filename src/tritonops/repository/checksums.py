"""`repo checksum`: a SHA-256 manifest per model version, written next to the version folder
(`<model>/<version>.sha256`, sha256sum format, so Triton never scans it) and verified before a
promotion; optionally Triton's checksum repository-agent block (MD5, as that agent requires)."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from tritonops import errors
from tritonops.repository import layout
from tritonops.repository.findings import FindingSink
from tritonops.triton import client as triton_client

MANIFEST_SUFFIX = ".sha256"
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class VersionCheck:
    """What verifying one version found; `ok` only when every file matches and none is missing or new."""

    model: str
    version: int
    manifest: Path
    mismatched: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    unlisted: tuple[str, ...] = ()
    no_manifest: bool = False

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.missing or self.unlisted or self.no_manifest)


def manifest_path(version_dir: Path) -> Path:
    return version_dir.parent / f"{version_dir.name}{MANIFEST_SUFFIX}"


def file_digests(version_dir: Path, algorithm: str = "sha256") -> dict[str, str]:
    """{path relative to the version folder: hex digest} for every file below it, sorted.

    The same walk as the chart's launcher (charts/triton/files/committed_state.py): symlinked
    folders are followed, as Triton follows them; a link to a folder the walk is already inside
    (same real path) is a loop and is not entered again; CACHE_FOLDERS are left out.
    """
    return dict(
        sorted((relative, _digest(path, algorithm)) for relative, path in _version_files(version_dir))
    )


# Written into a version folder by the server itself, not part of the artifact: the Python backend's
# stub compiles model.py into __pycache__ beside it when the repository is writable, which would
# otherwise change the version's digest after its first load (and the launcher would refuse it).
CACHE_FOLDERS = frozenset({"__pycache__"})


def _version_files(version_dir: Path) -> list[tuple[str, Path]]:
    """(path relative to the version folder with '/', path) of every file, through symlinked folders."""
    found = []
    # (folder, its path relative to the version folder, real paths of the folders it is inside)
    pending: list[tuple[Path, str, tuple[str, ...]]] = [(version_dir, "", (os.path.realpath(version_dir),))]
    while pending:
        directory, prefix, inside = pending.pop()
        try:
            with os.scandir(directory) as scan:
                entries = list(scan)
        except OSError as error:
            raise errors.InputError(f"{directory}: cannot read: {error.strerror or error}") from None
        for entry in entries:
            if not entry.is_dir():  # is_dir() follows symlinks, as Triton does
                found.append((prefix + entry.name, Path(entry.path)))
                continue
            if entry.name in CACHE_FOLDERS:
                continue
            real = os.path.realpath(entry.path)
            if real not in inside:
                pending.append((Path(entry.path), f"{prefix}{entry.name}/", (*inside, real)))
    return found


def manifest_text(digests: dict[str, str]) -> str:
    return "".join(f"{digest}  {name}\n" for name, digest in digests.items())


def version_digest(version_dir: Path) -> str:
    """One digest for a whole version: sha256 of its manifest (what the committed state records)."""
    return "sha256:" + hashlib.sha256(manifest_text(file_digests(version_dir)).encode()).hexdigest()


def versions(path: Path) -> list[tuple[str, int, Path]]:
    """(model, version, folder) for a repository root or a single model folder."""
    _check_path(path)
    is_model = (path / "config.pbtxt").exists() or any(
        child.name.isdigit() for child in path.iterdir() if child.is_dir()
    )
    model_dirs = [path] if is_model else layout.model_folders(path, FindingSink())
    found = []
    for model_dir in model_dirs:
        folder = layout.read_model_folder(model_dir, FindingSink())
        found += [(folder.name, number, version_dir) for number, version_dir in folder.versions.items()]
    return found


def write_manifests(path: Path) -> list[Path]:
    """Write (atomically) a manifest next to every version folder below `path`."""
    written = []
    for _, _, version_dir in versions(path):
        target = manifest_path(version_dir)
        atomic_write(target, manifest_text(file_digests(version_dir)))
        written.append(target)
    return written


def verify_manifests(path: Path) -> list[VersionCheck]:
    """Compare every version folder below `path` with its manifest."""
    results = []
    for model, number, version_dir in versions(path):
        target = manifest_path(version_dir)
        if not target.exists():
            results.append(VersionCheck(model, number, target, no_manifest=True))
            continue
        expected = _read_manifest(target)
        actual = file_digests(version_dir)
        results.append(
            VersionCheck(
                model,
                number,
                target,
                mismatched=tuple(n for n in expected if n in actual and actual[n] != expected[n]),
                missing=tuple(n for n in expected if n not in actual),
                unlisted=tuple(n for n in actual if n not in expected),
            )
        )
    return results


def agent_block(model_dir: Path) -> str:
    """Triton's checksum repository-agent block (MD5 per file, keys relative to the model folder),
    rendered by Triton's own ModelConfig protobuf so it pastes into config.pbtxt as is."""
    _check_path(model_dir)
    folder = layout.read_model_folder(model_dir, FindingSink())
    if not folder.versions:
        raise errors.InputError(f"{model_dir}: {_why_no_versions(model_dir, agent_block=True)}")
    parameters = {
        f"MD5:{version_dir.name}/{name}": digest
        for version_dir in folder.versions.values()
        for name, digest in file_digests(version_dir, "md5").items()
    }
    config = triton_client.ModelConfig()
    config.model_repository_agents.agents.add(name="checksum", parameters=parameters)
    return str(text_format.MessageToString(config))


def _read_manifest(path: Path) -> dict[str, str]:
    entries = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        digest, separator, name = line.partition("  ")
        if not separator or len(digest) != 64:
            raise errors.InputError(
                f"{path}:{number}: not a sha256sum line; rewrite it with `tritonops repo checksum --write`"
            )
        entries[name] = digest
    return entries


def _digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except OSError as error:
        raise errors.InputError(f"{path}: cannot read: {error.strerror or error}") from None
    return digest.hexdigest()


def atomic_write(target: Path, text: str) -> None:
    """Write a whole file or nothing: a temporary sibling renamed over the target.

    The file gets the mode an ordinary `open()` would give it (0o666 less the umask), or the
    existing target's mode: `mkstemp`'s 0600 would hide a config or manifest from the pod, which
    reads the repository as another user (UID 1000) over NFS.
    """
    mode = _existing_mode(target)
    if mode is None:
        mode = 0o666 & ~repository_umask()
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _existing_mode(target: Path) -> int | None:
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return None


def repository_umask() -> int:
    """The umask for what tritonops writes into a model repository: the process umask without the
    bits that would take reading from group and others. Pods read the repository as another user,
    so an operator's umask 077 must not make a record, config or version folder unreadable to them."""
    return umask() & 0o022


def umask() -> int:
    """The process umask (read from /proc where it can be, so the umask is never changed)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def require_versions(path: Path) -> list[tuple[str, int, Path]]:
    """`versions(path)`, or an InputError saying why `path` holds none and what to give instead."""
    found = versions(path)
    if not found:
        raise errors.InputError(f"{path}: {_why_no_versions(path, agent_block=False)}")
    return found


def _why_no_versions(path: Path, *, agent_block: bool) -> str:
    models = [
        folder.name
        for folder in layout.model_folders(path, FindingSink())
        if layout.read_model_folder(folder, FindingSink()).versions
    ]
    if agent_block and models:
        return (
            f"a model repository (models: {', '.join(models)}), not one model folder; --agent-block "
            "takes one model folder, because the block goes into that model's config.pbtxt: e.g. "
            f"`tritonops repo checksum {path / models[0]} --agent-block`"
        )
    if path.name.isdigit() and layout.read_model_folder(path.parent, FindingSink()).versions:
        return f"a version folder; give its model folder {path.parent}"
    return "no model versions found (no <model>/<version>/ or <version>/ folders); give " + (
        "one model folder" if agent_block else "a model repository or one model folder"
    )


def _check_path(path: Path) -> None:
    if path.is_file():
        folder = path.parent.parent if path.parent.name.isdigit() else path.parent
        raise errors.InputError(
            f"{path}: a file; repo checksum takes a model folder (or a repository root): give {folder}"
        )
    if not path.is_dir():
        raise errors.InputError(f"{path}: no such model repository or model folder")
