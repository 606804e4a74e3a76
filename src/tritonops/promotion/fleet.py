"""What a promotion does to every replica at once: one thread per replica, a deadline per replica,
one result per replica (never an exception that hides the others).

A load always says the config it means (after an override, a plain load may keep it or read the
file again: tests/triton/test_config_override.py), pinned:
- widen: the committed pin plus the candidate. One real load; the committed version keeps serving meanwhile.
- narrow: to a pin that drops versions; Triton drops them without reloading the kept ones.
Both are the same call with a different pin. Each replica gets one load of a model at a time (two
concurrent loads of one model are reported to load it twice); across processes the repository's
promotion lock serialises promotions, and the agent stands back while the lock is live.

Interrupted (Ctrl-C, or SIGTERM from a CI job's timeout or a Job's deletion) while replicas work,
`each` tells its workers to stop and waits only for what cannot be abandoned: a load call already
sent finishes (its answer comes when the server is done; a restore load sent beside it would load
the model twice, behaviour 14), but no worker keeps polling for readiness or retrying until its
deadline. Then the interrupt goes on to the chain, which restores every replica.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tritonops import errors
from tritonops.promotion import smoke
from tritonops.promotion.replicas import ApiKey, Replica, connect
from tritonops.triton import client as triton_client

log = logging.getLogger(__name__)

DEFAULT_LOAD_DEADLINE_S = 120.0
# A restore may have to wait for a load that timed out on our side but still runs on the server.
RESTORE_DEADLINE_S = 180.0
READY_POLL_S = 0.05


@dataclass(frozen=True)
class ReplicaResult:
    """What one replica did in one step: ok or not, how long, and what happened (or why not)."""

    replica: str
    ok: bool
    seconds: float
    detail: str
    # Requests a rejected candidate answered on this replica before it was dropped (None: not read).
    candidate_answered: int | None = None

    def as_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "replica": self.replica,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }
        if self.candidate_answered is not None:
            document["candidate_answered"] = self.candidate_answered
        return document


def each(replicas: Sequence[Replica], work: Callable[[Replica], str]) -> list[ReplicaResult]:
    """Run `work(replica)` on every replica in parallel; its return value is the detail. A
    TritonOpsError becomes a failed result naming the replica; results come in replica order."""

    def one(replica: Replica) -> ReplicaResult:
        started = time.monotonic()
        try:
            detail = work(replica)
        except errors.TritonOpsError as error:
            return ReplicaResult(replica.name, False, time.monotonic() - started, _local(str(error), replica))
        return ReplicaResult(replica.name, True, time.monotonic() - started, detail)

    if not replicas:
        return []
    cancelled = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(replicas)) as pool:
        futures = []
        try:
            for replica in replicas:
                context = contextvars.copy_context()
                context.run(_CANCELLED.set, cancelled)
                futures.append(pool.submit(context.run, one, replica))
            # Wait in short steps: a signal the kernel hands to a worker thread only sets Python's
            # flag, and the main thread runs its handler when it next runs Python code, which a
            # wait without a timeout would put off until every worker is done.
            pending = set(futures)
            while pending:
                _, pending = concurrent.futures.wait(pending, timeout=SIGNAL_CHECK_S)
            return [future.result() for future in futures]
        except BaseException:
            # The pool's exit waits for every worker: make them stop at their next poll.
            cancelled.set()
            raise


# How often the main thread wakes while workers run, to run a pending signal's handler.
SIGNAL_CHECK_S = 0.2
# The cancel event of the `each` call a worker thread runs for (None outside one).
_CANCELLED: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "tritonops_fleet_cancelled", default=None
)


def _pause(seconds: float) -> None:
    """Sleep between polls, unless the run was interrupted: then stop this worker (its replica's
    result says so; the interrupt itself reaches the caller from the main thread)."""
    event = _CANCELLED.get()
    if event is None:
        time.sleep(seconds)
    elif event.wait(seconds):
        raise errors.TritonUnavailable("stopped: the run was interrupted")


def _local(message: str, replica: Replica) -> str:
    """An error as the replica's own line says it: without "on <this replica>" (the line names it)."""
    for where in (replica.name, replica.http_address, replica.grpc_address):
        if where:
            message = message.replace(f" on {where}: ", ": ").replace(f" on {where}", "")
            message = message.removeprefix(f"{where}: ")
    return message


def failures(results: Sequence[ReplicaResult]) -> list[ReplicaResult]:
    return [result for result in results if not result.ok]


def summary(results: Sequence[ReplicaResult]) -> str:
    """`r0, r1: why; r2: why else` for the failed ones (replicas that failed alike share a line)."""
    grouped: dict[str, list[str]] = {}
    for result in failures(results):
        grouped.setdefault(result.detail, []).append(result.replica)
    return "; ".join(f"{', '.join(names)}: {detail}" for detail, names in grouped.items())


def with_pin(config: Mapping[str, Any], versions: Sequence[int]) -> dict[str, Any]:
    """A ModelConfig JSON pinned to exactly `versions`."""
    pinned = dict(config)
    pinned["version_policy"] = {"specific": {"versions": sorted(set(versions))}}
    return pinned


def load_pinned(
    client: triton_client.Client,
    model: str,
    config: Mapping[str, Any],
    pin: Sequence[int],
    *,
    deadline_s: float,
) -> float:
    """Load `model` with `config` pinned to `pin` and wait until every pinned version is ready;
    returns the seconds it took. ModelLoadError (Triton refused it) or TritonUnavailable (no answer
    within the deadline) otherwise."""
    started = time.monotonic()
    client.load(model, config=with_pin(config, pin), timeout_s=deadline_s)
    wanted = sorted(set(pin))
    _check_versions_seen(client, model, wanted)
    while True:
        ready = client.ready_versions(model)
        if set(wanted) <= set(ready):
            return time.monotonic() - started
        if time.monotonic() - started >= deadline_s:
            raise errors.TritonUnavailable(
                f"{model} on {client.repository_address}: versions {wanted} not all ready "
                f"{deadline_s:g} s after the load (ready: {ready or 'none'})"
            )
        _pause(READY_POLL_S)


def wait_until_not_loading(client: triton_client.Client, model: str, deadline_s: float) -> None:
    """Wait while the replica is loading `model` already (its agent converging it just before the
    lock was taken): two concurrent loads of one model are reported to load it twice (behaviour
    14). A load still running at the deadline is left to the widening load's own deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and any(
        entry.get("name") == model and entry.get("state") == "LOADING" for entry in client.repository_index()
    ):
        _pause(READY_POLL_S)


def _check_versions_seen(client: triton_client.Client, model: str, wanted: Sequence[int]) -> None:
    """The load has returned: a pinned version the server's index does not list at all is one
    whose folder it cannot see (it serves another repository than the one staged into), and will
    never become ready: say so now rather than wait out the deadline."""
    seen = {
        int(entry["version"])
        for entry in client.repository_index()
        if entry.get("name") == model and str(entry.get("version", "")).isdigit()
    }
    unseen = [version for version in wanted if version not in seen]
    if unseen:
        raise errors.ModelLoadError(
            f"{model} on {client.repository_address}: version(s) {unseen} not in the model repository "
            f"this server reads (after the load it lists {sorted(seen) or 'none'}): does it serve the "
            "repository given with --repository?"
        )


def _model_names(index: Sequence[dict[str, Any]]) -> list[str]:
    """The models a repository index lists, without its top-level dot-folders (the work area
    `.tritonops`, which Triton lists but never loads)."""
    return sorted({name for name in (str(entry.get("name")) for entry in index) if not name.startswith(".")})


def check_reachable(replicas: Sequence[Replica], key: ApiKey, model: str, *, timeout_s: float = 10.0) -> None:
    """Before anything changes: every replica answers, accepts the key on its repository API and
    knows `model`. The error names each replica that does not, and says nothing was changed."""

    def probe(replica: Replica) -> str:
        with connect(replica, key, timeout_s=timeout_s) as client:
            if not client.live():
                raise errors.TritonUnavailable(f"{replica.http_address}: not live")
            index = client.repository_index()
        if not any(entry.get("name") == model for entry in index):
            raise errors.InputError(
                f"{model}: not in the model repository that {replica.name} serves (its index lists "
                f"{', '.join(_model_names(index)) or 'nothing'})"
            )
        return "reachable"

    results = each(replicas, probe)
    bad = failures(results)
    if not bad:
        return
    forbidden = any("repository API refused" in r.detail for r in bad)
    unknown = all("not in the model repository" in r.detail for r in bad)
    message = "; ".join(f"replica {r.replica}: {r.detail}" for r in bad) + "; nothing was changed"
    if forbidden:
        message += " (check the key: $TRITONOPS_API_KEY or --api-key-file, and --api-header)"
        raise errors.RepositoryApiForbidden(message)
    if unknown:
        raise errors.InputError(message)
    raise errors.TritonUnavailable(message)


@dataclass(frozen=True)
class Fallback:
    """Where a replica goes back the moment the candidate fails on any replica: the committed
    config and pin (config None: nothing is committed, the model is unloaded)."""

    config: Mapping[str, Any] | None
    pin: Sequence[int]


@dataclass(frozen=True)
class Widened:
    """A widening load and check on every replica: per replica results, and the requests the
    candidate answered on the replicas that dropped it at once because it failed somewhere."""

    loads: list[ReplicaResult]
    checks: list[ReplicaResult]
    answered: dict[str, int | None]


def widen_and_check(
    replicas: Sequence[Replica],
    key: ApiKey,
    model: str,
    config: Mapping[str, Any],
    pin: Sequence[int],
    candidate: int,
    *,
    deadline_s: float,
    golden: smoke.Golden | None = None,
    fallback: Fallback | None = None,
    reload: bool = False,
) -> Widened:
    """On every replica: load `config` pinned to `pin` (the committed pin plus the candidate), then
    at once the smoke check of the candidate. A candidate higher than the committed version takes
    unversioned traffic as soon as it is ready, so every moment it serves unverified counts: the
    check follows its own replica's load immediately, and the moment the candidate fails anywhere
    (a load or a check) every replica whose load has returned drops it again (narrows to
    `fallback`) without waiting for the others, after reading how many requests it answered.
    The caller's restore then verifies every replica on the committed state. `reload`: the config
    changes (a config promotion), so every replica loads it even where the pin serves already, and
    one that failed goes back to the fallback config at once."""
    loads: dict[str, ReplicaResult] = {}
    check_seconds: dict[str, float] = {}
    answered: dict[str, int | None] = {}
    failed = threading.Event()

    def drop(client: triton_client.Client, replica: Replica, checked: bool) -> None:
        if fallback is None or (candidate in fallback.pin and not reload):
            return
        if candidate not in fallback.pin:
            try:
                counts = client.request_counts(model).get(candidate)
                answered[replica.name] = max(0, counts.answered - int(checked)) if counts else 0
            except errors.TritonOpsError:
                answered[replica.name] = None
        try:
            if fallback.config is None:
                client.unload(model)
            else:
                client.load(
                    model, config=with_pin(fallback.config, fallback.pin), timeout_s=RESTORE_DEADLINE_S
                )
        except errors.TritonOpsError as error:
            log.warning(
                "%s: could not drop the candidate at once (%s); the restore retries", replica.name, error
            )

    def work(replica: Replica) -> str:
        with connect(replica, key, timeout_s=deadline_s) as client:
            started = time.monotonic()
            try:
                wait_until_not_loading(client, model, deadline_s)
                if not reload and set(pin) <= set(client.ready_versions(model)):
                    # Already loaded (a retained version): the same pin again would be a reload.
                    detail = f"already serves {sorted(set(pin))}: no load needed"
                    seconds = 0.0
                else:
                    seconds = load_pinned(client, model, config, pin, deadline_s=deadline_s)
                    detail = f"loaded {model} pinned to {sorted(set(pin))}"
            except errors.TritonOpsError as error:
                failed.set()
                loads[replica.name] = ReplicaResult(
                    replica.name, False, time.monotonic() - started, _local(str(error), replica)
                )
                raise errors.VerificationFailed("not checked: the load failed") from error
            loads[replica.name] = ReplicaResult(replica.name, True, seconds, detail)
            if failed.is_set():
                drop(client, replica, checked=False)
                raise errors.VerificationFailed("not checked: the candidate failed on another replica")
            started = time.monotonic()
            try:
                return smoke.run(client, model, candidate, replica=replica.name, golden=golden).describe()
            except errors.TritonOpsError:
                failed.set()
                drop(client, replica, checked=True)
                raise
            finally:
                check_seconds[replica.name] = time.monotonic() - started

    # Each result's seconds are its check's own (the work also timed the load before it).
    checks = [
        dataclasses.replace(result, seconds=check_seconds.get(result.replica, 0.0))
        for result in each(replicas, work)
    ]
    return Widened([loads[replica.name] for replica in replicas], checks, answered)


def narrow_and_verify(
    replicas: Sequence[Replica],
    key: ApiKey,
    model: str,
    config: Mapping[str, Any],
    pin: Sequence[int],
    serving: int,
    *,
    deadline_s: float = RESTORE_DEADLINE_S,
    golden: smoke.Golden | None = None,
) -> list[ReplicaResult]:
    """On every replica: load `config` pinned to `pin` (dropping the other versions, or reloading
    the pinned ones a failed or timed-out load left unready), then check that `serving` answers.
    A replica that does not answer (restarting) is retried until the deadline."""

    def work(replica: Replica) -> str:
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                return _narrow_one(
                    replica, key, model, config, pin, serving, deadline - time.monotonic(), golden
                )
            except errors.TemporaryError:
                if time.monotonic() + 1.0 >= deadline:
                    raise
                _pause(1.0)

    return each(replicas, work)


def _narrow_one(
    replica: Replica,
    key: ApiKey,
    model: str,
    config: Mapping[str, Any],
    pin: Sequence[int],
    serving: int,
    deadline_s: float,
    golden: smoke.Golden | None,
) -> str:
    with connect(replica, key, timeout_s=deadline_s) as client:
        load_pinned(client, model, config, pin, deadline_s=deadline_s)
        served = client.ready_versions(model)
        stray = sorted(set(served) - set(pin))
        if stray:
            raise errors.VerificationFailed(f"{model} still serves {stray} beside the pin {sorted(set(pin))}")
        checked = smoke.run(client, model, serving, replica=replica.name, golden=golden)
        return f"pinned to {sorted(set(pin))}; {checked.describe()}"


def unload(replicas: Sequence[Replica], key: ApiKey, model: str) -> list[ReplicaResult]:
    """Unload `model` everywhere (a first promotion's failure: nothing was committed to serve)."""

    def work(replica: Replica) -> str:
        with connect(replica, key) as client:
            client.unload(model)
        return f"unloaded {model} (nothing is committed for it)"

    return each(replicas, work)


def candidate_answers(
    replicas: Sequence[Replica], key: ApiKey, model: str, candidate: int, *, own_requests: int = 1
) -> dict[str, int | None]:
    """Requests each replica's candidate version answered since it was loaded, less the smoke
    checks' own (`own_requests` per replica); None where it could not be read. Read it before the
    candidate is dropped: Triton forgets a version's statistics when it unloads it."""

    def read(replica: Replica) -> str:
        with connect(replica, key, timeout_s=10.0) as client:
            counts = client.request_counts(model).get(candidate)
        return str(max(0, counts.answered - own_requests) if counts else 0)

    return {r.replica: int(r.detail) if r.ok else None for r in each(replicas, read)}


@dataclass(frozen=True)
class Served:
    """What one replica serves of a model: ready versions, or why it could not be read."""

    replica: str
    versions: tuple[int, ...] | None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "versions": None if self.versions is None else list(self.versions),
            "error": self.error or None,
        }


def served(replicas: Sequence[Replica], key: ApiKey, models: Sequence[str]) -> dict[str, list[Served]]:
    """{model: what each replica serves of it}, one repository index read per replica."""
    indexes: dict[str, list[dict[str, Any]] | str] = {}

    def read(replica: Replica) -> str:
        with connect(replica, key, timeout_s=10.0) as client:
            indexes[replica.name] = client.repository_index()
        return "read"

    for result in each(replicas, read):
        if not result.ok:
            indexes[result.replica] = result.detail
    table: dict[str, list[Served]] = {}
    for model in models:
        rows = []
        for replica in replicas:
            index = indexes[replica.name]
            if isinstance(index, str):
                rows.append(Served(replica.name, None, index))
                continue
            versions = sorted(
                int(entry["version"])
                for entry in index
                if entry.get("name") == model
                and entry.get("state") == "READY"
                and str(entry.get("version", "")).isdigit()
            )
            rows.append(Served(replica.name, tuple(versions)))
        table[model] = rows
    return table
