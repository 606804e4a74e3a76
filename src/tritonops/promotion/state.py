"""The committed state (`<repository>/current.json`) as typed records, and the commit that writes it.

There is one parser: the chart's standard-library `committed_state.py` (which the launcher, the
readiness check and the per-pod agent run), loaded through tritonops.repository.committed_state.
This module turns its records into frozen dataclasses and adds what only the promotion tool does:
the three-write commit protocol, its `finalize`, and the history.

The commit protocol (the caller holds the repository's lock, promotion/lock.py):
1. current.json gains `models.M.pending`: the new record, with the configDigest of the config about
   to be written;
2. config.pbtxt is replaced with the new config (its pin included): this rename is the commit
   point;
3. current.json: `models.M` becomes the new record, `previous` the old one, `pending` is dropped
   and one history entry is appended.
Each write is atomic and durable (promotion/atomic.py). A crash before write 2 leaves the old
state in force, after it the new one (committed_state.effective_record); `finalize` completes or
drops a pending commit and says which.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import logging
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format

from tritonops import errors
from tritonops.promotion import atomic
from tritonops.repository import committed_state
from tritonops.triton import client as triton_client

log = logging.getLogger(__name__)

STATE_FILE = committed_state.DEFAULT_FILE
CONFIG_FILE = "config.pbtxt"
HISTORY_LIMIT = 200
OUTCOMES = ("committed", "rolled-back", "failed", "noop")
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now() -> str:
    """The current UTC time as the record writes it (`2026-11-26T00:00:00Z`)."""
    return datetime.now(UTC).strftime(TIMESTAMP_FORMAT)


def who() -> str:
    """Who and where: `user@host pid N`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (containers)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


@dataclass(frozen=True)
class Record:
    """One model's committed record (see the chart's committed_state.py for each field)."""

    model: str
    version: int
    digest: str | None = None
    config_digest: str | None = None
    config: Mapping[str, Any] | None = None
    retained: tuple[int, ...] = ()
    source: str | None = None
    resolved_source: str | None = None
    committed_at: str | None = None
    committed_by: str | None = None
    previous: Record | None = None
    pending: Record | None = None
    started_at: str | None = None

    @property
    def pin(self) -> list[int]:
        """The versions config.pbtxt pins for this record: `version` and the retained ones."""
        return sorted({self.version, *self.retained})

    def bare(self) -> Record:
        """This record without `previous`, `pending` and `started_at` (as `previous` holds it)."""
        return dataclasses.replace(self, previous=None, pending=None, started_at=None)

    def to_json(self) -> dict[str, Any]:
        """The record as current.json holds it (the chart script's own serialisation)."""
        return dict(committed_state.script().to_json(self._to_script()))

    def _to_script(self) -> Any:
        return committed_state.script().ModelRecord(
            self.model,
            self.version,
            digest=self.digest,
            config_digest=self.config_digest,
            config=dict(self.config) if self.config is not None else None,
            retained=tuple(self.retained),
            source=self.source,
            resolved_source=self.resolved_source,
            committed_at=self.committed_at,
            committed_by=self.committed_by,
            previous=self.previous._to_script() if self.previous else None,
            pending=self.pending._to_script() if self.pending else None,
            started_at=self.started_at,
        )

    @classmethod
    def from_script(cls, record: Any) -> Record:
        """A record from the chart script's ModelRecord."""
        return cls(
            model=record.name,
            version=record.version,
            digest=record.digest,
            config_digest=record.config_digest,
            config=record.config,
            retained=tuple(record.retained),
            source=record.source,
            resolved_source=record.resolved_source,
            committed_at=record.committed_at,
            committed_by=record.committed_by,
            previous=cls.from_script(record.previous) if record.previous is not None else None,
            pending=cls.from_script(record.pending) if record.pending is not None else None,
            started_at=record.started_at,
        )


@dataclass(frozen=True)
class HistoryEntry:
    """One attempt: committed, rolled back, failed (at `step`, because of `reason`) or a no-op."""

    model: str
    version: int | None
    outcome: str
    previous_version: int | None = None
    source: str | None = None
    resolved_source: str | None = None
    digest: str | None = None
    step: str | None = None
    reason: str | None = None
    at: str = field(default_factory=now)
    by: str = field(default_factory=who)
    # "config" for a change of the committed version's config (`promote --config`, or its
    # rollback), with the digests of the config before and after.
    change: str | None = None
    config_digest: str | None = None
    previous_config_digest: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r} is not one of {', '.join(OUTCOMES)}")

    def to_json(self) -> dict[str, Any]:
        document = {
            "model": self.model,
            "version": self.version,
            "previousVersion": self.previous_version,
            "source": self.source,
            "resolvedSource": self.resolved_source,
            "digest": self.digest,
            "at": self.at,
            "by": self.by,
            "outcome": self.outcome,
            "step": self.step,
            "reason": self.reason,
            "change": self.change,
            "configDigest": self.config_digest,
            "previousConfigDigest": self.previous_config_digest,
        }
        return {key: value for key, value in document.items() if value is not None}

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> HistoryEntry:
        return cls(
            model=entry["model"],
            version=entry.get("version"),
            outcome=entry["outcome"],
            previous_version=entry.get("previousVersion"),
            source=entry.get("source"),
            resolved_source=entry.get("resolvedSource"),
            digest=entry.get("digest"),
            step=entry.get("step"),
            reason=entry.get("reason"),
            at=entry.get("at") or "",
            by=entry.get("by") or "",
            change=entry.get("change"),
            config_digest=entry.get("configDigest"),
            previous_config_digest=entry.get("previousConfigDigest"),
        )


@dataclass(frozen=True)
class CommittedState:
    """What current.json says: the records (as written, not yet effective) and the history."""

    path: Path
    records: Mapping[str, Record]
    history: tuple[HistoryEntry, ...] = ()
    exists: bool = True

    def record(self, model: str) -> Record | None:
        return self.records.get(model)


def state_path(repository: Path) -> Path:
    return Path(repository) / STATE_FILE


def read(repository: Path) -> CommittedState:
    """The committed state of `repository`; an absent current.json means nothing is committed.

    Raises InputError naming the file and every malformed field (nothing is changed).
    """
    state, _ = _read_both(Path(repository))
    return state


def effective(repository: Path, state: CommittedState | None = None) -> dict[str, Record]:
    """{model: the record in force}: a pending commit whose config write landed counts as done."""
    state = state or read(repository)
    script = committed_state.script()
    records = {name: record._to_script() for name, record in state.records.items()}
    return {
        name: Record.from_script(record)
        for name, record in script.effective_records(str(repository), records).items()
    }


# --- config.pbtxt: the pin and the JSON form -----------------------------------------------------

# A string literal (either quote, with escapes) or a comment, as protobuf's text format reads them.
_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|#[^\n]*')
_OPEN, _CLOSE = "{<", "}>"


def config_with_pin(config_text: str, versions: Sequence[int], *, where: str = CONFIG_FILE) -> str:
    """`config_text` with its top-level version_policy replaced by (or, if it has none, followed by)
    `version_policy { specific { versions: [ ... ] } }`; every other byte, comments included, kept.

    The result is checked with Triton's ModelConfig protobuf (the same config apart from the pin,
    which pins exactly `versions`) and with the launcher's pin reader; InputError names `where`
    when the config cannot be parsed or rewritten safely.
    """
    pin = sorted(set(versions))
    if not pin or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in pin):
        raise errors.InputError(f"{where}: cannot pin {list(versions)}: give one or more positive versions")
    block = f"version_policy {{ specific {{ versions: [ {', '.join(str(v) for v in pin)} ] }} }}"
    span = _version_policy_span(config_text, where)
    if span is None:
        separator = "" if not config_text or config_text.endswith("\n") else "\n"
        result = f"{config_text}{separator}{block}\n"
    else:
        result = config_text[: span[0]] + block + config_text[span[1] :]
    _check_rewrite(config_text, result, pin, where)
    return result


def _version_policy_span(text: str, where: str) -> tuple[int, int] | None:
    """(start, end) of the top-level `version_policy ... { ... }` field, or None."""
    masked = _STRING_OR_COMMENT.sub(lambda match: " " * len(match.group(0)), text)
    found = []
    for match in re.finditer(r"\bversion_policy\b", masked):
        depth = sum(masked.count(c, 0, match.start()) for c in _OPEN) - sum(
            masked.count(c, 0, match.start()) for c in _CLOSE
        )
        if depth == 0:
            found.append(match)
    if not found:
        return None
    if len(found) > 1:
        raise errors.InputError(f"{where}: version_policy is set {len(found)} times; keep one")
    opening = re.compile(r"\s*:?\s*([{<])").match(masked, found[0].end())
    if opening is None:
        raise errors.InputError(
            f"{where}: cannot read the version_policy field; write it as "
            "`version_policy { specific { versions: [ N ] } }`"
        )
    depth = 0
    for index in range(opening.start(1), len(masked)):
        if masked[index] in _OPEN:
            depth += 1
        elif masked[index] in _CLOSE:
            depth -= 1
            if depth == 0:
                return found[0].start(), index + 1
    raise errors.InputError(f"{where}: the version_policy block is not closed")


def _check_rewrite(before_text: str, after_text: str, pin: list[int], where: str) -> None:
    """The rewrite changed the pin and nothing else, for Triton and for the launcher alike."""
    before = parse_config(before_text, where=where)
    after = parse_config(after_text, where=where)
    triton_pin = sorted(set(after.version_policy.specific.versions))
    before.ClearField("version_policy")
    after.ClearField("version_policy")
    launcher_pin = committed_state.script().pinned_versions(after_text)
    if triton_pin != pin or launcher_pin != pin or before != after:
        raise errors.InputError(
            f"{where}: rewriting the version_policy to pin {pin} would change more than the pin "
            f"(Triton reads {triton_pin}, the launcher {launcher_pin}); write the field as "
            "`version_policy { specific { versions: [ N ] } }` on its own"
        )


def parse_config(config_text: str, *, where: str = CONFIG_FILE) -> triton_client.ModelConfig:
    """The config as Triton's ModelConfig protobuf reads it; InputError naming `where` if invalid."""
    config = triton_client.ModelConfig()
    try:
        text_format.Parse(config_text, config)
    except text_format.ParseError as error:
        raise errors.InputError(f"{where}: invalid config: {error}") from None
    return config


def config_json(config_text: str, *, where: str = CONFIG_FILE) -> dict[str, Any]:
    """The config as protobuf JSON with proto field names: what a load sends as its override."""
    message = parse_config(config_text, where=where)
    return dict(json_format.MessageToDict(message, preserving_proto_field_name=True))


def served_config_differences(committed: Mapping[str, Any], served: Any) -> list[str]:
    """The fields the committed `config` (protobuf JSON) sets that a server's ModelConfig
    (`served`, the protobuf message it reports) does not hold with the same value: the agent's
    comparison (the chart's committed_state.config_differences); [] when it serves that config."""
    document = dict(json_format.MessageToDict(served, preserving_proto_field_name=True))
    return list(committed_state.script().config_differences(dict(committed), document))


def config_text_from_json(config: Mapping[str, Any]) -> str:
    """A record's `config` (protobuf JSON) as config.pbtxt text: the same config for Triton, without
    the comments and layout of the text it was committed from."""
    return str(text_format.MessageToString(_from_json(config)))


def same_config_apart_from_pin(first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    """Whether two configs (protobuf JSON) differ in nothing but their version_policy."""
    messages = [_from_json(config) for config in (first, second)]
    for message in messages:
        message.ClearField("version_policy")
    return bool(messages[0] == messages[1])


def _from_json(config: Mapping[str, Any]) -> triton_client.ModelConfig:
    message = triton_client.ModelConfig()
    try:
        json_format.ParseDict(dict(config), message)
    except json_format.ParseError as error:
        raise errors.InputError(
            f"{STATE_FILE}: a record's config is not a model config Triton reads: {error}"
        ) from None
    return message


def config_digest(config_text: str | bytes) -> str:
    """`configDigest` of a config: sha256 of its bytes (UTF-8 for text)."""
    data = config_text.encode("utf-8") if isinstance(config_text, str) else config_text
    return str(committed_state.script().config_digest(data))


# --- writing: commit, finalize, history ----------------------------------------------------------


def commit(
    repository: Path,
    model: str,
    new_record: Record,
    config_text: str,
    history_entry: HistoryEntry | None = None,
) -> Record:
    """Commit `new_record` for `model` with `config_text` as its config.pbtxt; return the record
    written. The caller holds the repository's lock.

    `new_record` gives the version, digest, retained versions and source; this fills in
    configDigest, config (JSON), committedAt/By and previous (the record it replaces). The config
    must pin exactly the record's versions (build it with `config_with_pin`). `history_entry`
    defaults to an entry with outcome `committed`. A pending commit left by a crash is finalized
    first. The first commit of a model has no record to hang `pending` on: its config write and
    its record are the only writes; a failed record write puts the old config back, but a crash
    (SIGKILL, power loss) between the two leaves the new pin without a record.
    """
    repository = Path(repository)
    for message in finalize(repository):
        log.warning("%s", message)
    config_path = repository / model / CONFIG_FILE
    if not config_path.parent.is_dir():
        raise errors.InputError(f"{config_path.parent}: no such model folder in {repository}")
    pinned = committed_state.script().pinned_versions(config_text)
    if pinned != new_record.pin:
        raise errors.InputError(
            f"{config_path}: the config to commit pins {pinned or 'nothing'} but the record commits "
            f"{new_record.pin}; build it with config_with_pin"
        )
    state, document = _read_both(repository)
    old = state.record(model)
    stamp = now()
    final = dataclasses.replace(
        new_record.bare(),
        model=model,
        config_digest=config_digest(config_text),
        config=config_json(config_text, where=str(config_path)),
        committed_at=stamp,
        committed_by=who(),
        previous=old.bare() if old is not None else None,
    )
    models = document["models"]
    if old is not None:  # write 1: the pending record
        pending = dataclasses.replace(final, previous=None, started_at=stamp)
        models[model] = {**models[model], "pending": pending.to_json()}
        _write_document(state.path, document)
    first_config = config_path.read_bytes() if old is None else None
    atomic.write_text(config_path, config_text)  # write 2: the commit point
    models[model] = final.to_json()  # write 3: the record, and the history
    entry = history_entry or HistoryEntry(
        model,
        final.version,
        "committed",
        previous_version=old.version if old is not None else None,
        source=final.source,
        resolved_source=final.resolved_source,
        digest=final.digest,
    )
    _append(document, entry)
    try:
        _write_document(state.path, document)
    except BaseException:
        if first_config is not None:
            # A first commit has no pending record to say which config is in force: put the old
            # config back, so that the model stays uncommitted rather than pinned without a record.
            with contextlib.suppress(OSError):
                atomic.write_bytes(config_path, first_config)
        raise
    return final


def finalize(repository: Path) -> list[str]:
    """Complete every commit cut short after its commit point and drop every one cut short before
    it, each with a history entry; one message per model acted on (none when nothing was pending).
    The caller holds the repository's lock."""
    repository = Path(repository)
    state, document = _read_both(repository)
    script = committed_state.script()
    messages = []
    for name, record in sorted(state.records.items()):
        pending = record.pending
        if pending is None:
            continue
        config_bytes = script.read_config_bytes(str(repository), name)
        if config_bytes is None:
            messages.append(
                f"{name}: a commit of version {pending.version} is pending but "
                f"{repository / name / CONFIG_FILE} cannot be read; left as it is"
            )
            continue
        written = record._to_script()
        in_force = script.effective_record(written, config_bytes)
        entry: HistoryEntry
        if in_force is not written:  # the config write landed: the pending record is in force
            final = dataclasses.replace(Record.from_script(in_force), started_at=None)
            document["models"][name] = final.to_json()
            entry = HistoryEntry(
                name,
                final.version,
                "committed",
                previous_version=record.version,
                source=final.source,
                resolved_source=final.resolved_source,
                digest=final.digest,
                step="commit",
                reason="the commit was interrupted after its config write (the commit point); "
                "finalize completed the record",
                **_config_change(record, pending),
            )
            messages.append(
                f"{name}: completed the interrupted commit of version {final.version} "
                "(its config write had landed)"
            )
        else:
            raw = dict(document["models"][name])
            raw.pop("pending", None)
            document["models"][name] = raw
            entry = HistoryEntry(
                name,
                pending.version,
                "failed",
                previous_version=record.version,
                source=pending.source,
                resolved_source=pending.resolved_source,
                digest=pending.digest,
                step="commit",
                reason=f"interrupted before its config write (the commit point); version "
                f"{record.version} stays committed",
                **_config_change(record, pending),
            )
            messages.append(
                f"{name}: dropped the commit of version {pending.version} that was interrupted before "
                f"its config write; version {record.version} stays committed"
            )
        _append(document, entry)
    if messages:
        _write_document(state.path, document)
    return messages


def _config_change(old: Record, new: Record) -> dict[str, Any]:
    """The history fields of a commit that changes the config beyond its pin (as the chain writes
    them for `promote --config` and its rollback), {} for any other commit. A record without
    `config` (written by hand) is compared by version: only a config change keeps the version."""
    if old.config is not None and new.config is not None:
        changed = not same_config_apart_from_pin(old.config, new.config)
    else:
        changed = old.version == new.version and old.config_digest != new.config_digest
    if not changed:
        return {}
    return {
        "change": "config",
        "config_digest": new.config_digest,
        "previous_config_digest": old.config_digest,
    }


def append_history(repository: Path, entry: HistoryEntry) -> None:
    """Record an attempt that committed nothing (failed, noop). The caller holds the lock."""
    state, document = _read_both(Path(repository))
    _append(document, entry)
    _write_document(state.path, document)


def _append(document: dict[str, Any], entry: HistoryEntry) -> None:
    history = [*document.get("history", []), entry.to_json()]
    document["history"] = history[-HISTORY_LIMIT:]


def _read_both(repository: Path) -> tuple[CommittedState, dict[str, Any]]:
    """The parsed state and the raw document (to rewrite with unknown keys kept)."""
    path = state_path(repository)
    script = committed_state.script()
    try:
        data = script.read_bytes(str(path))
    except OSError as error:
        raise errors.InputError(f"{path}: cannot read: {error.strerror or error}") from None
    if data is None:
        empty = {"apiVersion": script.API_VERSION, "kind": script.KIND, "models": {}}
        return CommittedState(path, {}, (), exists=False), empty
    records, history, problems = script.parse_document(data, str(path))
    if problems:
        listed = "; ".join(
            f"{problem.message}" + (f" [{problem.field}]" if problem.field else "") for problem in problems
        )
        raise errors.InputError(
            f"{path}: malformed committed state: {listed}. Nothing was changed: repair the file "
            "(its history and `previous` records say what was committed)"
        )
    state = CommittedState(
        path,
        {name: Record.from_script(record) for name, record in records.items()},
        tuple(HistoryEntry.from_json(entry) for entry in history),
    )
    return state, dict(json.loads(data))


def _write_document(path: Path, document: Mapping[str, Any]) -> None:
    atomic.write_text(path, json.dumps(document, indent=2) + "\n")
