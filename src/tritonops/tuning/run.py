"""`tritonops tune`: check, then measure variants of one model's serving config on one running
Triton with perf_analyzer, restore the original config, and write what was found.

Remote-first and restart-free: each variant is a load with a config override on the server as it
runs, so nothing restarts and the model repository is not touched (it is only read, when at hand,
for the model's ONNX graph and its config.pbtxt). Every variant changes what that server answers
while the run lasts: tune one replica taken out of its Service, or the local runtime, never the
whole fleet.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from tritonops import errors
from tritonops.promotion import lock as promotion_lock
from tritonops.repository import configs, signatures
from tritonops.repository.findings import FindingSink
from tritonops.runtime import control
from tritonops.triton import client as triton_client
from tritonops.tuning import checkpoint as tuning_checkpoint
from tritonops.tuning import measure as tuning_measure
from tritonops.tuning import report as tuning_report
from tritonops.tuning import search as tuning_search
from tritonops.tuning import session as tuning_session
from tritonops.tuning import space as tuning_space
from tritonops.tuning.measure import Measurement, Result
from tritonops.tuning.space import Variant

log = logging.getLogger(__name__)

Say = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    """The one server a run tunes: its HTTP address, gRPC address (repository calls go there when
    known), the restricted-API header and key, the repository when at hand, a name for messages,
    and its metrics page when known."""

    http_address: str
    grpc_address: str | None
    api_header: str | None
    api_key: str | None
    repository: Path | None
    where: str
    # Its metrics page, read for GPU memory (tuning/measure.py); None: GPU memory is not checked.
    metrics_url: str | None = None


@dataclass(frozen=True)
class Request:
    model: str
    budget_ms: float
    concurrency: tuple[int, ...]
    strategy: str = tuning_search.QUICK
    max_measurements: int | None = None
    out_dir: Path = Path("tune")
    settings: tuning_measure.Settings | None = None
    max_instances: int = tuning_space.DEFAULT_MAX_INSTANCES
    kinds: tuple[str, ...] | None = None
    # Continue the run whose checkpoint is in out_dir (tuning/checkpoint.py).
    resume: bool = False
    # Try max_batch_size below the current one (every client sends smaller batches).
    allow_smaller_batch: bool = False
    # The command line as given (`tune MODEL ...`), for the resume hints; empty from the API.
    command: tuple[str, ...] = ()


def local_target(
    work_dir: Path, api_header: str | None, api_key: str | None, repository: Path | None
) -> Target:
    """Replica 0 of the local runtime in `work_dir`, with the runtime's own key unless one is given."""
    current = control.running_status(
        work_dir, otherwise="give --endpoint http://HOST:PORT[?grpc=PORT] (a port-forwarded pod)"
    )
    replica = current.replicas[0]
    if api_key is None and current.api_key_file:
        api_header, api_key = current.api_header, current.api_key()
    where = f"replica {replica.index} of the local runtime in {current.work_dir}"
    return Target(
        replica.url.removeprefix("http://"),
        replica.grpc_address,
        api_header,
        api_key,
        repository or current.repository,
        where,
        replica.metrics_url,
    )


def tune(request: Request, target: Target, *, say: Say) -> tuning_report.Outcome:
    """Check, measure, restore, write. Raises InputError (nothing changed) for bad input,
    BudgetNotMet when no variant met the budget (results written, original restored),
    RestoreFailed when the original could not be loaded back."""
    _check_request(request)
    _refuse_during_a_promotion(target.repository)
    settings = request.settings or tuning_measure.Settings(request.concurrency)
    with triton_client.Client(
        target.http_address,
        grpc_address=target.grpc_address,
        api_header=target.api_header,
        api_key=target.api_key,
    ) as client:
        config = tuning_session.check(client, request.model, where=target.where)
        signature, base_config = _from_repository(target.repository, request.model, client)
        space = tuning_space.build(
            config,
            concurrency=request.concurrency,
            signature=signature,
            max_instances=request.max_instances,
            kinds=request.kinds,
            allow_smaller_batch=request.allow_smaller_batch,
        )
        if not settings.shapes:
            settings = dataclasses.replace(settings, shapes=tuning_measure.shapes_for(config))
        if settings.metrics_url is None and target.metrics_url is not None:
            settings = dataclasses.replace(settings, metrics_url=target.metrics_url)
        planned = tuning_search.planned(space, request.strategy, request.max_measurements)
        inputs = tuning_checkpoint.Inputs(
            request.model,
            json_format.MessageToDict(config, preserving_proto_field_name=True),
            request.concurrency,
            settings,
            tuple(client.ready_versions(request.model)),
        )
        recorded = _recorded(request, inputs, say)
        tuning_report.remove_outputs(request.out_dir)
        if tuning_space.KIND_GPU in space.kinds and settings.metrics_url is None:
            say(
                "note: GPU instances are tried but GPU memory is not checked: give --metrics "
                "http://HOST:8002/metrics (the pod's metrics port, port-forwarded) to keep variants within "
                "--gpu-memory-budget"
            )
        say(
            f"warning: every variant is loaded on {target.where} ({target.http_address}), so it changes "
            f"what this server answers while tune runs (up to {planned} measurements); tune one replica "
            "taken out of its Service, or the local runtime, never the whole fleet"
        )
        seen: list[Result] = []
        session = tuning_session.Session(client, request.model, config, saved=request.out_dir)
        try:
            with session:
                measurer = tuning_measure.Measurer(client, space, settings, session.apply)

                def measure(variant: Variant) -> Result:
                    return recorded[variant] if variant in recorded else measurer(variant)

                def keep(results: list[Result]) -> None:
                    fresh = [result for result in results if result.variant not in recorded]
                    tuning_checkpoint.write(request.out_dir, inputs, [*recorded.values(), *fresh])

                strategy = (
                    tuning_search.quick
                    if request.strategy == tuning_search.QUICK
                    else tuning_search.exhaustive
                )
                found = strategy(
                    space,
                    measure,
                    request.budget_ms,
                    max_measurements=request.max_measurements,
                    starting=_starting(say, recorded),
                    finished=_finished(say, request.budget_ms, seen, recorded, keep),
                )
        except BaseException as error:
            # Interrupted, or the server stopped answering: the original is back (or RestoreFailed
            # says how to load it by hand); what was measured so far is still written.
            if seen and not isinstance(error, errors.RestoreFailed):
                partial = tuning_search.Search(request.strategy, request.budget_ms, tuple(seen), limited=True)
                _write(request, target, space, partial, planned, session, base_config)
            if isinstance(error, KeyboardInterrupt):
                kept = (
                    f"; {len(seen)} measurement(s) in {request.out_dir}: {resume_hint(request)} goes on "
                    "from there"
                    if seen
                    else ""
                )
                say(f"interrupted: the original config is back{kept}")
            raise
    outcome = _write(request, target, space, found, planned, session, base_config)
    if found.limited:
        larger = 2 * (request.max_measurements or 1)
        say(
            f"stopped at --max-measurements {request.max_measurements}; to go on from here (what "
            f"{tuning_checkpoint.path(request.out_dir)} holds is not measured again): "
            f"{resume_hint(request, max_measurements=larger)}"
        )
    else:
        tuning_checkpoint.remove(request.out_dir)
    if found.best is None:
        raise errors.BudgetNotMet(_not_met(found, request, outcome))
    return outcome


def resume_hint(request: Request, *, max_measurements: int | None = None) -> str:
    """The command that continues this run: the one given, with --resume (and a new limit)."""
    if not request.command:
        return "the same command with --resume" + (
            f" and --max-measurements {max_measurements}" if max_measurements else ""
        )
    words: list[str] = []
    skip = False
    for word in request.command:
        if skip:
            skip = False
            continue
        if max_measurements and word == "--max-measurements":
            skip = True
            continue
        if word == "--resume" or (max_measurements and word.startswith("--max-measurements=")):
            continue
        words.append(word)
    if max_measurements:
        words += ["--max-measurements", str(max_measurements)]
    return f"`{shlex.join(['tritonops', *words, '--resume'])}`"


def _check_request(request: Request) -> None:
    """Bad numbers and an unusable output folder, before the server is asked anything."""
    if not request.budget_ms > 0:
        raise errors.InputError(f"--p99-budget {request.budget_ms:g}: give a budget in milliseconds above 0")
    if request.max_measurements is not None and request.max_measurements < 1:
        raise errors.InputError(f"--max-measurements {request.max_measurements}: must be at least 1")
    if request.strategy not in tuning_search.STRATEGIES:
        raise errors.InputError(f"--search {request.strategy}: use quick or exhaustive")
    out = request.out_dir
    if out.exists() and not out.is_dir():
        raise errors.InputError(f"--out {out}: is a file; give a folder")
    tuning_report.refuse_foreign_files(out)
    tuning_checkpoint.refuse_unless_resuming(out, request.resume)
    parent = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise errors.InputError(
            f"--out {out}: cannot create it under {parent} ({error.strerror or error})"
        ) from None


def _refuse_during_a_promotion(repository: Path | None) -> None:
    """A promotion holding the repository's lock loads this model too: its loads and tune's would
    replace each other's configs, and tune's restore would undo a config it commits."""
    if repository is None:
        return
    held = promotion_lock.inspect(Path(repository))
    if held is not None:
        raise errors.InputError(
            f"{held.describe()}: a promotion is running on this repository; tune once it is done "
            "(a stale lock: `tritonops unlock`)"
        )


def _from_repository(repository: Path | None, model: str, client: triton_client.Client) -> tuple[Any, Any]:
    """The served version's ONNX signature and the model's config.pbtxt, when the repository is at
    hand (else None, None: the config the server reports decides what the model allows)."""
    if repository is None:
        return None, None
    folder = Path(repository) / model
    parsed = (
        configs.read_config(folder / "config.pbtxt", FindingSink())
        if (folder / "config.pbtxt").is_file()
        else None
    )
    versions = client.ready_versions(model)
    signature = None
    if versions and parsed is not None and parsed.backend == "onnxruntime":
        model_file = folder / str(versions[-1]) / (parsed.model_filename or "model.onnx")
        try:
            signature = signatures.onnx_signature(model_file)
        except signatures.SignatureError as error:
            log.warning(
                "%s: cannot read its graph (%s); the served config decides what it allows", model_file, error
            )
    return signature, parsed.config if parsed is not None else None


def _recorded(request: Request, inputs: tuning_checkpoint.Inputs, say: Say) -> dict[Variant, Result]:
    """The checkpoint's results by variant when resuming (checked against this run's inputs)."""
    if not request.resume:
        return {}
    results = tuning_checkpoint.read(request.out_dir, inputs)
    say(
        f"resuming: {len(results)} measurement(s) from {tuning_checkpoint.path(request.out_dir)} are "
        "not measured again"
    )
    return tuning_checkpoint.by_variant(results)


def _starting(say: Say, recorded: dict[Variant, Result]) -> tuning_search.Starting:
    def show(index: int, planned: int, variant: Variant) -> None:
        if variant not in recorded:
            say(f"measurement {index} of {planned}: loading {variant.label()}")

    return show


def _finished(
    say: Say,
    budget_ms: float,
    seen: list[Result],
    recorded: dict[Variant, Result],
    keep: Callable[[list[Result]], None],
) -> tuning_search.Finished:
    def show(index: int, planned: int, result: Result, best: Measurement | None) -> None:
        seen.append(result)
        keep(seen)
        source = " (from the checkpoint)" if result.variant in recorded else ""
        best_text = (
            f"{best.variant.label()}: {tuning_report.describe_result(best, budget_ms)}"
            if best
            else "none within budget"
        )
        say(
            f"measurement {index} of {planned}: {result.variant.label()} -> "
            f"{tuning_report.describe_result(result, budget_ms)}{source} (best so far: {best_text})"
        )

    return show


def _write(
    request: Request,
    target: Target,
    space: tuning_space.Space,
    found: tuning_search.Search,
    planned: int,
    session: tuning_session.Session,
    base_config: Any,
) -> tuning_report.Outcome:
    outcome = tuning_report.Outcome(
        model=request.model,
        where=f"{target.where} ({target.http_address})",
        search=found,
        concurrency=request.concurrency,
        planned=planned,
        restore_differs=tuple(session.differs or ()),
        notes=tuning_report.notes_for(found, space),
    )
    return tuning_report.write(outcome, request.out_dir, space, base_config)


def _not_met(found: tuning_search.Search, request: Request, outcome: tuning_report.Outcome) -> str:
    where = f"measurements in {request.out_dir}; the server runs its original config again"
    closest = found.closest
    if closest is None:
        reasons = "; ".join(f"{f.variant.label()}: {f.reason}" for f in found.failures[:2])
        return f"{request.model}: no variant could be measured ({reasons}); {where}"
    point = closest.shown(request.budget_ms)
    return (
        f"{request.model}: no variant met p99 <= {request.budget_ms:g} ms; the closest was "
        f"{closest.variant.label()} with p99 {point.p99_ms:.1f} ms ({point.throughput:.1f} inf/s at "
        f"concurrency {point.concurrency}); raise the budget or lower --concurrency; {where}"
    )
