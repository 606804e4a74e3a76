"""Benchmark: `tritonops tune`, quick against exhaustive, on the local runtime with real perf_analyzer.

For each model (the serving bench's MLP 512-2048-2048-2048-16, and a ResNet-style conv net on
32x32 images, onnx_models.resnet_like), served by the real Triton through the embedded runtime with
the default config (max_batch_size 16, one CPU instance, no dynamic batching):
1. the exhaustive search, every variant measured (its own budget is unlimited, so each one is
   judged afterwards);
2. the budget: the default config's p99 as the exhaustive run measured it;
3. the quick search, live, under that budget;
4. the quick search replayed on the exhaustive grid (a search is a pure function of its answers),
   the like-for-like comparison the tests assert on the recorded grids.
Prints and writes per model: measurements, wall time, best throughput within the budget, the uplift
over the default config, quick's share of exhaustive's best; and the served/raw figures of the local
ONNX Runtime backend that bench/serving.py last wrote (before and after its optimisation). Writes
bench/results/tune.json and tune.png (throughput against p99, both searches, budget and winners).

    .venv/bin/python bench/tune.py [--models mlp,resnet_like] [--write-grids]

--write-grids also stores each exhaustive grid as tests/tuning/resources/<model>_grid.json, the
recorded data the search tests replay. Takes about 12 minutes per model on two cores; run it on a
quiet machine (the load average is recorded with the figures).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.runtime.conftest import free_port_offset  # noqa: E402
from tests.tuning.conftest import load_grid  # noqa: E402

from tritonops import errors  # noqa: E402
from tritonops.repository import config_generator  # noqa: E402
from tritonops.runtime import control  # noqa: E402
from tritonops.triton import onnx_models  # noqa: E402
from tritonops.tuning import measure, run, search  # noqa: E402
from tritonops.tuning.measure import Measurement, result_from_dict  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GRIDS = ROOT / "tests" / "tuning" / "resources"
MLP_SIZES = (512, 2048, 2048, 2048, 16)
CONCURRENCY = (16,)
SETTINGS = measure.Settings(CONCURRENCY, interval_ms=1000, stability_percentage=50, max_trials=10)
UNLIMITED_MS = 1e9

MODELS: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "mlp": (
        f"MLP {'-'.join(map(str, MLP_SIZES))}",
        lambda path: onnx_models.mlp(path, sizes=MLP_SIZES),
    ),
    "resnet_like": (
        "ResNet-style conv net (3x32x32, 16 channels, 2 residual blocks)",
        lambda path: onnx_models.resnet_like(path),
    ),
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--write-grids", action="store_true", help="store each exhaustive grid for the tests")
    parser.add_argument("--max-measurements", type=int, help="cap both searches (a smoke run of this script)")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; use {', '.join(MODELS)}")
    figures, failed = {}, {}
    for name in names:
        try:
            figures[name] = bench_model(name, args.write_grids, args.max_measurements)
        except _Unmeasured as error:  # one model's bad luck does not discard the others' figures
            print(f"[{name}] {error}", flush=True)
            failed[name] = str(error)
    document = {
        "benchmark": "tune",
        "recorded": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
        "settings": {"concurrency": list(CONCURRENCY), **_settings()},
        "models": figures,
        "failed": failed,
        "local_backend": _backend_overhead(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tune.json").write_text(json.dumps(document, indent=2) + "\n")
    if figures:
        _plot(figures, RESULTS / "tune.png")
    _print(document)
    print(f"figures in {RESULTS / 'tune.json'} and {RESULTS / 'tune.png'}")
    return 0


def bench_model(name: str, write_grid: bool, cap: int | None) -> dict[str, Any]:
    title, build = MODELS[name]
    scratch = Path(tempfile.mkdtemp(prefix=f"tritonops-bench-tune-{name}-"))
    work_dir = scratch / "work"
    try:
        model_file = build(scratch / "models" / name / "1" / "model.onnx")
        options = config_generator.GenerateOptions(name=name, max_batch_size=16, instances=1)
        (scratch / "models" / name / "config.pbtxt").write_text(
            config_generator.generate(model_file, options)
        )
        current = control.up(
            "local",
            work_dir=work_dir,
            repository=scratch / "models",
            port_offset=free_port_offset(1),
            set_values=(
                f"server.loadModels={{{name}}}",
                "server.committedState.enabled=false",
                "agent.enabled=false",
            ),
        )
        if not current.all_ready:
            raise SystemExit(control.logs(work_dir, None, 30))
        target = run.local_target(work_dir, None, None, None)
        exhaustive, exhaustive_s = _search(name, target, search.EXHAUSTIVE, UNLIMITED_MS, scratch / "ex", cap)
        baseline = exhaustive.baseline
        if not isinstance(baseline, Measurement):
            raise _Unmeasured(f"the default config could not be measured ({baseline.reason}); run again")
        budget = math.ceil(baseline.lowest_p99_ms * 10) / 10  # the default config meets its own p99
        quick, quick_s = _search(name, target, search.QUICK, budget, scratch / "quick", cap)
        grid = _grid(name, title, scratch / "ex", exhaustive_s)
        if write_grid and cap is None:
            (GRIDS / f"{name}_grid.json").write_text(json.dumps(grid, indent=1) + "\n")
        judged = search.Search(search.EXHAUSTIVE, budget, exhaustive.results, exhaustive.limited)
        replayed = _replayed(grid, budget, scratch) if cap is None else None  # a capped grid has holes
    finally:
        control.down(work_dir)
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "model": title,
        "p99_budget_ms": budget,
        "exhaustive": _figures(judged, exhaustive_s),
        "quick_live": _figures(quick, quick_s),
        "quick_replayed_on_the_exhaustive_grid": _figures(replayed, None) if replayed else None,
        "points": {"exhaustive": _points(judged), "quick_live": _points(quick)},
    }


class _Unmeasured(Exception):
    """A model's default config gave no measurement, so there is no budget to compare at."""


def _search(
    name: str, target: run.Target, strategy: str, budget: float, out: Path, cap: int | None
) -> tuple[search.Search, float]:
    request = run.Request(
        name, budget_ms=budget, concurrency=CONCURRENCY, strategy=strategy, out_dir=out, settings=SETTINGS,
        max_measurements=cap, allow_smaller_batch=True,  # perf_analyzer's requests carry one item each
    )  # fmt: skip
    started = time.monotonic()
    try:
        found = run.tune(
            request, target, say=lambda line: print(f"[{name} {strategy}] {line}", flush=True)
        ).search
    except errors.BudgetNotMet:  # nothing met the budget: tune.json still holds every measurement
        document = json.loads((out / "tune.json").read_text())
        found = search.Search(
            strategy, budget, tuple(result_from_dict(entry) for entry in document["results"])
        )
    return found, time.monotonic() - started


def _replayed(grid: dict[str, Any], budget: float, scratch: Path) -> search.Search:
    """The quick search answered from the exhaustive grid, as tests/tuning/test_search.py does."""
    path = scratch / "grid.json"
    path.write_text(json.dumps(grid))
    recorded = load_grid(path)
    return search.quick(recorded.space, recorded.replay(), budget)


def _figures(found: search.Search, seconds: float | None) -> dict[str, Any]:
    best, baseline = found.best, found.baseline
    document: dict[str, Any] = {"measurements": len(found.results), "stopped_early": found.limited}
    if seconds is not None:
        document["wall_s"] = round(seconds, 1)
    if isinstance(baseline, Measurement):
        point = baseline.shown(found.budget_ms)
        document["default"] = {"throughput": round(point.throughput, 1), "p99_ms": round(point.p99_ms, 2)}
    if best is not None:
        point = best.shown(found.budget_ms)
        document["best"] = {
            "variant": best.variant.label(),
            "throughput": round(point.throughput, 1),
            "p99_ms": round(point.p99_ms, 2),
        }
        before = baseline.throughput_within(found.budget_ms) if isinstance(baseline, Measurement) else None
        document["uplift_over_default"] = round(point.throughput / before, 2) if before else None
    return document


def _points(found: search.Search) -> list[list[float]]:
    return [[round(p.p99_ms, 2), round(p.throughput, 1)] for m in found.measurements for p in m.points]


def _grid(name: str, title: str, out: Path, seconds: float) -> dict[str, Any]:
    document = json.loads((out / "tune.json").read_text())
    return {
        "note": (
            f"Recorded by bench/tune.py --write-grids: the exhaustive grid of `tritonops tune` on {title} "
            "(default config max_batch_size 16, 1 CPU instance, no dynamic batching) served by the local "
            "runtime (Triton 2.51, the Python-based ONNX Runtime backend), measured with perf_analyzer over "
            "HTTP at concurrency 16, 1 s windows, p99 stabilisation in a 50 % band, at most 10 windows. "
            "Replayed by tests/tuning/test_search.py."
        ),
        "recorded": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
        "seconds": round(seconds),
        "model": name,
        "concurrency": list(CONCURRENCY),
        "settings": _settings(),
        "original_config": json.loads((out / "original-config.json").read_text()),
        "results": document["results"],
    }


def _settings() -> dict[str, int]:
    return {
        "interval_ms": SETTINGS.interval_ms,
        "stability_percentage": SETTINGS.stability_percentage,
        "max_trials": SETTINGS.max_trials,
    }


def _backend_overhead() -> dict[str, Any] | None:
    """What bench/serving.py last measured of the local backend: served over raw at batch C and at
    the batch Triton executed (its module docstring defines both)."""
    path = RESULTS / "serving.json"
    if not path.is_file():
        return None
    document = json.loads(path.read_text())
    return {
        key: document[key]
        for key in ("served_over_raw", "served_over_raw_at_equal_batch", "backend_overhead")
        if key in document
    }


def _print(document: dict[str, Any]) -> None:
    print(f"tritonops tune, quick vs exhaustive, local runtime ({document['machine']['cpus']} cores)")
    header = (
        f"{'model':<12}{'search':<30}{'meas.':>6}{'wall s':>8}{'best inf/s':>12}{'p99 ms':>8}{'uplift':>8}"
    )
    print(header)
    for name, figures in document["models"].items():
        print(f"{name:<12}budget p99 <= {figures['p99_budget_ms']} ms (the default config's p99)")
        for search_name in ("exhaustive", "quick_live", "quick_replayed_on_the_exhaustive_grid"):
            row = figures[search_name]
            if row is None:
                continue
            best = row.get("best") or {}
            print(
                f"{'':<12}{search_name:<30}{row['measurements']:>6}{row.get('wall_s', ''):>8}"
                f"{best.get('throughput', '-'):>12}{best.get('p99_ms', '-'):>8}"
                f"{row.get('uplift_over_default') or '-':>8}"
            )
        exhaustive_best = (figures["exhaustive"].get("best") or {}).get("throughput")
        for search_name in ("quick_live", "quick_replayed_on_the_exhaustive_grid"):
            if figures[search_name] is None:
                continue
            quick_best = (figures[search_name].get("best") or {}).get("throughput")
            if exhaustive_best and quick_best:
                share = quick_best / exhaustive_best
                measured = figures[search_name]["measurements"] / figures["exhaustive"]["measurements"]
                print(
                    f"{'':<12}{search_name}: {share:.0%} of exhaustive's best with {measured:.0%} of its measurements"
                )


def _plot(figures: dict[str, Any], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, panes = plt.subplots(1, len(figures), figsize=(7 * len(figures), 4.8), squeeze=False)
    for axes, model in zip(panes[0], figures.values(), strict=True):
        for key, colour, label in (
            ("exhaustive", "tab:grey", "exhaustive"),
            ("quick_live", "tab:blue", "quick (live)"),
        ):
            points = model["points"][key]
            axes.scatter(
                [p[0] for p in points], [p[1] for p in points], s=16, color=colour, alpha=0.7, label=label
            )
            best = model[key].get("best")
            if best:
                axes.scatter(
                    [best["p99_ms"]],
                    [best["throughput"]],
                    s=170,
                    marker="*",
                    color=colour,
                    edgecolor="black",
                    zorder=3,
                    label=f"{label} best: {best['variant']}",
                )
        axes.axvline(
            model["p99_budget_ms"],
            color="tab:red",
            linestyle="--",
            label=f"budget {model['p99_budget_ms']} ms",
        )
        axes.set_title(model["model"], fontsize=10)
        axes.set_xlabel("p99 latency (ms)")
        axes.set_ylabel("throughput (inferences/s)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
