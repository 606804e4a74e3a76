"""Read and check the committed model state of a Triton model repository.

The promotion tool (until it exists, a person: see "Committing a version by hand" in the
project README) records what each model serves in `<repository>/current.json`:

    {"apiVersion": "tritonops/v1", "kind": "CommittedState",
     "models": {"resnet50": {"version": 3, "digest": "sha256:...", "committedAt": "2026-11-25T22:00:00Z"}}}

and pins the same version in the model's `config.pbtxt` with
`version_policy { specific { versions: [3] } }`. `digest` is the sha256 of the version's checksum
manifest (`<sha256>  <path>` per file, sorted; the `tritonops repo checksum` format), so it names
the exact files that were committed.

This module runs inside the Triton image (standard library only) for the launcher and the
readiness check, and `tritonops repo validate` loads this same file, so the validator reports
exactly what the launcher refuses. Keep it importable by Python 3.8 and free of third-party imports.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from typing import NamedTuple

API_VERSION = "tritonops/v1"
KIND = "CommittedState"
DEFAULT_FILE = "current.json"
DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 1024 * 1024
ERROR = "error"
WARNING = "warning"
# What the pod's local copy holds when the shared repository has no record: nothing committed.
EMPTY_RECORD = json.dumps({"apiVersion": API_VERSION, "kind": KIND, "models": {}}) + "\n"


class Problem(NamedTuple):
    """One thing wrong with the record or with the repository it describes."""

    severity: str  # ERROR refuses to start; WARNING is logged
    file: str
    message: str
    field: str | None = None
    model: str | None = None
    version: int | None = None
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


class CommittedStateError(Exception):
    """The committed state is unreadable or disagrees with the repository (one or more problems)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(problem) for problem in problems))
        self.problems = problems


class ModelRecord(NamedTuple):
    """What the record promises for one model: this version, with these files when `digest` is set."""

    name: str
    version: int
    digest: str | None = None


# --- reading the record -------------------------------------------------------------------------


def read_bytes(path: str) -> bytes | None:
    """The record's raw content, or None when there is none (nothing committed yet).

    On a `hard` NFS mount this blocks for as long as the server does not answer: callers that must
    stay responsive (the readiness check) run it in a thread with a deadline.
    """
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def parse(data: bytes | str, path: str) -> dict[str, ModelRecord]:
    """The records in `data`, or CommittedStateError naming every malformed field."""
    records, problems = parse_problems(data, path)
    if problems:
        raise CommittedStateError(problems)
    return records


def parse_problems(data: bytes | str, path: str) -> tuple[dict[str, ModelRecord], list[Problem]]:
    """The well-formed records and a problem (with its field) for everything malformed."""

    def problem(message: str, field: str | None = None, model: str | None = None) -> Problem:
        return Problem(ERROR, path, message, field=field, model=model)

    try:
        document = json.loads(data)
    except ValueError as error:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not text
        message = f"cannot read the committed state: not JSON ({error}); restore the file"
        return {}, [Problem(ERROR, path, message, line=getattr(error, "lineno", None))]
    if not isinstance(document, dict) or document.get("kind") != KIND:
        return {}, [problem(f"not a committed-state record (kind must be {KIND!r})", "kind")]
    if document.get("apiVersion") != API_VERSION:
        return {}, [
            problem(f"apiVersion {document.get('apiVersion')!r} is not {API_VERSION!r}", "apiVersion")
        ]
    models = document.get("models")
    if not isinstance(models, dict):
        return {}, [problem("'models' must be a mapping of model name to record", "models")]
    records: dict[str, ModelRecord] = {}
    problems: list[Problem] = []
    for name, record in sorted(models.items()):
        where = f"models.{name}"
        if not isinstance(record, dict):
            problems.append(problem(f"{where} must be a mapping with 'version' and 'digest'", where, name))
            continue
        version = record.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            problems.append(problem(f"{where}.version must be a positive integer", f"{where}.version", name))
            continue
        digest = record.get("digest")
        if digest is not None and (not isinstance(digest, str) or not DIGEST_PATTERN.match(digest)):
            problems.append(
                problem(
                    f"{where}.digest {digest!r} is not 'sha256:' followed by 64 lowercase hex digits",
                    f"{where}.digest",
                    name,
                )
            )
            continue
        records[name] = ModelRecord(name, version, digest)
    return records, problems


def read_records(path: str) -> dict[str, ModelRecord]:
    """{model: record}; an absent file means nothing is committed yet."""
    try:
        data = read_bytes(path)
    except OSError as error:
        message = f"cannot read the committed state: {error.strerror or error}"
        raise CommittedStateError([Problem(ERROR, path, message)]) from error
    return {} if data is None else parse(data, path)


def read(path: str) -> dict[str, int]:
    """{model: committed version}; an absent file means nothing is committed yet."""
    return {name: record.version for name, record in read_records(path).items()}


# --- the pins in config.pbtxt -------------------------------------------------------------------


def _block_after(text: str, keyword: str) -> str | None:
    """The text inside the braces that follow `keyword` (balanced), or None."""
    match = re.search(rf"\b{keyword}\s*:?\s*{{", text)
    if match is None:
        return None
    depth, start = 1, match.end()
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[start:index]
    return None


# A string literal (either quote, with escapes) or a comment, as protobuf's text format reads them.
_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|#[^\n]*')


def _without_strings_and_comments(text: str) -> str:
    """Strings emptied and comments dropped, so that neither a `#` inside a string nor a
    `version_policy` written inside one (a parameter's value) is taken for the real thing."""
    return _STRING_OR_COMMENT.sub(lambda match: "" if match.group(0)[0] == "#" else '""', text)


def pinned_versions(config_text: str) -> list[int] | None:
    """Versions pinned by `version_policy { specific { versions: ... } }`, or None when not pinned."""
    policy = _block_after(_without_strings_and_comments(config_text), "version_policy")
    specific = _block_after(policy, "specific") if policy is not None else None
    if specific is None:
        return None
    versions: list[int] = []
    for match in re.finditer(r"\bversions\s*:\s*(\[[^\]]*\]|-?\d+)", specific):
        versions.extend(int(number) for number in re.findall(r"-?\d+", match.group(1)))
    return sorted(set(versions))


# --- the repository against the record ----------------------------------------------------------


def _as_records(committed: dict[str, ModelRecord] | dict[str, int]) -> list[ModelRecord]:
    return [
        value if isinstance(value, ModelRecord) else ModelRecord(name, value)
        for name, value in sorted(committed.items())
    ]


def layout_problems(repository: str, committed: dict[str, ModelRecord] | dict[str, int]) -> list[Problem]:
    """Every committed model's folder, version folder and pin (cheap: no model file is read)."""
    problems = []
    for record in _as_records(committed):
        name, version = record.name, record.version
        model_dir = os.path.join(repository, name)
        config_path = os.path.join(model_dir, "config.pbtxt")
        at = {"model": name, "version": version}
        if not os.path.isdir(model_dir):
            problems.append(
                Problem(
                    ERROR,
                    model_dir,
                    f"committed model folder is missing (the record commits {name} version {version}); "
                    f"restore the folder, or remove models.{name} from the committed-state record "
                    "(current.json) by hand",
                    field=f"models.{name}",
                    **at,
                )
            )
            continue
        if not os.path.isdir(os.path.join(model_dir, str(version))):
            problems.append(
                Problem(
                    ERROR,
                    f"{model_dir}/{version}",
                    "committed version folder is missing; restore it, or commit a version that is there "
                    "by hand: pin it in config.pbtxt and set its version and digest (from `tritonops "
                    "repo validate`) in current.json",
                    field=f"models.{name}.version",
                    **at,
                )
            )
        try:
            with open(config_path, encoding="utf-8") as handle:
                pinned = pinned_versions(handle.read())
        except OSError as error:
            problems.append(
                Problem(
                    ERROR,
                    config_path,
                    f"cannot read: {error.strerror or error}; a committed model needs a config.pbtxt "
                    f"that pins version {version} (version_policy {{ specific {{ versions: [{version}] }} }})",
                    field="version_policy",
                    **at,
                )
            )
            continue
        if pinned != [version]:
            problems.append(
                Problem(
                    ERROR,
                    config_path,
                    f"version_policy pins {pinned or 'nothing'} but the committed state says version "
                    f"{version}; a restart would load the wrong version. Repair the pin in this file: "
                    f"version_policy {{ specific {{ versions: [{version}] }} }}",
                    field="version_policy",
                    **at,
                )
            )
    return problems


def digest_problems(repository: str, committed: dict[str, ModelRecord], state_path: str) -> list[Problem]:
    """Hash every committed version folder that exists and compare with the record's digest.

    Reads every file of every committed version once: seconds per GB from network storage.
    A record without a digest is a warning (the promotion tool always writes one; a hand-written
    record that lacks it starts, unverified, and says so).
    """
    problems = []
    for record in _as_records(committed):
        version_dir = os.path.join(repository, record.name, str(record.version))
        if not os.path.isdir(version_dir):
            continue  # layout_problems reports it
        at = {"field": f"models.{record.name}.digest", "model": record.name, "version": record.version}
        try:
            actual = version_digest(version_dir)
        except OSError as error:
            problems.append(
                Problem(
                    ERROR,
                    getattr(error, "filename", None) or version_dir,
                    f"cannot read to verify the committed digest of {record.name} version "
                    f"{record.version}: {error.strerror or error}",
                    **at,
                )
            )
            continue
        if record.digest is None:
            problems.append(
                Problem(
                    WARNING,
                    state_path,
                    f"models.{record.name} has no digest, so the files of version {record.version} "
                    f"are not verified. After checking the files, add "
                    f'"digest": "{actual}" to models.{record.name}',
                    **at,
                )
            )
        elif record.digest != actual:
            problems.append(
                Problem(
                    ERROR,
                    version_dir,
                    f"model {record.name} version {record.version}: the files hash to {actual} but "
                    f"{state_path} records {record.digest}, so they changed after the commit (or the "
                    "record was edited). Restore the committed files (`tritonops repo checksum --verify` "
                    "names the changed file when the version has a .sha256 manifest), or, if these files "
                    f'are the ones to serve, set models.{record.name}.digest to "{actual}" in the record',
                    **at,
                )
            )
    return problems


def check_repository(
    repository: str,
    committed: dict[str, ModelRecord] | dict[str, int],
    *,
    state_path: str | None = None,
    verify_digest: bool = False,
) -> list[Problem]:
    """Raise CommittedStateError unless every committed model is present, pinned to its committed
    version and (with `verify_digest`) holds the committed files; return the warnings.

    The digests are computed only when the cheap checks pass: a pod that cannot start anyway does
    not read gigabytes first.
    """
    problems = layout_problems(repository, committed)
    if verify_digest and not [p for p in problems if p.severity == ERROR]:
        records = {record.name: record for record in _as_records(committed)}
        problems += digest_problems(repository, records, state_path or repository)
    errors = [problem for problem in problems if problem.severity == ERROR]
    if errors:
        raise CommittedStateError(errors)
    return problems


# --- the digest of a version folder (the same algorithm as tritonops.repository.checksums) -------


def file_digests(version_dir: str) -> dict[str, str]:
    """{path relative to the version folder (with '/'): sha256 hex} for every file below it, sorted.

    Symlinked folders are followed, as Triton follows them when it loads the version, so the digest
    covers what Triton reads. A link to a folder the walk is already inside (same real path) is a
    loop and is not entered again; anything else that is not a folder is hashed as a file (a broken
    link fails to open, so it is reported rather than skipped).
    """
    return dict(sorted((relative, _file_digest(path)) for relative, path in _version_files(version_dir)))


def _version_files(version_dir: str) -> list[tuple[str, str]]:
    """(path relative to the version folder with '/', path) of every file, through symlinked folders."""
    found = []
    pending = [(version_dir, "", (os.path.realpath(version_dir),))]
    while pending:
        directory, prefix, inside = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if not entry.is_dir():  # is_dir() follows symlinks, as Triton does
                    found.append((prefix + entry.name, entry.path))
                    continue
                real = os.path.realpath(entry.path)
                if real not in inside:
                    pending.append((entry.path, f"{prefix}{entry.name}/", (*inside, real)))
    return found


def manifest_text(digests: dict[str, str]) -> str:
    return "".join(f"{digest}  {name}\n" for name, digest in digests.items())


def version_digest(version_dir: str) -> str:
    """One digest for a whole version: sha256 of its manifest (what the record holds)."""
    return "sha256:" + hashlib.sha256(manifest_text(file_digests(version_dir)).encode()).hexdigest()


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        chunk = handle.read(CHUNK)
        while chunk:
            digest.update(chunk)
            chunk = handle.read(CHUNK)
    return digest.hexdigest()


# --- the pod's local copy of the last good record -------------------------------------------------


def write_copy(path: str, data: bytes | str) -> bool:
    """Write the pod's local copy of the record atomically (temp file + rename); False when it
    already held exactly `data`. Readers see the old copy or the new one, never a partial file."""
    content = data.encode() if isinstance(data, str) else data
    try:
        with open(path, "rb") as handle:
            if handle.read() == content:
                return False
    except OSError:
        pass
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return True
