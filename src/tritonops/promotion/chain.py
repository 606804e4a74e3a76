"""The promotion chain over real replicas: `promote`, `rollback` and `reconcile`, a Python API that
the CLI and an orchestrator (Airflow) call with keyword arguments. Each returns an Outcome naming
every step with its status, seconds and detail; a failure raises errors.PromotionFailed(step) whose
`.outcome` says the same.

promote: materialize -> verify -> stage -> load -> check [-> observe] -> commit -> narrow

- load widens every replica to the committed pin plus the candidate (one real load each, in
  parallel, a deadline each): the committed version keeps serving meanwhile. check runs the smoke
  check of the candidate on each replica as soon as its load returns. A candidate higher than every
  committed version takes the unversioned traffic as soon as it is ready (Triton routes to the
  highest ready version), so that window is kept short and the requests it answered are counted.
- observe (with a gate) runs before the commit: the committed state never names a version whose
  gate failed, a breach is undone by narrowing back (no commit to revert), and a crash during the
  window leaves the old version committed, which the agents converge to. So that the gate sees
  the candidate, replicas are narrowed to the candidate's pin first when it would not take the
  unversioned traffic beside the committed version (a lower candidate).
- `canary=K`: load, check and observe on the first K replicas; then load and check the rest.
- commit: config.pbtxt pinned and current.json, under the repository's lock (promotion/state.py).
- narrow: every replica to the final pin, verified.

promote --config FILE (a config change of the committed version): verify -> load -> check
[-> observe] -> commit -> narrow. verify checks the file as `repo validate` checks a config against
the model's folder and graph, and against the committed config's backend, inputs and outputs; load
sends it as every replica's override with the committed pin (a reload, even where that pin serves);
commit writes it pinned (a new configDigest, a history entry with `change: config`) after keeping
the replaced config.pbtxt byte for byte in the work area, from where a rollback writes it back.

Any failure before the commit: every replica it touched is narrowed (or reloaded) back to the
committed config and verified serving; a candidate this promotion staged is quarantined; the
attempt goes into the history; PromotionFailed names the step and the cause. After the commit a
replica that cannot be narrowed is reported as drift (its agent converges it), not rolled back.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonops import errors
from tritonops.promotion import fleet, gate, lock, materialize, smoke, state, workarea
from tritonops.promotion.replicas import ApiKey, Replica, connect
from tritonops.repository import checksums, configs, validator
from tritonops.repository.findings import Severity

log = logging.getLogger(__name__)

# (step, message): called when a step starts and when it ends, for progress output and hooks.
Progress = Callable[[str, str], None]
OK, FAILED, SKIPPED, DEGRADED = "ok", "failed", "skipped", "degraded"


@dataclass(frozen=True)
class Step:
    """One step of the chain: its name, ok/failed/skipped/degraded, seconds, what it did, per replica."""

    name: str
    status: str
    seconds: float
    detail: str
    replicas: tuple[fleet.ReplicaResult, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }
        if self.replicas:
            document["replicas"] = [result.as_dict() for result in self.replicas]
        return document


@dataclass(frozen=True)
class GateSpec:
    """`--gate QUERY --gate-window S --prometheus URL [--gate-inconclusive pass]`."""

    query: str
    prometheus_url: str
    window_s: float
    interval_s: float = gate.DEFAULT_INTERVAL_S
    inconclusive: gate.InconclusivePolicy = "fail"


@dataclass(frozen=True)
class Outcome:
    """What a promote, rollback or reconcile did. `result` is committed, rolled-back, noop, failed
    or reconciled; `version` is the committed version at the end."""

    command: str
    model: str | None
    result: str
    version: int | None
    previous_version: int | None
    candidate: int | None
    steps: tuple[Step, ...]
    reason: str = ""
    failed_step: str | None = None
    # Requests the rejected candidate answered (unversioned traffic, smoke checks excluded).
    candidate_answered: int | None = None
    quarantined: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def seconds(self) -> float:
        return sum(step.seconds for step in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "model": self.model,
            "result": self.result,
            "version": self.version,
            "previous_version": self.previous_version,
            "candidate": self.candidate,
            "seconds": round(self.seconds, 3),
            "reason": self.reason,
            "failed_step": self.failed_step,
            "candidate_answered": self.candidate_answered,
            "quarantined": self.quarantined,
            "warnings": list(self.warnings),
            "steps": [step.as_dict() for step in self.steps],
        }

    def describe(self, *, result_line: bool = True) -> str:
        """Human lines: one per step, then the result (the CLI leaves that out of a failure, whose
        error line follows)."""
        lines = []
        for step in self.steps:
            lines.append(f"  {step.name:<11} {step.status:<8} {step.seconds:6.2f}s  {step.detail}")
            lines += [f"      {r.replica}: {'ok' if r.ok else 'FAILED'} {r.detail}" for r in step.replicas]
        lines += [f"  warning: {warning}" for warning in self.warnings]
        subject = f"{self.model} " if self.model else ""
        if result_line:
            lines.append(f"{self.command} {subject}{self.result}: {self.reason}")
        if self.candidate_answered:
            lines.append(f"  the rejected candidate answered at least {self.candidate_answered} request(s)")
        return "\n".join(lines)


class _Steps:
    """The steps of one run, timed, reported to `progress` as they start and end."""

    def __init__(self, progress: Progress | None) -> None:
        self.steps: list[Step] = []
        self._progress = progress
        self._name = ""
        self._started = 0.0

    @property
    def current(self) -> str:
        """The step that started last (where an interruption happened)."""
        return self._name or "materialize"

    def start(self, name: str, message: str) -> None:
        self._name, self._started = name, time.monotonic()
        log.info("%s: %s", name, message)
        if self._progress:
            self._progress(name, message)

    def end(
        self,
        detail: str,
        *,
        status: str = OK,
        replicas: Sequence[fleet.ReplicaResult] = (),
        seconds: float | None = None,
    ) -> Step:
        """Record the step; `seconds` for a step whose work ran inside another (check, in load)."""
        took = time.monotonic() - self._started if seconds is None else seconds
        step = Step(self._name, status, took, detail, tuple(replicas))
        self.steps.append(step)
        log.info("%s %s: %s", step.name, status, detail)
        if self._progress:
            self._progress(step.name, f"{status}: {detail}")
        return step

    def skip(self, name: str, detail: str) -> None:
        self.steps.append(Step(name, SKIPPED, 0.0, detail))


class _Failure(Exception):
    """A step failed before the commit: roll back, then raise PromotionFailed(step)."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason


@dataclass(frozen=True)
class _Switch:
    """Everything one move of a model from its committed version to `candidate` needs."""

    command: str
    repository: Path
    model: str
    record: state.Record | None  # the committed record in force (None: nothing committed yet)
    candidate: int
    final_pin: list[int]
    widen_pin: list[int]
    new_record: state.Record
    commit_text: str  # config.pbtxt as committed: the model's config pinned to final_pin
    candidate_config: dict[str, Any]  # what the loads send (their pin set per load)
    committed_config: dict[str, Any] | None  # what a restore sends (None: nothing served before)
    outcome: str  # the history outcome on success: committed or rolled-back
    staged_here: bool = False  # this run moved the candidate folder into the model folder
    # What serves before the switch: the committed pin or, before a model's first commit, the
    # versions its replicas serve now (from server.loadModels), which must keep serving too.
    committed_pin: tuple[int, ...] = ()
    owner: lock.LockOwner | None = None  # this run's hold on the repository lock, checked before commit
    warnings: tuple[str, ...] = field(default_factory=tuple)
    # The config changes (beyond its pin): every replica loads it, even where the pin serves already.
    config_change: bool = False


# --- promote ---------------------------------------------------------------------------------


def promote(
    *,
    repository: Path,
    replicas: Sequence[Replica],
    model: str,
    version: int | None = None,
    source: str | None = None,
    key: ApiKey | None = None,
    golden: smoke.Golden | None = None,
    gate_spec: GateSpec | None = None,
    canary: int | None = None,
    keep_previous: bool = False,
    load_deadline_s: float = fleet.DEFAULT_LOAD_DEADLINE_S,
    progress: Progress | None = None,
    config: Path | None = None,
    allow_smaller_batch: bool = False,
) -> Outcome:
    """Promote `model` to `version` (from `source`, or the version folder already in the
    repository) on every replica, and commit it; or, with `config` (a config.pbtxt), promote that
    config for the committed version (`version` defaults to it); `allow_smaller_batch` lets that
    config accept less than the committed one (a lower max_batch_size, a switch between
    max_batch_size 0 and > 0, other dims or reshape), refused otherwise. Raises InputError (nothing
    changed) for bad input, PromotionLocked/StaleLock when another promotion holds the repository,
    PromotionFailed(step) after rolling every replica back to the committed state."""
    repository = Path(repository)
    key = key or ApiKey(None)
    _check_arguments(replicas, version, canary, load_deadline_s)
    if gate_spec is not None:
        gate.check_window(gate_spec.window_s, gate_spec.interval_s)
    _check_model(repository, model)
    config_text = _config_arguments(config, version, source, keep_previous)
    if allow_smaller_batch and config is None:
        raise errors.InputError("--allow-smaller-batch goes with --config FILE (a config change)")
    steps = _Steps(progress)
    state.read(repository)  # a malformed current.json is refused before the lock is taken
    what = f"--config {config}" if config is not None else f"--version {version}"
    with lock.hold(repository, model, f"promote {model} {what}") as owner:
        record = _finalized(repository, model, steps)
        if config is not None and config_text is not None:
            return _promote_config(
                repository,
                replicas,
                model,
                version,
                record,
                config,
                config_text,
                key,
                steps,
                owner,
                golden=golden,
                gate_spec=gate_spec,
                canary=canary,
                deadline_s=load_deadline_s,
                allow_smaller_batch=allow_smaller_batch,
            )
        assert version is not None  # _config_arguments refuses a call with neither
        if record is not None and keep_previous and version < record.version:
            raise errors.InputError(
                f"--keep-previous: version {version} is lower than the committed version "
                f"{record.version}, which would keep taking every unversioned request beside it "
                "(Triton routes to the highest ready version); promote without --keep-previous"
            )
        fleet.check_reachable(replicas, key, model)
        serving = _served_now(replicas, key, model) if record is None else []
        baseline = record.pin if record is not None else serving
        if gate_spec is not None and baseline and version < max(baseline):
            # Triton sends unversioned requests to the highest ready version: to be observed, a
            # lower candidate would have to serve alone before its commit, which the readiness
            # check (committed or pending versions only) rightly calls not ready.
            raise errors.InputError(
                f"--gate: version {version} is lower than version {max(baseline)}, which serves "
                f"{model} now; a gate cannot observe a lower version before it is committed. Promote it "
                "without --gate (or --canary), then watch it, and roll back if needed"
            )
        if gate_spec is not None:
            gate.preflight(gate_spec.prometheus_url, gate_spec.query, gate_spec.inconclusive)
        if record is not None and version == record.version:
            return _noop(repository, model, record, source, steps)
        staged = _materialize(repository, model, version, source, steps, record=record)
        stage_result = _stage(repository, model, staged, steps)
        switch = _plan(
            "promote",
            repository,
            model,
            record,
            version,
            keep_previous=keep_previous,
            digest=stage_result.digest,
            source=staged.source if source else None,
            resolved_source=staged.resolved_source if source else None,
            staged_here=not stage_result.reused,
            serving=serving,
        )
        switch = dataclasses.replace(switch, owner=owner)
        return _run_switch(
            switch,
            replicas,
            key,
            steps,
            golden=golden,
            gate_spec=gate_spec,
            canary=canary,
            deadline_s=load_deadline_s,
        )


# --- promote --config: a config change of the committed version ------------------------------


def _config_arguments(
    config: Path | None, version: int | None, source: str | None, keep_previous: bool
) -> str | None:
    """The text of `--config FILE` (None without it), after the flags that go with it."""
    if config is None:
        if version is None:
            raise errors.InputError("give --version VERSION, or --config FILE to promote a config")
        return None
    if source is not None:
        raise errors.InputError(
            "--from with --config: promote the new version first (`--version N --from SOURCE`), then "
            "its config (`--config FILE`); one change at a time, each verified and rolled back alone"
        )
    if keep_previous:
        raise errors.InputError("--keep-previous: a config change keeps the same version; leave it out")
    path = Path(config)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        why = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise errors.InputError(f"--config {path}: cannot read it ({why}); give a config.pbtxt") from None


def _promote_config(
    repository: Path,
    replicas: Sequence[Replica],
    model: str,
    version: int | None,
    record: state.Record | None,
    path: Path,
    text: str,
    key: ApiKey,
    steps: _Steps,
    owner: lock.LockOwner,
    *,
    golden: smoke.Golden | None,
    gate_spec: GateSpec | None,
    canary: int | None,
    deadline_s: float,
    allow_smaller_batch: bool,
) -> Outcome:
    """`promote --config FILE`: verify the config against the model, load it on every replica as
    an override with the committed pin, check, [observe,] commit it (config.pbtxt, pinned), narrow."""
    if record is None:
        raise errors.InputError(
            f"--config: nothing is committed for {model} in {repository}; promote a version first "
            f"(`tritonops promote {model} --version N`), then its config"
        )
    if version is not None and version != record.version:
        raise errors.InputError(
            f"--version {version} with --config: a config is promoted for the committed version "
            f"{record.version} of {model}; leave --version out, or promote version {version} first"
        )
    fleet.check_reachable(replicas, key, model)
    if gate_spec is not None:
        gate.preflight(gate_spec.prometheus_url, gate_spec.query, gate_spec.inconclusive)
    commit_text = _verify_config(
        repository, model, record, record, text, str(path), steps, allow_smaller_batch=allow_smaller_batch
    )
    switch = _plan_config("promote", repository, model, record, record, commit_text, str(path))
    if not switch.config_change:
        reason = f"{path} is the committed config of version {record.version} (apart from comments)"
        state.append_history(
            repository,
            state.HistoryEntry(
                model,
                record.version,
                "noop",
                previous_version=record.version,
                digest=record.digest,
                reason=reason,
                change="config",
                config_digest=record.config_digest,
                previous_config_digest=record.config_digest,
            ),
        )
        steps.skip("load", f"{reason}: nothing to do")
        return Outcome(
            "promote",
            model,
            "noop",
            record.version,
            record.version,
            record.version,
            tuple(steps.steps),
            reason=f"{reason}: nothing to do",
        )
    switch = dataclasses.replace(switch, owner=owner)
    return _run_switch(
        switch, replicas, key, steps, golden=golden, gate_spec=gate_spec, canary=canary, deadline_s=deadline_s
    )


def _verify_config(
    repository: Path,
    model: str,
    record: state.Record,
    target: state.Record,
    text: str,
    where: str,
    steps: _Steps,
    *,
    command: str = "promote",
    allow_smaller_batch: bool = False,
) -> str:
    """The config as it would be committed (pinned to `target`'s versions), checked like `repo
    validate` checks one against the model's graph and against the committed config's inputs and
    outputs. A refusal (CandidateRejected) carries the outcome and goes into the history."""
    steps.start("verify", f"{where} against {model}'s model files and committed config")
    try:
        try:
            pinned = state.config_with_pin(text, target.pin, where=where)
            parsed = configs.ParsedConfig(Path(where), pinned, state.parse_config(pinned, where=where))
        except errors.InputError as error:
            raise errors.CandidateRejected(str(error)) from None
        committed = state.parse_config(_committed_text(repository, model, record))
        findings = validator.validate_config(
            parsed, repository / model, target.pin, committed, allow_smaller_batch=allow_smaller_batch
        )
        rejected = [f for f in findings if f.severity is Severity.ERROR]
        if rejected:
            raise errors.CandidateRejected(
                f"{where} is not a config {model} can serve: " + "; ".join(f.message for f in rejected),
                rejected,
            )
    except errors.CandidateRejected as error:
        steps.end(str(error), status=FAILED)
        error.outcome = Outcome(
            command,
            model,
            "failed",
            record.version,
            record.version,
            target.version,
            tuple(steps.steps),
            reason=f"{error}; no replica was touched",
            failed_step="verify",
        )
        state.append_history(
            repository,
            state.HistoryEntry(
                model,
                target.version,
                "failed",
                previous_version=record.version,
                digest=target.digest,
                step="verify",
                reason=str(error),
                change="config",
                config_digest=state.config_digest(text),
                previous_config_digest=record.config_digest,
            ),
        )
        raise
    warnings = [f for f in findings if f.severity is not Severity.ERROR]
    steps.end("passed" + (f" ({len(warnings)} warning(s): {warnings[0].message})" if warnings else ""))
    return pinned


def _committed_text(repository: Path, model: str, record: state.Record) -> str:
    """The committed config as text: the record's own, else (a hand-written record) the file."""
    if record.config:
        return state.config_text_from_json(record.config)
    path = repository / model / state.CONFIG_FILE
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise errors.InputError(f"{path}: cannot read the model's config ({error.strerror})") from None


def _plan_config(
    command: str,
    repository: Path,
    model: str,
    record: state.Record,
    target: state.Record,
    commit_text: str,
    where: str,
) -> _Switch:
    """The switch from the committed record to `target`'s version and pin with `commit_text`
    (pinned) as its config: a config change (promote --config, or its rollback)."""
    committed_config = dict(record.config) if record.config else _config_on_disk(repository, model)
    candidate_config = state.config_json(commit_text, where=where)
    new_record = state.Record(
        model,
        target.version,
        digest=target.digest,
        retained=tuple(target.retained),
        source=target.source,
        resolved_source=target.resolved_source,
    )
    return _Switch(
        command,
        repository,
        model,
        record,
        target.version,
        target.pin,
        sorted(set(record.pin) | set(target.pin)),
        new_record,
        commit_text,
        candidate_config,
        committed_config,
        "rolled-back" if command == "rollback" else "committed",
        committed_pin=tuple(record.pin),
        config_change=not state.same_config_apart_from_pin(candidate_config, committed_config),
    )


def _previous_config_text(repository: Path, model: str, record: state.Record) -> str | None:
    """What a rollback to `record.previous` writes as config.pbtxt, when the previous config
    differs from the committed one beyond its pin (a config promotion): the kept copy of its text
    (workarea.keep_config, found by its configDigest), else its `config` as text. None when the
    configs are the same (the same configDigest, or the same config apart from the pin): then the
    file on disk is re-pinned.

    A record written by hand (the sample repository's, the README's emergency procedure) has a
    configDigest but no `config`: the digests then decide, and a config change of the same version
    whose text is nowhere to be found is refused (InputError), never reported as a no-op."""
    previous = record.previous
    if previous is None:
        return None
    if previous.config_digest is not None and previous.config_digest == record.config_digest:
        return None
    kept = workarea.kept_config(repository, model, previous.config_digest) if previous.config_digest else None
    where = str(workarea.kept_config_path(repository, model, previous.config_digest or "sha256:"))
    previous_config = previous.config or (state.config_json(kept, where=where) if kept is not None else None)
    if previous_config is not None:
        current = record.config or _config_on_disk(repository, model)
        if state.same_config_apart_from_pin(previous_config, current):
            return None
        return kept if kept is not None else state.config_text_from_json(previous_config)
    if previous.version != record.version:
        # A version promotion from a hand-written record re-pinned the same file: re-pin it back.
        return None
    # The same version with another config (only a config promotion commits that), whose text is
    # neither kept nor recorded: writing back the file on disk would silently keep the new config.
    missing = (
        f"its kept copy {where} is missing"
        if previous.config_digest
        else f"the previous record names no configDigest to find its kept copy in {workarea.configs_dir(repository) / model}"
    )
    raise errors.InputError(
        f"{model}: the config committed before this one ({previous.config_digest or 'digest not recorded'}; "
        f"now {record.config_digest or 'not recorded'}) cannot be rolled back to: {missing}, and "
        f"current.json holds no `config` for it. Nothing was changed. Bring the old config.pbtxt back "
        f"through the chain: `tritonops promote {model} --config <file>`"
    )


def _refuse_rolling_back_a_rollback(repository: Path, model: str, record: state.Record) -> None:
    """A second `rollback` without --to would return to the version the first one left: the one
    that was rolled back from. A second operator must say where to go."""
    committed = [
        e
        for e in state.read(repository).history
        if e.model == model and e.outcome in ("committed", "rolled-back")
    ]
    last = committed[-1] if committed else None
    if last is not None and last.outcome == "rolled-back" and last.version == record.version:
        if last.change == "config" and last.previous_config_digest:
            # The config rolled back from was kept by that rollback's commit: promote it again.
            kept = workarea.kept_config_path(repository, model, last.previous_config_digest)
            raise errors.InputError(
                f"{model}: its config ({record.config_digest}) is already the result of a rollback (from "
                f"config {last.previous_config_digest}); rolling back again would return to that config. "
                f"To serve it again, promote it: `tritonops promote {model} --config {kept}`"
            )
        raise errors.InputError(
            f"{model}: version {record.version} is already the result of a rollback (from version "
            f"{last.previous_version}); rolling back again would return to that version. Give --to VERSION "
            "to choose, or promote the version you want"
        )


def _served_now(replicas: Sequence[Replica], key: ApiKey, model: str) -> list[int]:
    """Before a model's first commit: every version any replica serves now (it was loaded at start
    from server.loadModels), which keeps serving beside the candidate until the commit."""
    return sorted({v for seen in fleet.served(replicas, key, [model])[model] for v in (seen.versions or ())})


def _check_arguments(
    replicas: Sequence[Replica], version: int | None, canary: int | None, deadline_s: float
) -> None:
    if not replicas:
        raise errors.InputError("no replicas to promote on: give --endpoints or start the local runtime")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise errors.InputError(f"--version {version!r}: give a positive version number")
    if canary is not None and not 1 <= canary < len(replicas):
        raise errors.InputError(
            f"--canary {canary}: give 1 to {len(replicas) - 1} replicas (there are {len(replicas)}: "
            "the canary must leave some for the second wave)"
        )
    if deadline_s <= 0:
        raise errors.InputError(f"--load-timeout {deadline_s:g}: give a positive number of seconds")


def _check_model(repository: Path, model: str) -> None:
    if not repository.is_dir():
        raise errors.InputError(f"{repository}: no such model repository")
    if not (repository / model / state.CONFIG_FILE).is_file():
        known = sorted(p.name for p in repository.iterdir() if (p / state.CONFIG_FILE).is_file())
        raise errors.InputError(
            f"{model}: no such model folder (with a {state.CONFIG_FILE}) in {repository}; it holds "
            f"{', '.join(known) or 'no model'}"
        )


def _finalized(repository: Path, model: str, steps: _Steps) -> state.Record | None:
    """Complete or drop a commit a crash cut short (reported as a step), then the record in force."""
    messages = state.finalize(repository)
    if messages:
        steps.start("finalize", "completing a commit a crash cut short")
        steps.end("; ".join(messages))
    return state.effective(repository).get(model)


def _noop(
    repository: Path,
    model: str,
    record: state.Record,
    source: str | None,
    steps: _Steps,
    command: str = "promote",
) -> Outcome:
    """Re-promoting the committed version: nothing to do, when the files are the committed ones."""
    folder = repository / model / str(record.version)
    reason = f"version {record.version} is already committed"
    if source is not None:
        staged = _materialize(
            repository, model, record.version, source, steps, command=command, record=record
        )
        materialize.discard(staged)
        committed_digest = record.digest or checksums.version_digest(folder)
        if staged.digest != committed_digest:
            raise errors.InputError(
                f"{source}: version {record.version} of {model} is committed with other files "
                f"({committed_digest}; the source is {staged.digest}); promote it under a new version number"
            )
        reason += f" with these files ({staged.digest})"
    state.append_history(
        repository,
        state.HistoryEntry(
            model,
            record.version,
            "noop",
            previous_version=record.version,
            source=source,
            digest=record.digest,
            reason=reason,
        ),
    )
    steps.skip("load", f"{reason}: nothing to do")
    return Outcome(
        command,
        model,
        "noop",
        record.version,
        record.version,
        record.version,
        tuple(steps.steps),
        reason=f"{reason}: nothing to do (`tritonops status` shows what each replica serves)",
    )


def _materialize(
    repository: Path,
    model: str,
    version: int,
    source: str | None,
    steps: _Steps,
    *,
    command: str = "promote",
    record: state.Record | None = None,
) -> materialize.Staged:
    """The candidate in the staging area (or, without a source, its version folder in place),
    checked before any replica is touched. A refusal (CandidateRejected) carries the outcome so far
    (`record`: the committed record it leaves in force)."""
    if source is None:
        steps.skip("materialize", "no --from: the version folder is already in the repository")
        staged = _existing_folder(repository, model, version)
    else:
        steps.start("materialize", f"{source} into the staging area")
        staged = materialize.materialize(source, repository, model, version)
        steps.end(f"{staged.description} -> {staged.path} ({staged.digest})")
    steps.start("verify", f"checksums and `repo validate` of version {version} against {model}'s config")
    try:
        warnings = materialize.verify(staged, repository, model)
    except errors.CandidateRejected as error:
        steps.end(str(error), status=FAILED)
        quarantined = None
        if source is not None:
            quarantined = workarea.quarantine(
                repository, model, version, "verify", str(error), folder=staged.path
            )
            log.warning("quarantined the refused candidate in %s", quarantined)
        committed = record.version if record is not None else None
        error.outcome = Outcome(
            command,
            model,
            "failed",
            committed,
            committed,
            version,
            tuple(steps.steps),
            reason=f"{error}; no replica was touched",
            failed_step="verify",
            quarantined=str(quarantined) if quarantined is not None else None,
        )
        state.append_history(
            repository,
            state.HistoryEntry(
                model,
                version,
                "failed",
                source=source,
                digest=staged.digest,
                step="verify",
                reason=str(error),
            ),
        )
        raise
    steps.end("passed" + (f" ({len(warnings)} warning(s): {warnings[0].message})" if warnings else ""))
    return staged


def _require_version_folder(repository: Path, model: str, version: int) -> None:
    """A rollback returns to a version folder in the repository: name the ones there when it is gone."""
    folder = repository / model / str(version)
    if folder.is_dir():
        return
    there = sorted(int(p.name) for p in (repository / model).iterdir() if p.is_dir() and p.name.isdigit())
    raise errors.InputError(
        f"{folder}: no such version folder; the model folder holds version(s) "
        f"{', '.join(map(str, there)) or 'none'}. Roll back to one of them with --to VERSION, or bring "
        f"version {version} back with `tritonops promote {model} --version {version} --from SOURCE`"
    )


def _existing_folder(repository: Path, model: str, version: int) -> materialize.Staged:
    folder = repository / model / str(version)
    if not folder.is_dir():
        raise errors.InputError(
            f"{folder}: no such version folder; give --from SOURCE (a folder, a model file or "
            "models:/NAME/VERSION) or put the version there first"
        )
    manifest = checksums.manifest_path(folder)
    return materialize.Staged(
        folder,
        model,
        version,
        str(folder),
        f"version folder {folder}",
        str(folder),
        checksums.version_digest(folder),
        manifest if manifest.is_file() else None,
    )


def _stage(repository: Path, model: str, staged: materialize.Staged, steps: _Steps) -> workarea.StageResult:
    target = repository / model / str(staged.version)
    if staged.path == target:
        steps.skip("stage", f"{target} is already in place")
        return workarea.StageResult(target, staged.digest, reused=True)
    steps.start("stage", f"rename into {target}")
    result = workarea.stage(staged.path, repository, model, staged.version)
    steps.end(result.describe())
    return result


def _plan(
    command: str,
    repository: Path,
    model: str,
    record: state.Record | None,
    candidate: int,
    *,
    keep_previous: bool,
    digest: str,
    source: str | None,
    resolved_source: str | None,
    staged_here: bool,
    serving: Sequence[int] = (),
    config_text: str | None = None,
) -> _Switch:
    """`config_text`: the config to commit (a rollback's previous config), else the file on disk."""
    config_path = repository / model / state.CONFIG_FILE
    try:
        config_text = config_text if config_text is not None else config_path.read_text(encoding="utf-8")
    except OSError as error:
        raise errors.InputError(f"{config_path}: cannot read the model's config ({error.strerror})") from None
    final_pin = sorted({candidate} | ({record.version} if record is not None and keep_previous else set()))
    committed_pin = record.pin if record is not None else sorted(set(serving))
    commit_text = state.config_with_pin(config_text, final_pin, where=str(config_path))
    candidate_config = state.config_json(commit_text, where=str(config_path))
    committed_config = None
    if record is not None:
        committed_config = dict(record.config) if record.config else state.config_json(config_text)
    elif committed_pin:
        # Nothing committed yet, but the replicas serve these versions: a restore pins them
        # explicitly (the config on disk may say `latest`, which would now pick the candidate).
        committed_config = state.config_json(
            state.config_with_pin(config_text, committed_pin, where=str(config_path)), where=str(config_path)
        )
    new_record = state.Record(
        model,
        candidate,
        digest=digest,
        retained=tuple(v for v in final_pin if v != candidate),
        source=source,
        resolved_source=resolved_source,
    )
    return _Switch(
        command,
        repository,
        model,
        record,
        candidate,
        final_pin,
        sorted(set(committed_pin) | {candidate}),
        new_record,
        commit_text,
        candidate_config,
        committed_config,
        "rolled-back" if command == "rollback" else "committed",
        staged_here,
        tuple(committed_pin),
        config_change=committed_config is not None
        and not state.same_config_apart_from_pin(candidate_config, committed_config),
    )


def _run_switch(
    switch: _Switch,
    replicas: Sequence[Replica],
    key: ApiKey,
    steps: _Steps,
    *,
    golden: smoke.Golden | None,
    gate_spec: GateSpec | None,
    canary: int | None,
    deadline_s: float,
) -> Outcome:
    waves = [list(replicas[:canary]), list(replicas[canary:])] if canary else [list(replicas)]
    touched: list[Replica] = []
    # Requests the candidate answered per replica, read where it was dropped during the load step.
    answered: dict[str, int | None] = {}
    try:
        for number, wave in enumerate(waves):
            touched += wave
            _load_and_check(
                switch, wave, key, steps, golden, deadline_s, answered, number=number if canary else None
            )
            if gate_spec is not None and number == 0:
                _observe(steps, gate_spec)
        _commit(switch, steps)
    except BaseException as problem:
        # A failure, SIGINT or SIGTERM (the CLI turns it into KeyboardInterrupt), and anything
        # unexpected (an orchestrator's timeout exception, a bug) restore like a failure, unless the
        # commit point has passed: then the new state is in force and must not be undone.
        if isinstance(problem, GeneratorExit):
            raise
        if _past_commit_point(switch):
            if isinstance(problem, KeyboardInterrupt):
                raise
            reason = problem.reason if isinstance(problem, _Failure) else _unexpected(problem)
            raise errors.PromotionFailed(
                "commit",
                f"version {switch.candidate} of {switch.model} is committed (config.pbtxt pins "
                f"{switch.final_pin}) but the record was not completed ({reason}); the replicas "
                "serve the candidate beside the old version: run `tritonops reconcile` to complete "
                "the record and narrow every replica",
            ) from None
        if isinstance(problem, _Failure):
            failure = problem
        elif isinstance(problem, KeyboardInterrupt):
            failure = _Failure(steps.current, "interrupted by a signal")
        else:
            log.exception("%s: unexpected error during %s", switch.model, steps.current)
            failure = _Failure(steps.current, _unexpected(problem))
        _roll_back(switch, touched, key, steps, failure, answered)
    return _narrow(switch, replicas, key, steps, golden)


def _unexpected(problem: BaseException) -> str:
    return f"unexpected {type(problem).__name__}: {problem}"


def _past_commit_point(switch: _Switch) -> bool:
    """Whether the record in force already names the candidate (config.pbtxt was replaced)."""
    try:
        record = state.effective(switch.repository).get(switch.model)
    except (errors.TritonOpsError, OSError):
        return False
    return (
        record is not None
        and record.version == switch.candidate
        and record.pin == switch.final_pin
        and record.config_digest == state.config_digest(switch.commit_text)
    )


def _load_and_check(
    switch: _Switch,
    wave: Sequence[Replica],
    key: ApiKey,
    steps: _Steps,
    golden: smoke.Golden | None,
    deadline_s: float,
    answered: dict[str, int | None],
    *,
    number: int | None,
) -> None:
    label = "" if number is None else (" (canary)" if number == 0 else " (the rest)")
    steps.start(
        "load",
        f"{switch.model} pinned to {switch.widen_pin} on {', '.join(r.name for r in wave)}{label}, "
        f"deadline {deadline_s:g} s each",
    )
    # Load and check run together per replica (each checks right after its own load); the two
    # steps are reported apart, each with its own per-replica results.
    widened = fleet.widen_and_check(
        wave,
        key,
        switch.model,
        switch.candidate_config,
        switch.widen_pin,
        switch.candidate,
        deadline_s=deadline_s,
        golden=golden,
        fallback=fleet.Fallback(switch.committed_config, list(switch.committed_pin)),
        reload=switch.config_change,
    )
    answered.update(widened.answered)
    loads, checks = widened.loads, widened.checks
    load_failed = fleet.failures(loads)
    steps.end(
        f"{len(loads) - len(load_failed)}/{len(loads)} replica(s) loaded{label}",
        status=FAILED if load_failed else OK,
        replicas=loads,
        seconds=max((r.seconds for r in loads), default=0.0),
    )
    if load_failed:
        raise _Failure("load", fleet.summary(loads))
    what = f"version {switch.candidate}" + (" with the new config" if switch.config_change else "")
    steps.start("check", f"{what} on {', '.join(r.name for r in wave)}{label}")
    check_failed = fleet.failures(checks)
    steps.end(
        f"{len(checks) - len(check_failed)}/{len(checks)} replica(s) verified"
        + (" against the golden outputs" if golden else ""),
        status=FAILED if check_failed else OK,
        replicas=checks,
        seconds=max((r.seconds for r in checks), default=0.0),
    )
    if check_failed:
        raise _Failure("check", fleet.summary(checks))


def _observe(steps: _Steps, spec: GateSpec) -> None:
    """The gate, while the candidate serves (on the canary wave only, with --canary)."""
    steps.start("observe", f"gate {spec.query!r} on {spec.prometheus_url} for {spec.window_s:g} s")
    result = gate.observe(
        spec.prometheus_url,
        spec.query,
        window_s=spec.window_s,
        interval_s=spec.interval_s,
        policy=spec.inconclusive,
    )
    steps.end(result.reason, status=OK if result.passed else FAILED)
    if not result.passed:
        raise _Failure("observe", f"gate {result.verdict}: {result.reason}")


def _history_config(switch: _Switch) -> dict[str, Any]:
    """The history fields of a config change: `change` and the config digests before and after."""
    if not switch.config_change:
        return {}
    return {
        "change": "config",
        "config_digest": state.config_digest(switch.commit_text),
        "previous_config_digest": switch.record.config_digest if switch.record else None,
    }


def _commit(switch: _Switch, steps: _Steps) -> None:
    steps.start("commit", f"{switch.model} version {switch.candidate} pinned to {switch.final_pin}")
    entry = state.HistoryEntry(
        switch.model,
        switch.candidate,
        switch.outcome,
        previous_version=switch.record.version if switch.record else None,
        source=switch.new_record.source,
        resolved_source=switch.new_record.resolved_source,
        digest=switch.new_record.digest,
        step="commit",
        **_history_config(switch),
    )
    try:
        if switch.owner is not None:
            # A lock lost (removed, taken over, or its heartbeat unwritten) must not commit.
            lock.check_held(switch.repository, switch.owner)
        if switch.config_change:
            # The config this commit replaces, byte for byte, for a rollback to write back.
            config_path = switch.repository / switch.model / state.CONFIG_FILE
            workarea.keep_config(switch.repository, switch.model, config_path.read_bytes())
        state.commit(switch.repository, switch.model, switch.new_record, switch.commit_text, entry)
    except (errors.TritonOpsError, OSError) as error:
        steps.end(str(error), status=FAILED)
        raise _Failure("commit", str(error)) from error
    steps.end(
        f"current.json and {switch.model}/config.pbtxt written (pin {switch.final_pin}"
        + (f", config {state.config_digest(switch.commit_text)}" if switch.config_change else "")
        + ")"
    )


def _narrow(
    switch: _Switch, replicas: Sequence[Replica], key: ApiKey, steps: _Steps, golden: smoke.Golden | None
) -> Outcome:
    steps.start("narrow", f"every replica to {switch.final_pin}")
    results = fleet.narrow_and_verify(
        replicas,
        key,
        switch.model,
        switch.candidate_config,
        switch.final_pin,
        switch.candidate,
        golden=golden,
    )
    bad = fleet.failures(results)
    # The agent and reconcile converge a replica's versions and its config alike.
    warnings = tuple(
        f"{r.replica} is not on the committed pin {switch.final_pin} yet ({r.detail}); its agent, or "
        "`tritonops reconcile`, converges it"
        for r in bad
    )
    steps.end(
        f"{len(results) - len(bad)}/{len(results)} replica(s) serve exactly {switch.final_pin}",
        status=DEGRADED if bad else OK,
        replicas=results,
    )
    previous = switch.record.version if switch.record else None
    verb = "rolled back to" if switch.command == "rollback" else "committed"
    reason = f"{verb} version {switch.candidate}" + (f" (was {previous})" if previous is not None else "")
    if switch.config_change and switch.record is not None and previous == switch.candidate:
        reason = (
            f"{'rolled back to' if switch.command == 'rollback' else 'committed'} config "
            f"{state.config_digest(switch.commit_text)} of version {switch.candidate} (was "
            f"{switch.record.config_digest or 'not recorded'})"
        )
    return Outcome(
        switch.command,
        switch.model,
        switch.outcome,
        switch.candidate,
        previous,
        switch.candidate,
        tuple(steps.steps),
        reason=reason
        + (
            f", version(s) {list(switch.new_record.retained)} kept loaded"
            if switch.new_record.retained
            else ""
        ),
        warnings=switch.warnings + warnings,
    )


def _roll_back(
    switch: _Switch,
    touched: Sequence[Replica],
    key: ApiKey,
    steps: _Steps,
    failure: _Failure,
    answered: dict[str, int | None],
) -> None:
    """Every touched replica back on the committed config, the candidate quarantined, the attempt
    in the history; then PromotionFailed(step)."""
    committed_pin = list(switch.committed_pin)
    unread = [replica for replica in touched if replica.name not in answered]
    if switch.candidate not in committed_pin and unread:
        answered.update(fleet.candidate_answers(unread, key, switch.model, switch.candidate))
    steps.start("restore", f"every touched replica back to {committed_pin or 'nothing committed'}")
    if switch.committed_config is not None and committed_pin:
        serving = switch.record.version if switch.record is not None else max(committed_pin)
        results = fleet.narrow_and_verify(
            touched, key, switch.model, switch.committed_config, committed_pin, serving
        )
    else:
        results = fleet.unload(touched, key, switch.model)
    results = [dataclasses.replace(r, candidate_answered=answered.get(r.replica)) for r in results]
    bad = fleet.failures(results)
    steps.end(
        f"{len(results) - len(bad)}/{len(results)} replica(s) back on the committed state",
        status=DEGRADED if bad else OK,
        replicas=results,
    )
    quarantined = None
    if switch.staged_here and switch.candidate not in committed_pin:
        quarantined = str(
            workarea.quarantine(
                switch.repository, switch.model, switch.candidate, failure.step, failure.reason
            )
        )
    counted = [n for n in answered.values() if n is not None]
    total = sum(counted) if counted else None
    state.append_history(
        switch.repository,
        state.HistoryEntry(
            switch.model,
            switch.candidate,
            "failed",
            previous_version=switch.record.version if switch.record else None,
            source=switch.new_record.source,
            resolved_source=switch.new_record.resolved_source,
            digest=switch.new_record.digest,
            step=failure.step,
            reason=failure.reason,
            **_history_config(switch),
        ),
    )
    restore_note = (
        f"; could not restore {fleet.summary(results)} (its agent converges it to the committed state)"
        if bad
        else f"; every replica is back on {committed_pin or 'nothing committed'}"
    )
    outcome = Outcome(
        switch.command,
        switch.model,
        "failed",
        switch.record.version if switch.record else None,
        switch.record.version if switch.record else None,
        switch.candidate,
        tuple(steps.steps),
        reason=failure.reason + restore_note,
        failed_step=failure.step,
        candidate_answered=total,
        quarantined=quarantined,
        warnings=switch.warnings,
    )
    raise errors.PromotionFailed(failure.step, failure.reason + restore_note, outcome=outcome)


# --- rollback ----------------------------------------------------------------------------------


def rollback(
    *,
    repository: Path,
    replicas: Sequence[Replica],
    model: str,
    to: int | None = None,
    key: ApiKey | None = None,
    golden: smoke.Golden | None = None,
    load_deadline_s: float = fleet.DEFAULT_LOAD_DEADLINE_S,
    progress: Progress | None = None,
) -> Outcome:
    """Return `model` to its previous committed version (or `to`): the same load, check, commit and
    narrow as a promotion, with the version folder already in the repository. With the previous
    version retained (--keep-previous), nothing loads: check, commit and narrow only. After a
    config promotion (`promote --config`) the previous record has the same version and another
    config: that config (its kept text, workarea.keep_config) is verified, loaded, committed and
    narrowed to like a promoted one."""
    repository = Path(repository)
    key = key or ApiKey(None)
    _check_arguments(replicas, to, None, load_deadline_s)
    _check_model(repository, model)
    steps = _Steps(progress)
    state.read(repository)
    with lock.hold(repository, model, f"rollback {model}" + (f" --to {to}" if to else "")) as owner:
        record = _finalized(repository, model, steps)
        if record is None:
            raise errors.InputError(
                f"{model}: nothing is committed for it in {repository}, so nothing to roll back"
            )
        if to is None:
            _refuse_rolling_back_a_rollback(repository, model, record)
        target = to if to is not None else (record.previous.version if record.previous else None)
        if target is None:
            raise errors.InputError(
                f"{model}: the committed record names no previous version; give --to VERSION"
            )
        if target != record.version:
            _require_version_folder(repository, model, target)
        back_to = record.previous if record.previous and record.previous.version == target else None
        # The previous config, where it differs from the committed one beyond its pin; never for an
        # explicit --to of the committed version, which is a no-op.
        restore_text = (
            _previous_config_text(repository, model, record)
            if back_to is not None and to != record.version
            else None
        )
        fleet.check_reachable(replicas, key, model)
        if target == record.version and (back_to is None or restore_text is None):
            return _noop(repository, model, record, None, steps, command="rollback")
        if target == record.version and back_to is not None and restore_text is not None:
            where = f"the previous config of {model} ({back_to.config_digest or 'from current.json'})"
            # A rollback returns to a config that was committed before: one that accepts less
            # than the config in force (a smaller max_batch_size) is warned about, not refused.
            commit_text = _verify_config(
                repository,
                model,
                record,
                back_to,
                restore_text,
                where,
                steps,
                command="rollback",
                allow_smaller_batch=True,
            )
            switch = _plan_config("rollback", repository, model, record, back_to, commit_text, where)
        else:
            staged = _materialize(repository, model, target, None, steps, command="rollback", record=record)
            if back_to is not None and back_to.digest and back_to.digest != staged.digest:
                raise errors.InputError(
                    f"{staged.path}: its files changed since version {target} was committed "
                    f"({back_to.digest}, now {staged.digest}); it cannot be rolled back to as it was"
                )
            switch = _plan(
                "rollback",
                repository,
                model,
                record,
                target,
                keep_previous=False,
                digest=staged.digest,
                source=back_to.source if back_to else None,
                resolved_source=back_to.resolved_source if back_to else None,
                staged_here=False,
                config_text=restore_text,
            )
        return _run_switch(
            dataclasses.replace(switch, owner=owner),
            replicas,
            key,
            steps,
            golden=golden,
            gate_spec=None,
            canary=None,
            deadline_s=load_deadline_s,
        )


# --- reconcile ---------------------------------------------------------------------------------


def reconcile(
    *,
    repository: Path,
    replicas: Sequence[Replica],
    model: str | None = None,
    key: ApiKey | None = None,
    load_deadline_s: float = fleet.DEFAULT_LOAD_DEADLINE_S,
    progress: Progress | None = None,
) -> Outcome:
    """Bring every replica to the committed state now: complete or drop a commit a crash cut short,
    then, per committed model, load its committed config on each replica that does not serve
    exactly its pin, or serves it with another config than the record's, and verify it. Replicas
    already right are left alone."""
    repository = Path(repository)
    key = key or ApiKey(None)
    _check_arguments(replicas, None, None, load_deadline_s)
    steps = _Steps(progress)
    state.read(repository)
    with lock.hold(repository, model, "reconcile" + (f" {model}" if model else "")):
        _finalized(repository, model or "", steps)
        records = state.effective(repository)
        if model is not None and model not in records:
            raise errors.InputError(f"{model}: nothing is committed for it in {repository}")
        chosen = {name: records[name] for name in sorted(records) if model is None or name == model}
        steps.start("converge", f"{', '.join(chosen) or 'no committed model'} on {len(replicas)} replica(s)")
        served = fleet.served(replicas, key, list(chosen))
        results: list[fleet.ReplicaResult] = []
        for name, record in chosen.items():
            lagging = [
                replica
                for replica, seen in zip(replicas, served[name], strict=True)
                if seen.versions is None
                or list(seen.versions) != record.pin
                or _serves_another_config(replica, key, name, record.config)
            ]
            fine = [replica for replica in replicas if replica not in lagging]
            said = f"serves {record.pin}" + (" with the committed config" if record.config else "")
            results += [fleet.ReplicaResult(f"{r.name} {name}", True, 0.0, said) for r in fine]
            if lagging:
                config = dict(record.config) if record.config else _config_on_disk(repository, name)
                converged = fleet.narrow_and_verify(
                    lagging, key, name, config, record.pin, record.version, deadline_s=load_deadline_s
                )
                results += [dataclasses.replace(r, replica=f"{r.replica} {name}") for r in converged]
        bad = fleet.failures(results)
        steps.end(
            f"{len(results) - len(bad)}/{len(results)} replica-model pair(s) on the committed state",
            status=FAILED if bad else OK,
            replicas=results,
        )
    outcome = Outcome(
        "reconcile",
        model,
        "failed" if bad else "reconciled",
        chosen[model].version if model else None,
        None,
        None,
        tuple(steps.steps),
        reason=(
            f"not converged: {fleet.summary(results)}"
            if bad
            else f"every replica serves the committed state of {', '.join(chosen) or 'no model'}"
        ),
        failed_step="converge" if bad else None,
    )
    if bad:
        raise errors.PromotionFailed("converge", outcome.reason, outcome=outcome)
    return outcome


def _serves_another_config(replica: Replica, key: ApiKey, model: str, config: Any) -> bool:
    """Whether `replica` serves `model` with another config than the record's `config` (the agent's
    comparison; one call). A record without one has nothing to compare; a replica that does not
    answer gets the load, which says why it fails."""
    if not config:
        return False
    try:
        with connect(replica, key, timeout_s=10.0) as client:
            served = client.model_config(model)
    except errors.TritonOpsError:
        return True
    return bool(state.served_config_differences(config, served))


def _config_on_disk(repository: Path, model: str) -> dict[str, Any]:
    """A hand-written record has no `config`: the config.pbtxt on disk (it carries the pin)."""
    path = repository / model / state.CONFIG_FILE
    try:
        return state.config_json(path.read_text(encoding="utf-8"), where=str(path))
    except OSError as error:
        raise errors.InputError(f"{path}: cannot read the model's config ({error.strerror})") from None
