"""`status`: per model, the committed record (version, pin, source, digest, time, who), a commit a
crash left pending, and what each replica serves and whether it is ready; drift is named, replica by
replica, never implied. Read-only: it takes no lock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonops import errors
from tritonops.promotion import fleet, lock, state
from tritonops.promotion.replicas import ApiKey, Replica


@dataclass(frozen=True)
class ReplicaView:
    """What one replica serves of one model, whether the committed pin is ready there, and how it
    drifts from the committed state (empty when it does not)."""

    replica: str
    versions: tuple[int, ...] | None  # None: the replica could not be read
    ready: bool
    drift: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "serves": None if self.versions is None else list(self.versions),
            "ready": self.ready,
            "drift": self.drift or None,
        }


@dataclass(frozen=True)
class ModelStatus:
    model: str
    committed: dict[str, Any] | None  # version, pin, source, digest, committedAt, committedBy
    pending: dict[str, Any] | None  # a commit a crash cut short: version, startedAt, what finalize does
    replicas: tuple[ReplicaView, ...]

    @property
    def drift(self) -> list[str]:
        return [f"{view.replica}: {view.drift}" for view in self.replicas if view.drift]

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "committed": self.committed,
            "pending": self.pending,
            "replicas": [view.as_dict() for view in self.replicas],
            "drift": self.drift,
        }


@dataclass(frozen=True)
class Status:
    repository: Path
    models: tuple[ModelStatus, ...]
    lock: dict[str, Any] | None  # the promotion lock when one is held: owner, stale, how to clear

    @property
    def in_sync(self) -> bool:
        return not any(model.drift for model in self.models)

    def as_dict(self) -> dict[str, Any]:
        return {
            "repository": str(self.repository),
            "in_sync": self.in_sync,
            "lock": self.lock,
            "models": [model.as_dict() for model in self.models],
        }

    def describe(self) -> str:
        lines = [f"models in {self.repository}:"]
        if self.lock:
            lines.append(f"  lock: {self.lock['description']}")
            if self.lock.get("stale"):
                lines.append(f"        stale: clear it with `{self.lock['clear']}`")
        for model in self.models:
            committed = model.committed
            if committed is None:
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
            for view in model.replicas:
                serves = "unreachable" if view.versions is None else (str(list(view.versions)) or "nothing")
                mark = "ready" if view.ready else "NOT READY"
                lines.append(
                    f"      {view.replica:<12} serves {serves:<10} {mark}"
                    + (f"  drift: {view.drift}" if view.drift else "")
                )
        if not self.models:
            lines.append("  nothing committed")
        lines.append(
            "in sync with the committed state" if self.in_sync else "DRIFT: see the lines marked drift"
        )
        return "\n".join(lines)


def status(
    repository: Path, replicas: Sequence[Replica], model: str | None = None, *, key: ApiKey | None = None
) -> Status:
    """The committed state of `repository` (or of one model) beside what every replica serves."""
    repository = Path(repository)
    key = key or ApiKey(None)
    written = state.read(repository)
    records = state.effective(repository, written)
    if model is not None and model not in records and not (repository / model / state.CONFIG_FILE).is_file():
        known = sorted({*records, *(p.parent.name for p in repository.glob(f"*/{state.CONFIG_FILE}"))})
        raise errors.InputError(
            f"{model}: no such model in {repository} (models: {', '.join(known) or 'none'})"
        )
    names = sorted(records) if model is None else [model]
    served = fleet.served(replicas, key, names) if replicas else {name: [] for name in names}
    models = []
    for name in names:
        record = records.get(name)
        raw = written.record(name)
        views = tuple(_view(seen, record) for seen in served[name])
        models.append(ModelStatus(name, _committed(record), _pending(raw, record), views))
    return Status(repository, tuple(models), _lock(repository))


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


def _view(seen: fleet.Served, record: state.Record | None) -> ReplicaView:
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
