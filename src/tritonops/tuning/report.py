"""What `tune` leaves behind: `tune.json` (inputs, every measurement in order, the winner, the
uplift), `measurements.csv` (one row per measurement and concurrency level) and the winner as
`config.pbtxt`, a config the model folder can take as it is (`tritonops repo validate` accepts it),
and `tune.png`, throughput against p99 with the budget and the winner marked (tuning/plot.py).

The uplift is the winner's throughput over the baseline's (the config the server ran before), both
within the same budget; when the baseline itself misses the budget there is no uplift to state.
"""

from __future__ import annotations

import csv
import json
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tritonops import errors
from tritonops.repository import checksums
from tritonops.tuning import measure as tuning_measure
from tritonops.tuning import plot as tuning_plot
from tritonops.tuning import search as tuning_search
from tritonops.tuning import space as tuning_space
from tritonops.tuning.measure import Failure, Measurement, Result, result_as_dict

JSON_FILE = "tune.json"
CSV_FILE = "measurements.csv"
CONFIG_FILE = "config.pbtxt"
WINNER_FILE = "winner's config"  # its key in `files`
FAILED = {
    tuning_measure.LOAD: "failed to load",
    tuning_measure.MEASURE: "failed to measure",
    tuning_measure.GPU_MEMORY: "over the GPU memory budget",
}
CSV_COLUMNS = (
    "measurement",
    "variant",
    "baseline",
    "max_batch_size",
    "dynamic_batching",
    "max_queue_delay_microseconds",
    "preferred_batch_size",
    "instances",
    "kind",
    "status",
    "concurrency",
    "throughput",
    "p50_ms",
    "p99_ms",
    "within_budget",
    "gpu_memory_used",
    "reason",
)


@dataclass(frozen=True)
class Outcome:
    """A finished (or interrupted) run: where, under which budget, what it measured and found."""

    model: str
    where: str
    search: tuning_search.Search
    concurrency: tuple[int, ...]
    planned: int
    # The fields the served config differs in from the original after the restore ([] = none).
    restore_differs: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def budget_ms(self) -> float:
        return self.search.budget_ms

    @property
    def winner(self) -> Measurement | None:
        return self.search.best

    @property
    def uplift(self) -> float | None:
        """Winner over baseline throughput within the budget; None when either misses it."""
        best, baseline = self.search.best, self.search.baseline
        if best is None or not isinstance(baseline, Measurement):
            return None
        before = baseline.throughput_within(self.budget_ms)
        after = best.throughput_within(self.budget_ms)
        return after / before if before and after else None

    @property
    def smaller_batch(self) -> bool:
        """The winner's max_batch_size is below the current one (tuned with --allow-smaller-batch)."""
        best = self.search.best
        return (
            best is not None and 0 < best.variant.max_batch_size < self.search.baseline.variant.max_batch_size
        )

    @property
    def within_noise(self) -> bool:
        """The winner gains less over the current config than a search counts as a gain."""
        return self.uplift is not None and self.uplift < 1 + tuning_search.MIN_GAIN

    def as_dict(self) -> dict[str, Any]:
        best, closest, baseline = self.search.best, self.search.closest, self.search.baseline
        return {
            "model": self.model,
            "where": self.where,
            "search": self.search.strategy,
            "p99_budget_ms": self.budget_ms,
            "concurrency": list(self.concurrency),
            "measurements": len(self.search.results),
            "planned": self.planned,
            "stopped_at_max_measurements": self.search.limited,
            "baseline": _summary(baseline, self.budget_ms),
            "winner": _summary(best, self.budget_ms) if best else None,
            "closest": None if best or closest is None else _summary(closest, self.budget_ms),
            "uplift": round(self.uplift, 3) if self.uplift is not None else None,
            "restored": {"original_config": True, "differs_in": list(self.restore_differs)},
            "notes": list(self.notes),
            "files": self.files,
            "results": [result_as_dict(result) for result in self.search.results],
        }

    def describe(self) -> str:
        """The human summary `tune` prints."""
        search, budget = self.search, self.budget_ms
        failed = len(search.failures)
        lines = [
            f"{self.model} on {self.where}: {len(search.results)} measurement(s), {search.strategy} search"
            + (f", {failed} variant(s) failed (skipped)" if failed else "")
            + (" (stopped at --max-measurements)" if search.limited else "")
        ]
        lines.append(f"  current config: {_line(search.baseline, budget)}")
        best = search.best
        if best is not None:
            lines.append(f"  best within p99 <= {budget:g} ms: {_line(best, budget)}")
            if self.uplift is not None:
                lines.append(f"  uplift over the current config at the same budget: {self.uplift:.2f}x")
            elif isinstance(search.baseline, Failure):
                lines.append("  uplift: none to state (the current config could not be measured)")
            else:
                lines.append("  uplift: none to state (the current config does not meet the budget)")
        lines += [f"  note: {note}" for note in self.notes]
        if self.restore_differs:
            lines.append(
                "  warning: after the restore the served config differs from the original in: "
                + ", ".join(self.restore_differs)
            )
        else:
            lines.append("  the server runs its original config again")
        for name, path in self.files.items():
            lines.append(f"  {name}: {path}")
        if self.within_noise:
            lines.append(
                f"  the winner is within measurement noise of the current config (x{self.uplift:.2f}, "
                f"under {tuning_search.MIN_GAIN:.0%} more): not worth a promotion"
            )
        elif WINNER_FILE in self.files and not (best is not None and best.baseline):
            lines.append(
                f"  apply it on every replica (verified, committed, undone by `tritonops rollback "
                f"{shlex.quote(self.model)}`): "
                f"`{promote_command(self.model, self.files[WINNER_FILE], smaller_batch=self.smaller_batch)}`"
            )
        return "\n".join(lines)


def promote_command(model: str, config: str, *, smaller_batch: bool = False) -> str:
    """The command that applies a winner's config.pbtxt through the promotion chain (give it the
    --repository and --endpoints, or --service, of the deployment, as for any promotion); a winner
    below the current max_batch_size needs --allow-smaller-batch there too."""
    flag = " --allow-smaller-batch" if smaller_batch else ""
    return f"tritonops promote {shlex.quote(model)} --config {shlex.quote(config)}{flag}"


def describe_result(result: Result, budget_ms: float) -> str:
    """`X inf/s, p99 Y ms` for a measurement; why it failed for a failure."""
    if isinstance(result, Failure):
        return f"{FAILED[result.stage]} (skipped): {result.reason}"
    point = result.shown(budget_ms)
    within = "" if point.p99_ms <= budget_ms else " (over budget)"
    return f"{point.throughput:.1f} inf/s, p99 {point.p99_ms:.1f} ms{within}" + (
        f" at concurrency {point.concurrency}" if len(result.points) > 1 else ""
    )


def notes_for(search: tuning_search.Search, space: tuning_space.Space) -> tuple[str, ...]:
    """What a user applying the winner must know."""
    best = search.best
    notes = []
    if best is not None and 0 < best.variant.max_batch_size < space.baseline.max_batch_size:
        notes.append(
            f"the winner's max_batch_size {best.variant.max_batch_size} is below the current "
            f"{space.baseline.max_batch_size} (--allow-smaller-batch): requests carrying more items than "
            "that would be refused, so promote it with --allow-smaller-batch only if no client sends more"
        )
    if best is not None and best.baseline:
        notes.append("the current config is the best measured: config.pbtxt is the current config")
    return tuple(notes)


def refuse_foreign_files(out_dir: Path) -> None:
    """tune replaces the files it writes in --out (config.pbtxt among them): a folder that holds
    one of them without the tune.json a run writes first is someone else's (a model folder), and
    is refused before anything is written or removed there."""
    if (out_dir / JSON_FILE).exists():
        return
    found = [name for name in (CSV_FILE, CONFIG_FILE, tuning_plot.PLOT_FILE) if (out_dir / name).exists()]
    if found:
        raise errors.InputError(
            f"--out {out_dir}: holds {', '.join(found)} but no {JSON_FILE}, so tune did not write it (a "
            "model folder?); give a folder of its own, which tune would overwrite"
        )


def remove_outputs(out_dir: Path) -> None:
    """What an earlier run wrote into `out_dir`, so that no file there outlives the run it came
    from (a winner's config.pbtxt beside a tune.json that names none)."""
    for name in (JSON_FILE, CSV_FILE, CONFIG_FILE, tuning_plot.PLOT_FILE):
        (out_dir / name).unlink(missing_ok=True)


def write(
    outcome: Outcome,
    out_dir: Path,
    space: tuning_space.Space,
    base_config: Any | None = None,
) -> Outcome:
    """Write tune.json, measurements.csv and (when a variant met the budget) config.pbtxt; return
    the outcome with the files named."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"measurements (JSON)": str(out_dir / JSON_FILE), "measurements (CSV)": str(out_dir / CSV_FILE)}
    winner = outcome.winner
    if winner is not None:
        text = space.config_text(winner.variant, base_config)
        checksums.atomic_write(out_dir / CONFIG_FILE, text)
        files[WINNER_FILE] = str(out_dir / CONFIG_FILE)
    if outcome.search.measurements:
        files["plot (throughput vs p99)"] = str(
            tuning_plot.write(outcome.search, outcome.model, out_dir / tuning_plot.PLOT_FILE)
        )
    outcome = replace(outcome, files=files)
    checksums.atomic_write(out_dir / JSON_FILE, json.dumps(outcome.as_dict(), indent=2) + "\n")
    with (out_dir / CSV_FILE).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in csv_rows(outcome.search):
            writer.writerow(row)
    return outcome


def csv_rows(search: tuning_search.Search) -> list[dict[str, Any]]:
    rows = []
    for index, result in enumerate(search.results, start=1):
        variant = result.variant
        common = {
            "measurement": index,
            "variant": variant.label(),
            "baseline": result.baseline,
            "max_batch_size": variant.max_batch_size,
            "dynamic_batching": variant.dynamic_batching,
            "max_queue_delay_microseconds": variant.queue_delay_us if variant.dynamic_batching else "",
            "preferred_batch_size": variant.preferred_batch_size or "",
            "instances": variant.instances,
            "kind": variant.kind,
        }
        if isinstance(result, Failure):
            rows.append({**common, "status": f"failed {result.stage}", "reason": result.reason})
            continue
        for point in result.points:
            rows.append(
                {
                    **common,
                    "status": "measured",
                    "concurrency": point.concurrency,
                    "throughput": round(point.throughput, 3),
                    "p50_ms": round(point.p50_ms, 3),
                    "p99_ms": round(point.p99_ms, 3),
                    "within_budget": point.p99_ms <= search.budget_ms,
                    "gpu_memory_used": "" if result.gpu_memory is None else round(result.gpu_memory, 4),
                }
            )
    return rows


def _summary(result: Result, budget_ms: float) -> dict[str, Any]:
    document: dict[str, Any] = {"variant": result.variant.as_dict(), "label": result.variant.label()}
    if isinstance(result, Measurement):
        document.update(result.shown(budget_ms).as_dict(), within_budget=result.within(budget_ms) is not None)
    else:
        document["failed"] = {"stage": result.stage, "reason": result.reason}
    return document


def _line(result: Result, budget_ms: float) -> str:
    return f"{result.variant.label()}: {describe_result(result, budget_ms)}"
