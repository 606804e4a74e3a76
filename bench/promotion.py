"""Benchmark: promotion and rollback on two local replicas under load from 8 clients.

For the sample model (`linear`) and the MLP: seconds from start to committed beside the raw Triton
load of the same widening on the same replicas (target: promotion <= raw load + 1 s); rollback
(target < 3 s, < 1 s with --keep-previous); failed requests (target 0); p99 during the swap vs
steady (target 1.2x), beside the same ratio during Triton's own raw load: on a small machine the
load competes with the replicas for the CPU whoever sends it. Prints a table, writes bench/results/promotion.json and plots the latency timeline across
one promotion (promotion.png)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tritonops.promotion import chain, fleet, state, traffic
from tritonops.promotion import replicas as replicas_module
from tritonops.repository import checksums, example_repository
from tritonops.runtime import control

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("linear", "mlp")
RUNS = 3
TARGETS = {"promotion_over_raw_s": 1.0, "rollback_s": 3.0, "rollback_keep_previous_s": 1.0, "failed": 0}


def build_repository(root: Path) -> Path:
    """The sample repository with both models committed at version 1 (`mlp` by the promotion tool)."""
    repository = root / "models"
    example_repository.build(repository)
    committed = state.effective(repository)
    for model in MODELS:
        if model in committed:
            continue
        config = (repository / model / "config.pbtxt").read_text()
        record = state.Record(
            model, 1, digest=checksums.version_digest(repository / model / "1"), source="sample"
        )
        state.commit(repository, model, record, state.config_with_pin(config, [1]))
    return repository


def candidate(repository: Path, sources: Path, model: str, version: int) -> Path:
    """A candidate source: version 1's files as a new version (the load is what is measured)."""
    target = sources / model / str(version)
    shutil.copytree(repository / model / "1", target)
    return target


def raw_load(
    found: list[replicas_module.Replica],
    key: replicas_module.ApiKey,
    repository: Path,
    model: str,
    *,
    manifest: bool = False,
) -> tuple[float, float | None]:
    """Triton alone: the same widening load (committed + a new version) on every replica at once,
    under the same 8 clients as the promotion (on a small machine they compete with the load for
    the CPU), then narrowed back and the folder removed. Seconds until every replica had loaded it.

    With `manifest`, the version's checksum manifest is written beside it first, as the promotion's
    stage does: a file that changes in the model folder makes Triton treat the model as modified
    and build its config again (with the local Python-based ORT backend that runs auto-complete in
    a new stub), which is part of what a promotion's load pays.

    Also returns p99 during that load against steady p99: what Triton's own load does to latency
    on this machine, the baseline for the promotion's swap ratio."""
    folder = repository / model / "99"
    shutil.copytree(repository / model / "1", folder)
    if manifest:
        checksums.manifest_path(folder).write_text(checksums.manifest_text(checksums.file_digests(folder)))
    config = state.config_json((repository / model / "config.pbtxt").read_text())
    record = state.effective(repository)[model]

    def load(replica: replicas_module.Replica) -> str:
        with replicas_module.connect(replica, key) as client:
            return f"{fleet.load_pinned(client, model, config, [*record.pin, 99], deadline_s=120):.2f} s"

    try:
        with traffic.Traffic(found, model, key=key) as running:
            running.wait_for(300)
            time.sleep(1.0)
            running.mark("raw start")
            started = time.perf_counter()
            results = fleet.each(found, load)
            seconds = time.perf_counter() - started
            running.mark("raw end")
            time.sleep(1.0)
        report = running.report()
        ratio = report.swap(report.mark("raw start"), report.mark("raw end"))["ratio"]
        assert not fleet.failures(results), fleet.summary(results)
        fleet.narrow_and_verify(found, key, model, config, record.pin, record.version)
    finally:
        shutil.rmtree(folder)
        checksums.manifest_path(folder).unlink(missing_ok=True)
    return seconds, ratio


def seconds_to_committed(outcome: chain.Outcome) -> float:
    total = 0.0
    for step in outcome.steps:
        total += step.seconds
        if step.name == "commit":
            break
    return total


def under_traffic(found, key, model: str, run) -> tuple[chain.Outcome, traffic.TrafficReport]:
    marks: list[str] = []
    with traffic.Traffic(found, model, key=key) as running:
        running.wait_for(300)
        time.sleep(1.0)

        def progress(step: str, message: str) -> None:
            ended = message.startswith(("ok:", "failed:", "skipped:", "degraded:"))
            running.mark(f"{step} {'end' if ended else 'start'}")
            marks.append(step)

        outcome = run(progress)
        time.sleep(1.0)
    return outcome, running.report()


def window(report: traffic.TrafficReport) -> dict[str, Any]:
    starts = [m.at_s for m in report.marks if m.label.endswith("start")]
    ends = [m.at_s for m in report.marks if m.label.endswith("end")]
    return report.swap(min(starts), max(ends))


def measure(model: str, found, key, repository: Path, sources: Path, versions) -> dict[str, Any]:
    raw, raw_staged, promoted, committed, rollbacks, kept, swaps, failed, timeline = (
        [],
        [],
        [],
        [],
        [],
        [],
        [],
        0,
        None,
    )
    common = {"repository": repository, "replicas": found, "key": key, "model": model}
    raw_ratios: list[float] = []
    for run in range(RUNS):
        seconds, ratio = raw_load(found, key, repository, model)
        raw.append(seconds)
        raw_ratios += [ratio] if ratio is not None else []
        raw_staged.append(raw_load(found, key, repository, model, manifest=True)[0])
        version = next(versions)
        source = candidate(repository, sources, model, version)
        outcome, report = under_traffic(
            found,
            key,
            model,
            lambda p, v=version, s=source: chain.promote(version=v, source=str(s), progress=p, **common),
        )
        promoted.append(outcome.seconds)
        committed.append(seconds_to_committed(outcome))
        swaps.append(window(report))
        failed += len(report.failed)
        if run == 0:
            timeline = report
        outcome, report = under_traffic(found, key, model, lambda p: chain.rollback(progress=p, **common))
        rollbacks.append(outcome.seconds)
        swaps.append(window(report))
        failed += len(report.failed)
        version = next(versions)
        source = candidate(repository, sources, model, version)
        chain.promote(version=version, source=str(source), keep_previous=True, **common)
        outcome, report = under_traffic(found, key, model, lambda p: chain.rollback(progress=p, **common))
        kept.append(outcome.seconds)
        swaps.append(window(report))
        failed += len(report.failed)
    ratios = [s["ratio"] for s in swaps if s["ratio"] is not None]
    return {
        "raw_load_s": raw,
        "raw_load_with_manifest_s": raw_staged,
        "promote_to_committed_s": committed,
        "promote_total_s": promoted,
        "rollback_s": rollbacks,
        "rollback_keep_previous_s": kept,
        "median": {
            "raw_load_s": statistics.median(raw),
            "raw_load_with_manifest_s": statistics.median(raw_staged),
            "promote_to_committed_s": statistics.median(committed),
            "promotion_over_raw_s": statistics.median(committed) - statistics.median(raw),
            "rollback_s": statistics.median(rollbacks),
            "rollback_keep_previous_s": statistics.median(kept),
            "p99_swap_over_steady": statistics.median(ratios) if ratios else None,
            "p99_raw_load_over_steady": statistics.median(raw_ratios) if raw_ratios else None,
        },
        "failed": failed,
        "swaps": swaps,
        "timeline": timeline.timeline(bucket_s=0.1) if timeline else [],
        "marks": [{"at_s": m.at_s, "label": m.label} for m in timeline.marks] if timeline else [],
    }


def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="tritonops-bench-promotion-"))
    work_dir = scratch / "work"
    results: dict[str, Any] = {"benchmark": "promotion", "cpus": os.cpu_count(), "replicas": 2, "clients": 8}
    try:
        repository = build_repository(scratch)
        current = control.up(
            "local",
            work_dir=work_dir,
            replicas=2,
            repository=repository,
            port_offset=_port_offset(),
            set_values=("server.loadModels={linear,mlp}",),
        )
        if not current.all_ready:
            print(control.logs(work_dir, None, 30))
            return 1
        found = [
            replicas_module.Replica(f"replica-{r.index}", r.url.removeprefix("http://"), r.grpc_address)
            for r in current.replicas
        ]
        key = replicas_module.ApiKey(current.api_header, current.api_key())
        versions = iter(range(2, 1000))
        for model in MODELS:
            results[model] = measure(model, found, key, repository, scratch / "sources", versions)
    finally:
        control.down(work_dir)
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"promotion on 2 local replicas, 8 clients inferring throughout, {RUNS} runs, {os.cpu_count()} CPUs (medians)"
    )
    print(
        f"{'model':<8}{'raw load':>10}{'+manifest':>10}{'promote':>10}{'over raw':>10}{'rollback':>10}"
        f"{'rb kept':>9}{'failed':>8}{'p99 x':>7}{'raw p99 x':>10}"
    )
    meets = True
    for model in MODELS:
        m = results[model]["median"]
        print(
            f"{model:<8}{m['raw_load_s']:>9.2f}s{m['raw_load_with_manifest_s']:>9.2f}s"
            f"{m['promote_to_committed_s']:>9.2f}s{m['promotion_over_raw_s']:>9.2f}s"
            f"{m['rollback_s']:>9.2f}s{m['rollback_keep_previous_s']:>8.2f}s{results[model]['failed']:>8}"
            f"{m['p99_swap_over_steady'] or 0:>7.2f}{m['p99_raw_load_over_steady'] or 0:>10.2f}"
        )
        meets &= (
            m["promotion_over_raw_s"] <= TARGETS["promotion_over_raw_s"]
            and m["rollback_s"] < TARGETS["rollback_s"]
            and m["rollback_keep_previous_s"] < TARGETS["rollback_keep_previous_s"]
            and results[model]["failed"] == TARGETS["failed"]
        )
    results["targets"] = TARGETS
    results["meets_targets"] = meets
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "promotion.json").write_text(json.dumps(results, indent=2) + "\n")
    _plot(results, RESULTS / "promotion.png")
    print(
        f"{'meets' if meets else 'MISSES'} the targets; figures in {RESULTS / 'promotion.json'} and promotion.png"
    )
    return 0


def _port_offset() -> int:
    """TRITONOPS_PORT_OFFSET, else the first offset from 33000 up at which both replicas' ports are free."""
    if os.environ.get("TRITONOPS_PORT_OFFSET"):
        return int(os.environ["TRITONOPS_PORT_OFFSET"])
    for offset in range(33000, 40000, 100):
        wanted = [port + offset + 10 * index for index in range(2) for port in (8000, 8001, 8002)]
        with contextlib.ExitStack() as stack:
            try:
                for port in wanted:
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
        return offset
    raise RuntimeError("no free port range for two replicas")


def _plot(results: dict[str, Any], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panes = plt.subplots(len(MODELS), 1, figsize=(8, 3.2 * len(MODELS)), sharex=False)
    for axes, model in zip(panes, MODELS, strict=True):
        rows = results[model]["timeline"]
        axes.plot([r["t_s"] for r in rows], [r["p99_ms"] for r in rows], label="p99 per 100 ms")
        axes.plot([r["t_s"] for r in rows], [r["p50_ms"] for r in rows], label="p50 per 100 ms", alpha=0.6)
        for mark in results[model]["marks"]:
            if mark["label"].endswith("start") and mark["label"].split()[0] in ("load", "commit", "narrow"):
                axes.axvline(mark["at_s"], color="grey", linestyle=":", linewidth=1)
                axes.annotate(
                    mark["label"].split()[0],
                    (mark["at_s"], axes.get_ylim()[1]),
                    fontsize=7,
                    rotation=90,
                    va="top",
                )
        axes.set_title(f"{model}: latency across a promotion (8 clients, 2 replicas)")
        axes.set_xlabel("seconds")
        axes.set_ylabel("ms")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
