"""Read and check the committed model state of a Triton model repository.

`tritonops promote` / `tritonops rollback` record what each model serves in
`<repository>/current.json` (a hand-written record with only `version` and `digest` works too):

    {"apiVersion": "tritonops/v1", "kind": "CommittedState",
     "models": {"resnet50": {
        "version": 3, "digest": "sha256:...",          # required / optional
        "configDigest": "sha256:...",                  # sha256 of config.pbtxt's bytes as committed
        "config": {...},                               # the committed ModelConfig (protobuf JSON)
        "retained": [2],                               # versions pinned beside `version`
        "source": "models:/resnet50/3", "resolvedSource": "...",
        "committedAt": "2026-11-25T22:00:00Z", "committedBy": "user@host pid 123",
        "previous": {...},                             # the record rollback returns to
        "pending": {..., "startedAt": "..."}}},        # only while a commit is under way
     "history": [{"model": ..., "version": ..., "outcome": "committed", ...}]}

and pins the same versions in the model's `config.pbtxt` with
`version_policy { specific { versions: [3] } }`. `digest` is the sha256 of the version's checksum
manifest (`<sha256>  <path>` per file, sorted; the `tritonops repo checksum` format), so it names
the exact files that were committed.

A commit writes `pending` into current.json first, then config.pbtxt (the commit point), then the
final record. So the record in force, the *effective record* (`effective_record`), is `pending`
when config.pbtxt already hashes to `pending.configDigest`, else the record's own fields: a crash
between the writes leaves the old state or the new one, never a pod that refuses to start.

This module runs inside the Triton image (standard library only) for the launcher, the readiness
check and the per-pod agent; `tritonops repo validate` and the promotion tool load this same file,
so every tool reads the record with one parser. Keep it importable by Python 3.8 and free of
third-party imports.
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
    """What the record promises for one model: this version (and `retained` beside it), with these
    files when `digest` is set and this config.pbtxt when `config_digest` is set.

    `previous` and `pending` are records themselves (without a `previous` or `pending` of their
    own); `started_at` is set on a pending record only.
    """

    name: str
    version: int
    digest: str | None = None
    config_digest: str | None = None
    config: dict | None = None  # the committed ModelConfig, protobuf JSON with proto field names
    retained: tuple = ()  # sorted positive ints, never `version`
    source: str | None = None
    resolved_source: str | None = None
    committed_at: str | None = None
    committed_by: str | None = None
    previous: ModelRecord | None = None
    pending: ModelRecord | None = None
    started_at: str | None = None


# The record's JSON keys and the ModelRecord fields they fill (the optional string fields).
_TEXT_FIELDS = (
    ("source", "source"),
    ("resolvedSource", "resolved_source"),
    ("committedAt", "committed_at"),
    ("committedBy", "committed_by"),
)
OUTCOMES = ("committed", "rolled-back", "failed", "noop")
# History entry keys: (key, what it holds). `model` and `outcome` are required.
_HISTORY_INTS = ("version", "previousVersion")
_HISTORY_TEXTS = ("source", "resolvedSource", "digest", "at", "by", "step", "reason")


def expected_pin(record: ModelRecord) -> list[int]:
    """The versions config.pbtxt must pin for this record: its version and the retained ones."""
    return sorted({record.version, *record.retained})


def config_digest(config_bytes: bytes) -> str:
    """What `configDigest` holds for a config.pbtxt: sha256 of its bytes."""
    return "sha256:" + hashlib.sha256(config_bytes).hexdigest()


def effective_record(record: ModelRecord, config_bytes: bytes | None) -> ModelRecord:
    """The record in force: `pending` once config.pbtxt (`config_bytes`) hashes to its configDigest
    (the commit's second write, its commit point, is done), else the record itself.

    The pending record comes back with the record it replaces as its `previous`, as the commit's
    last write will leave it; an unreadable config (None) means the commit point cannot be shown.
    """
    pending = record.pending
    if pending is None or config_bytes is None or config_digest(config_bytes) != pending.config_digest:
        return record
    return pending._replace(previous=record._replace(previous=None, pending=None))


def read_config_bytes(repository: str, name: str) -> bytes | None:
    """A model's config.pbtxt as bytes, or None when it cannot be read."""
    try:
        with open(os.path.join(repository, name, "config.pbtxt"), "rb") as handle:
            return handle.read()
    except OSError:
        return None


def effective_records(repository: str, records: dict[str, ModelRecord]) -> dict[str, ModelRecord]:
    """{model: effective record}, reading each committed model's config.pbtxt (only where a
    commit is pending: the other records are in force whatever the config says)."""
    return {
        name: effective_record(record, read_config_bytes(repository, name) if record.pending else None)
        for name, record in records.items()
    }


# --- the committed config against the one a server runs -----------------------------------------

# Not compared: the pin, which the served versions already tell (and a load within the agent's
# narrowing grace widens on purpose).
UNCOMPARED_CONFIG_FIELDS = frozenset({"version_policy"})
# What Triton 2.51 replaces when it loads a config (seen on the server, tests/runtime/test_agent.py):
# an instance group of kind KIND_AUTO serves as the kind Triton picked. Everything else a record
# sets comes back as set; what it leaves out Triton fills in (names, backend, defaults).
_AUTO_KINDS = frozenset({"KIND_AUTO"})


def config_differences(committed: dict, served: dict) -> list[str]:
    """The fields (dotted paths, `instance_group[0].count`) that the committed config sets and the
    served one does not hold with the same value; [] when it serves the committed config.

    `committed` is the record's protobuf JSON, `served` what Triton reports (its
    /v2/models/NAME/config, or protobuf JSON too): every field the record sets must be there with
    the same value (recursively; lists of the same length, element by element; int64 fields
    written as strings equal the numbers), and fields the record leaves out are Triton's to fill
    in. `version_policy` is not compared. A field the record cannot write (proto3 JSON leaves out
    false, 0 and empty values) cannot be compared either.
    """
    found: list[str] = []
    for key, value in sorted(committed.items()):
        if key in UNCOMPARED_CONFIG_FIELDS:
            continue
        if key not in served:
            found.append(key)
        else:
            _differences(value, served[key], key, key, found)
    return found


def differing_fields(differences: list[str]) -> list[str]:
    """The top-level fields of `config_differences`' paths: `max_batch_size`, `instance_group`."""
    return sorted({re.split(r"[.\[]", path, maxsplit=1)[0] for path in differences})


def _differences(committed: object, served: object, key: str, path: str, found: list[str]) -> None:
    if isinstance(committed, dict):
        if not isinstance(served, dict):
            found.append(path)
            return
        for inner, value in sorted(committed.items()):
            if inner not in served:
                found.append(f"{path}.{inner}")
            else:
                _differences(value, served[inner], inner, f"{path}.{inner}", found)
    elif isinstance(committed, list):
        if not isinstance(served, list) or len(served) != len(committed):
            found.append(path)
            return
        for position, value in enumerate(committed):  # same length: no zip(strict=) in Python 3.8
            _differences(value, served[position], key, f"{path}[{position}]", found)
    elif not (key == "kind" and committed in _AUTO_KINDS) and not _same_scalar(committed, served):
        found.append(path)


def _same_scalar(committed: object, served: object) -> bool:
    if isinstance(committed, bool) or isinstance(served, bool):
        return committed is served
    number, seen = _as_number(committed), _as_number(served)
    if number is not None and seen is not None:
        return number == seen
    return committed == served


def _as_number(value: object) -> float | None:
    """A JSON number, or a string holding one (protobuf JSON writes int64 and uint64 as strings)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value  # an int stays exact: int64 values beyond 2**53 compare right
    if isinstance(value, str):
        for parse in (int, float):
            try:
                return parse(value)
            except ValueError:
                pass
    return None


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
    records, _, problems = parse_document(data, path)
    return records, problems


def parse_document(data: bytes | str, path: str) -> tuple[dict[str, ModelRecord], list[dict], list[Problem]]:
    """(well-formed records, well-formed history entries, a problem for everything malformed).

    A record with any malformed field is left out whole: half a record could start a pod on a
    version nobody committed.
    """

    def problem(message: str, field: str | None = None, model: str | None = None) -> Problem:
        return Problem(ERROR, path, message, field=field, model=model)

    try:
        document = json.loads(data)
    except ValueError as error:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not text
        message = f"cannot read the committed state: not JSON ({error}); restore the file"
        return {}, [], [Problem(ERROR, path, message, line=getattr(error, "lineno", None))]
    if not isinstance(document, dict) or document.get("kind") != KIND:
        return {}, [], [problem(f"not a committed-state record (kind must be {KIND!r})", "kind")]
    if document.get("apiVersion") != API_VERSION:
        return (
            {},
            [],
            [problem(f"apiVersion {document.get('apiVersion')!r} is not {API_VERSION!r}", "apiVersion")],
        )
    models = document.get("models")
    if not isinstance(models, dict):
        return {}, [], [problem("'models' must be a mapping of model name to record", "models")]
    records: dict[str, ModelRecord] = {}
    problems: list[Problem] = []
    for name, raw in sorted(models.items()):
        found: list[Problem] = []
        record = _record(raw, name, f"models.{name}", found, path, nested=None)
        problems += found
        if record is not None and not found:
            records[name] = record
    history, history_problems = _history(document.get("history"), path)
    return records, history, problems + history_problems


def _record(
    raw: object, name: str, where: str, problems: list[Problem], path: str, nested: str | None
) -> ModelRecord | None:
    """One record at `where` (models.M, or its `previous` / `pending` when `nested` says so)."""

    def add(message: str, field: str) -> None:
        problems.append(Problem(ERROR, path, message, field=field, model=name))

    if not isinstance(raw, dict):
        add(f"{where} must be a mapping with 'version' and 'digest'", where)
        return None
    version = raw.get("version")
    if not _positive_int(version):
        add(f"{where}.version must be a positive integer", f"{where}.version")
        return None
    fields: dict[str, object] = {}
    for key, attribute in (("digest", "digest"), ("configDigest", "config_digest")):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not DIGEST_PATTERN.match(value)):
            add(
                f"{where}.{key} {value!r} is not 'sha256:' followed by 64 lowercase hex digits",
                f"{where}.{key}",
            )
        fields[attribute] = value
    for key, attribute in _TEXT_FIELDS:
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            add(f"{where}.{key} must be a string", f"{where}.{key}")
        fields[attribute] = value
    retained = raw.get("retained", [])
    if (
        not isinstance(retained, list)
        or not all(_positive_int(number) for number in retained)
        or len(set(retained)) != len(retained)
    ):
        add(f"{where}.retained must be a list of distinct positive integers", f"{where}.retained")
        retained = []
    elif version in retained:
        add(
            f"{where}.retained lists version {version}, which is the committed version itself; "
            "list only the versions kept beside it",
            f"{where}.retained",
        )
    record = ModelRecord(name, version, retained=tuple(sorted(retained)), **fields)
    config = raw.get("config")
    if config is not None:
        pinned = _config_pin(config)
        if not isinstance(config, dict):
            add(f"{where}.config must be a mapping (the model config as protobuf JSON)", f"{where}.config")
        elif pinned != expected_pin(record):
            add(
                f"{where}.config pins {pinned or 'nothing'} in its version_policy but the record "
                f"commits {expected_pin(record)}: every load would send the wrong pin",
                f"{where}.config.version_policy",
            )
        record = record._replace(config=config)
    if nested == "pending":
        started = raw.get("startedAt")
        if started is not None and not isinstance(started, str):
            add(f"{where}.startedAt must be a string", f"{where}.startedAt")
        if record.config_digest is None:
            add(
                f"{where}.configDigest is missing: a pending commit names the config it writes",
                f"{where}.configDigest",
            )
        record = record._replace(started_at=started)
    for key in ("previous", "pending"):
        if key not in raw:
            continue
        if nested is not None:
            add(f"{where} must not hold its own '{key}'", f"{where}.{key}")
            continue
        inner = _record(raw[key], name, f"{where}.{key}", problems, path, nested=key)
        record = record._replace(**{key: inner})
    return record


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _config_pin(config: object) -> list[int] | None:
    """The specific versions a protobuf-JSON ModelConfig pins (int64 comes as strings), or None."""
    try:
        versions = config["version_policy"]["specific"]["versions"]
        if not isinstance(versions, list):
            return None
        return sorted({int(number) for number in versions})
    except (KeyError, TypeError, ValueError):
        return None


def _history(raw: object, path: str) -> tuple[list[dict], list[Problem]]:
    """The well-formed history entries (newest last) and a problem per malformed field."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], [Problem(ERROR, path, "'history' must be a list of entries", field="history")]
    entries, problems = [], []
    for index, entry in enumerate(raw):
        where = f"history[{index}]"
        found = []
        if not isinstance(entry, dict):
            found.append((f"{where} must be a mapping", where))
        else:
            if not isinstance(entry.get("model"), str) or not entry.get("model"):
                found.append((f"{where}.model must be a model name", f"{where}.model"))
            if entry.get("outcome") not in OUTCOMES:
                found.append(
                    (
                        f"{where}.outcome {entry.get('outcome')!r} is not one of {', '.join(OUTCOMES)}",
                        f"{where}.outcome",
                    )
                )
            for key in _HISTORY_INTS:
                if entry.get(key) is not None and not _positive_int(entry[key]):
                    found.append((f"{where}.{key} must be a positive integer or null", f"{where}.{key}"))
            for key in _HISTORY_TEXTS:
                if entry.get(key) is not None and not isinstance(entry[key], str):
                    found.append((f"{where}.{key} must be a string or null", f"{where}.{key}"))
        problems += [Problem(ERROR, path, message, field=field) for message, field in found]
        if not found:
            entries.append(entry)
    return entries, problems


def read_records(path: str) -> dict[str, ModelRecord]:
    """{model: record}; an absent file means nothing is committed yet."""
    try:
        data = read_bytes(path)
    except OSError as error:
        message = f"cannot read the committed state: {error.strerror or error}"
        raise CommittedStateError([Problem(ERROR, path, message)]) from error
    return {} if data is None else parse(data, path)


def read(path: str) -> dict[str, int]:
    """{model: committed version in the record} (not the effective record: no config is read);
    an absent file means nothing is committed yet."""
    return {name: record.version for name, record in read_records(path).items()}


def to_json(record: ModelRecord) -> dict:
    """The record as current.json holds it (the inverse of the parse; empty fields left out)."""
    document: dict = {"version": record.version}
    optional = (
        ("digest", record.digest),
        ("configDigest", record.config_digest),
        ("config", record.config),
        ("retained", list(record.retained) or None),
        ("source", record.source),
        ("resolvedSource", record.resolved_source),
        ("committedAt", record.committed_at),
        ("committedBy", record.committed_by),
        ("startedAt", record.started_at),
    )
    document.update((key, value) for key, value in optional if value is not None)
    if record.previous is not None:
        document["previous"] = to_json(record.previous)
    if record.pending is not None:
        document["pending"] = to_json(record.pending)
    return document


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


def layout_problems(
    repository: str,
    committed: dict[str, ModelRecord] | dict[str, int],
    state_path: str | None = None,
) -> list[Problem]:
    """Every committed model's folder, version folders, pin and config digest, for its effective
    record (cheap: no model file is read)."""
    state_path = state_path or os.path.join(repository, DEFAULT_FILE)
    problems = []
    for raw in _as_records(committed):
        name = raw.name
        model_dir = os.path.join(repository, name)
        config_path = os.path.join(model_dir, "config.pbtxt")
        if not os.path.isdir(model_dir):
            problems.append(
                Problem(
                    ERROR,
                    model_dir,
                    f"committed model folder is missing (the record commits {name} version {raw.version}); "
                    f"restore the folder, or, if the model is retired, remove models.{name} from the "
                    f"committed-state record ({state_path})",
                    field=f"models.{name}",
                    model=name,
                    version=raw.version,
                )
            )
            continue
        try:
            with open(config_path, "rb") as handle:
                config_bytes: bytes | None = handle.read()
            config_error = None
        except OSError as error:
            config_bytes, config_error = None, error
        record = effective_record(raw, config_bytes)
        version, pin = record.version, expected_pin(record)
        at = {"model": name, "version": version}
        if raw.pending is not None:
            problems.append(_pending_problem(raw, record, state_path))
        problems += _missing_versions(repository, record, state_path)
        if config_bytes is None:
            problems.append(
                Problem(
                    ERROR,
                    config_path,
                    f"cannot read: {getattr(config_error, 'strerror', None) or config_error}; a committed "
                    f"model needs a config.pbtxt that pins version {version} "
                    f"(version_policy {{ specific {{ versions: {pin} }} }})",
                    field="version_policy",
                    **at,
                )
            )
            continue
        pinned = pinned_versions(config_bytes.decode("utf-8", errors="replace"))
        if pinned != pin:
            said = f"version {version}" + (
                f" with {list(record.retained)} retained" if record.retained else ""
            )
            problems.append(
                Problem(
                    ERROR,
                    config_path,
                    f"version_policy pins {pinned or 'nothing'} but the committed state says {said}; "
                    f"a restart would load the wrong version. Repair the pin in this file: "
                    f"version_policy {{ specific {{ versions: {pin} }} }}",
                    field="version_policy",
                    **at,
                )
            )
        problems += _config_digest_problems(record, config_bytes, config_path, state_path)
    return problems


def _pending_problem(raw: ModelRecord, effective: ModelRecord, state_path: str) -> Problem:
    """A commit that has not written its final record yet: in flight, or cut short by a crash."""
    pending = raw.pending
    assert pending is not None
    if effective is not raw:  # effective_record returns the record itself until the commit point
        where = f"its config write landed, so version {pending.version} is in force"
    else:
        where = f"its config write did not land, so version {raw.version} stays in force"
    return Problem(
        WARNING,
        state_path,
        f"a commit of {raw.name} version {pending.version} (started {pending.started_at or 'at an unknown time'}) "
        f"has not finished: {where}. `tritonops reconcile` (or the next promote or rollback of "
        f"{raw.name}) completes the record",
        field=f"models.{raw.name}.pending",
        model=raw.name,
        version=effective.version,
    )


def _missing_versions(repository: str, record: ModelRecord, state_path: str) -> list[Problem]:
    """The committed version folder and every retained one must be there."""
    problems = []
    name, version = record.name, record.version
    if not os.path.isdir(os.path.join(repository, name, str(version))):
        problems.append(
            Problem(
                ERROR,
                os.path.join(repository, name, str(version)),
                "committed version folder is missing; restore it, or commit a version that is there "
                f"(`tritonops rollback {name} --to VERSION --repository {repository}`)",
                field=f"models.{name}.version",
                model=name,
                version=version,
            )
        )
    for kept in record.retained:
        if not os.path.isdir(os.path.join(repository, name, str(kept))):
            problems.append(
                Problem(
                    ERROR,
                    os.path.join(repository, name, str(kept)),
                    f"retained version folder is missing (models.{name}.retained keeps version {kept} "
                    f"loaded beside {version}); restore it, or drop {kept} from models.{name}.retained "
                    f"in {state_path} and from the pin in config.pbtxt",
                    field=f"models.{name}.retained",
                    model=name,
                    version=kept,
                )
            )
    return problems


def _config_digest_problems(
    record: ModelRecord, config_bytes: bytes, config_path: str, state_path: str
) -> list[Problem]:
    """config.pbtxt must be the one committed: a missing configDigest (a hand-written record) is a
    warning, a different one an error (the pod would serve a config nobody committed)."""
    actual = config_digest(config_bytes)
    at = {"field": f"models.{record.name}.configDigest", "model": record.name, "version": record.version}
    if record.config_digest is None:
        return [
            Problem(
                WARNING,
                state_path,
                f"models.{record.name} has no configDigest, so a change to {config_path} after the "
                f'commit goes unnoticed. After checking the config, add "configDigest": "{actual}" '
                f"to models.{record.name}",
                **at,
            )
        ]
    if record.config_digest == actual:
        return []
    return [
        Problem(
            ERROR,
            config_path,
            f"model {record.name}: config.pbtxt hashes to {actual} but {state_path} records "
            f"configDigest {record.config_digest}, so it changed after the commit (or the record was "
            f"edited). Restore the committed config (models.{record.name}.config in the record holds "
            f"its settings), or, if this config is the one to serve, set models.{record.name}."
            f'configDigest to "{actual}" in the record and models.{record.name}.config to the same '
            "settings (as protobuf JSON: the agent and every restore send that config with each load)",
            **at,
        )
    ]


def digest_problems(repository: str, committed: dict[str, ModelRecord], state_path: str) -> list[Problem]:
    """Hash every committed version folder that exists and compare with the effective record's
    digest.

    Reads every file of every committed version once: seconds per GB from network storage.
    A record without a digest is a warning (the promotion tool always writes one; a hand-written
    record that lacks it starts, unverified, and says so).
    """
    problems = []
    records = {record.name: record for record in _as_records(committed)}
    for record in effective_records(repository, records).values():
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
    """Raise CommittedStateError unless every committed model is present, pinned to its effective
    record's versions, holds the committed config and (with `verify_digest`) the committed files;
    return the warnings.

    The digests are computed only when the cheap checks pass: a pod that cannot start anyway does
    not read gigabytes first.
    """
    problems = layout_problems(repository, committed, state_path)
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


# Written into a version folder by the server, not part of the artifact: the Python backend's stub
# compiles model.py into __pycache__ when the repository is writable (tritonops' checksums skip it too).
CACHE_FOLDERS = frozenset({"__pycache__"})


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
                if entry.name in CACHE_FOLDERS:
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
