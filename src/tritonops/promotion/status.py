"""`status`: per model, the committed record (version, pin, source, digest, time, who), a commit a
crash left pending, and what each replica serves and whether it is ready; drift is named, replica by
replica, never implied. Read-only: it takes no lock.

What status cannot know is said as such, never as drift: a committed record that cannot be read
(each replica's served versions are still listed), or served versions a replica's repository API
refused to tell (a wrong or missing key; whether the committed versions are ready is then read on
the open per-version ready endpoint)."""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonops import errors
from tritonops.promotion import fleet, lock, state
from tritonops.promotion.replicas import ApiKey, Replica, connect
from tritonops.repository import committed_state

# How triton/client.py words a RepositoryApiForbidden; fleet.served keeps only the message.
REFUSED = "repository API refused"
KEY_REFUSED = "served versions unknown: the repository API refused the key"
KEY_HINT = (
    "give the key with $TRITONOPS_API_KEY or --api-key-file FILE, and --api-header NAME when the "
    "header is not admin-key"
)
# Where the README says how to repair or write the record by hand.
RECIPE = (
    'README.md, section "Promoting and rolling back a model", paragraph "In an emergency without the tool"'
)


@dataclass(frozen=True)
class ReplicaView:
    """What one replica serves of one model, whether the committed pin is ready there, and how it
    drifts from the committed state (empty when it does not)."""

    replica: str
    versions: tuple[int, ...] | None  # None: not known (unreachable, or `reason` says why)
    ready: bool | None  # None: not known (nothing committed to judge by, or not answered)
    drift: str = ""
    # Why `versions` is unknown although the replica answers (its repository API refused the key).
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "serves": None if self.versions is None else list(self.versions),
            "ready": self.ready,
            "drift": self.drift or None,
            "reason": self.reason or None,
        }

    def describe(self) -> str:
        if self.reason:
            serves = "unknown"
        else:
            serves = "unreachable" if self.versions is None else (str(list(self.versions)) or "nothing")
        mark = {True: "ready", False: "NOT READY", None: ""}[self.ready]
        line = f"{self.replica:<12} serves {serves:<10} {mark}".rstrip()
        if self.reason:
            line += f"  {self.reason}"
        if self.drift:
            line += f"  drift: {self.drift}"
        return line


@dataclass(frozen=True)
class ModelStatus:
    model: str
    committed: dict[str, Any] | None  # version, pin, source, digest, committedAt, committedBy
    pending: dict[str, Any] | None  # a commit a crash cut short: version, startedAt, what finalize does
    replicas: tuple[ReplicaView, ...]

    @property
    def drift(self) -> list[str]:
        return [f"{view.replica}: {view.drift}" for view in self.replicas if view.drift]

    @property
    def unknown(self) -> list[str]:
        """The replicas whose served versions are unknown (not drift: nothing says they differ)."""
        return [view.replica for view in self.replicas if view.reason]

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "committed": self.committed,
            "pending": self.pending,
            "replicas": [view.as_dict() for view in self.replicas],
            "drift": self.drift,
        }


@dataclass(frozen=True)
class RecordError:
    """A committed record (current.json) that cannot be read: the file, each malformed field and
    what it must be, and what to do."""

    file: Path
    problems: tuple[dict[str, str | None], ...]  # {field, model, message}
    fix: str

    def as_dict(self) -> dict[str, Any]:
        return {"file": str(self.file), "problems": list(self.problems), "fix": self.fix}

    def describe(self) -> list[str]:
        lines = [f"  the committed record cannot be read: {self.file}"]
        for problem in self.problems:
            field, message = problem.get("field"), str(problem["message"])
            lines.append(f"      {message}" + (f" [{field}]" if field and field not in message else ""))
        lines.append(f"      {self.fix}")
        return lines


@dataclass(frozen=True)
class Status:
    repository: Path
    models: tuple[ModelStatus, ...]
    lock: dict[str, Any] | None  # the promotion lock when one is held: owner, stale, how to clear
    record_error: RecordError | None = None  # current.json could not be read
    # Why no replica was read (none given, or the local runtime is stopped); "" when they were.
    replicas_not_shown: str = ""

    @property
    def in_sync(self) -> bool:
        """No replica drifts from the committed state (see `ok` for everything status found)."""
        return not any(model.drift for model in self.models)

    @property
    def unknown(self) -> list[str]:
        """Replicas whose served versions could not be read although they answer (a refused key)."""
        return sorted({name for model in self.models for name in model.unknown})

    @property
    def ok(self) -> bool:
        """The record reads, no replica drifts, and every replica's served versions are known."""
        return self.record_error is None and self.in_sync and not self.unknown

    def as_dict(self) -> dict[str, Any]:
        return {
            "repository": str(self.repository),
            # null: not known (no replica read, the record unreadable, or served versions unknown)
            "in_sync": self._in_sync_known(),
            "lock": self.lock,
            "record_error": self.record_error.as_dict() if self.record_error else None,
            "replicas_not_shown": self.replicas_not_shown or None,
            "unknown": self.unknown,
            "hint": KEY_HINT if self.unknown else None,
            "models": [model.as_dict() for model in self.models],
        }

    def _in_sync_known(self) -> bool | None:
        if not self.in_sync:
            return False
        return None if self.replicas_not_shown or self.record_error or self.unknown else True

    def describe(self) -> str:
        lines = [f"models in {self.repository}:"]
        if self.lock:
            lines.append(f"  lock: {self.lock['description']}")
            if self.lock.get("stale"):
                lines.append(f"        stale: clear it with `{self.lock['clear']}`")
        if self.record_error:
            lines += self.record_error.describe()
        for model in self.models:
            committed = model.committed
            if self.record_error:
                lines.append(f"  {model.model}: committed version unknown (the record cannot be read)")
            elif committed is None:
                lines.append(f"  {model.model}: nothing committed")
            else:
                lines.append(
                    f"  {model.model}: version {committed['version']} committed"
                    + (f" (pin {committed['pin']})" if committed["pin"] != [committed["version"]] else "")
                    + f" at {committed.get('committedAt') or '?'} by {committed.get('committedBy') or '?'}"
                )
                source, resolved = committed.get("source"), committed.get("resolvedSource")
                if resolved and resolved != source:
                    source = f"{source} ({resolved})"
                lines.append(f"      source {source or '-'}  digest {committed.get('digest') or '-'}")
            if model.pending:
                lines.append(f"      pending: {model.pending['note']}")
            lines += [f"      {view.describe()}" for view in model.replicas]
        if not self.models:
            lines.append("  nothing committed")
        lines += self._verdict()
        return "\n".join(lines)

    def _verdict(self) -> list[str]:
        """The closing lines: what status found, each problem on its own line."""
        lines = []
        if self.record_error:
            lines.append(f"COMMITTED RECORD UNREADABLE: {self.record_error.file} (see above)")
        if self.replicas_not_shown:
            lines.append(self.replicas_not_shown)
        if not self.in_sync:
            lines.append("DRIFT: see the lines marked drift")
        if self.unknown:
            lines.append(
                f"served versions unknown on {', '.join(self.unknown)}: the repository API refused the "
                f"key; {KEY_HINT}"
            )
        if not lines:
            lines.append("in sync with the committed state")
        return lines


def status(
    repository: Path,
    replicas: Sequence[Replica],
    model: str | None = None,
    *,
    key: ApiKey | None = None,
    replicas_not_shown: str = "",
) -> Status:
    """The committed state of `repository` (or of one model) beside what every replica serves.

    `replicas_not_shown` says why `replicas` is empty (the closing line says it instead of "in
    sync"). A current.json that cannot be read is reported (`record_error`), not raised: what each
    replica serves of each model folder is still shown."""
    repository = Path(repository)
    key = key or ApiKey(None)
    try:
        written = state.read(repository)
    except errors.InputError as error:
        return _unreadable(repository, replicas, model, key, error, replicas_not_shown)
    records = state.effective(repository, written)
    _check_known(repository, model, records)
    names = sorted(records) if model is None else [model]
    served = fleet.served(replicas, key, names) if replicas else {name: [] for name in names}
    models = []
    for name in names:
        record = records.get(name)
        raw = written.record(name)
        views = tuple(_view(seen, record, replicas, name) for seen in served[name])
        models.append(ModelStatus(name, _committed(record), _pending(raw, record), views))
    return Status(repository, tuple(models), _lock(repository), replicas_not_shown=replicas_not_shown)


def _check_known(repository: Path, model: str | None, records: Mapping[str, state.Record]) -> None:
    if model is None or model in records or (repository / model / state.CONFIG_FILE).is_file():
        return
    known = sorted({*records, *_model_folders(repository)})
    raise errors.InputError(f"{model}: no such model in {repository} (models: {', '.join(known) or 'none'})")


def _model_folders(repository: Path) -> list[str]:
    return sorted(p.parent.name for p in repository.glob(f"*/{state.CONFIG_FILE}"))


def _unreadable(
    repository: Path,
    replicas: Sequence[Replica],
    model: str | None,
    key: ApiKey,
    error: errors.InputError,
    replicas_not_shown: str,
) -> Status:
    """current.json cannot be read: say so (file, fields, what to do), and what each replica serves
    of every model folder, so that an operator sees what runs while the record is repaired."""
    _check_known(repository, model, {})
    names = _model_folders(repository) if model is None else [model]
    served = fleet.served(replicas, key, names) if replicas else {name: [] for name in names}
    models = tuple(
        ModelStatus(
            name, None, None, tuple(_unjudged(_view(seen, None, replicas, name)) for seen in served[name])
        )
        for name in names
    )
    return Status(repository, models, _lock(repository), _record_error(repository, error), replicas_not_shown)


def _unjudged(view: ReplicaView) -> ReplicaView:
    """Without a readable record, what a replica serves cannot be called ready or not."""
    return dataclasses.replace(view, ready=None) if view.versions is not None else view


def _record_error(repository: Path, error: errors.InputError) -> RecordError:
    path = state.state_path(repository)
    fix = (
        "a pod that starts now refuses to start (its launcher reads this file). Repair it: its history "
        "and `previous` records say what was committed, and "
        f"`tritonops repo validate {shlex.quote(str(repository))}` checks the result; or write the "
        "record by hand "
        f"({RECIPE})"
    )
    script = committed_state.script()
    try:
        data = script.read_bytes(str(path))
    except OSError:
        data = None
    problems = script.parse_problems(data, str(path))[1] if data is not None else []
    listed = tuple({"field": p.field, "model": p.model, "message": p.message} for p in problems)
    if not listed:  # unreadable as a file: the error says why
        listed = ({"field": None, "model": None, "message": str(error).removeprefix(f"{path}: ")},)
    return RecordError(path, listed, fix)


def _committed(record: state.Record | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "version": record.version,
        "pin": record.pin,
        "retained": list(record.retained),
        "source": record.source,
        "resolvedSource": record.resolved_source,
        "digest": record.digest,
        "committedAt": record.committed_at,
        "committedBy": record.committed_by,
        "previous": record.previous.version if record.previous else None,
    }


def _pending(raw: state.Record | None, effective: state.Record | None) -> dict[str, Any] | None:
    if raw is None or raw.pending is None:
        return None
    pending = raw.pending
    landed = (
        effective is not None
        and effective.version == pending.version
        and effective.config_digest == pending.config_digest
    )
    note = (
        f"a commit of version {pending.version} started {pending.started_at} passed its commit "
        "point (config.pbtxt written): it is in force; the next promote, rollback or reconcile completes its record"
        if landed
        else f"a commit of version {pending.version} started {pending.started_at} stopped before its "
        f"commit point: version {raw.version} stays committed; the next promote, rollback or reconcile drops it"
    )
    return {"version": pending.version, "startedAt": pending.started_at, "inForce": landed, "note": note}


def _view(
    seen: fleet.Served, record: state.Record | None, replicas: Sequence[Replica], model: str
) -> ReplicaView:
    if seen.versions is None and REFUSED in seen.error:
        # The replica answers; only its served versions are hidden. Not drift.
        replica = next(r for r in replicas if r.name == seen.replica)
        ready = _pin_ready(replica, model, record.pin) if record is not None else None
        said = {True: "ready", False: "not all ready", None: ""}[ready]
        reason = KEY_REFUSED + (
            f" (version(s) {record.pin} {said} on the open /v2/models/{model}/versions/N/ready)"
            if record is not None and said
            else ""
        )
        return ReplicaView(seen.replica, None, ready, reason=reason)
    if seen.versions is None:
        return ReplicaView(seen.replica, None, False, f"unreachable ({seen.error})")
    versions = tuple(seen.versions)
    if record is None:
        return ReplicaView(seen.replica, versions, bool(versions))
    pin = record.pin
    ready = set(pin) <= set(versions)
    problems = []
    if record.version not in versions:
        problems.append(f"does not serve the committed version {record.version}")
    missing = sorted(set(pin) - set(versions) - {record.version})
    if missing:
        problems.append(f"does not serve retained version(s) {missing}")
    extra = sorted(set(versions) - set(pin))
    if extra:
        problems.append(f"also serves {extra}, which is not committed")
    if problems:
        problems.append(f"serves {list(versions) or 'nothing'}, committed pin {pin}")
    return ReplicaView(seen.replica, versions, ready, "; ".join(problems))


def _pin_ready(replica: Replica, model: str, pin: Sequence[int]) -> bool | None:
    """Whether every committed version answers on `/v2/models/M/versions/N/ready`, which needs no
    key (None: the replica did not answer)."""
    try:
        with connect(replica, ApiKey(None), timeout_s=10.0) as client:
            return all(client.model_ready(model, version) for version in pin)
    except errors.TritonOpsError:
        return None


def _lock(repository: Path) -> dict[str, Any] | None:
    found = lock.inspect(repository)
    if found is None:
        return None
    return {
        "path": str(found.path),
        "description": found.describe(),
        "stale": found.stale,
        "why": found.why,
        "clear": lock.unlock_command(repository) if found.stale else None,
    }
