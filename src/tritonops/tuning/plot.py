"""The picture `tune` leaves beside its numbers (`tune.png`): throughput against p99 for every
measured variant at every concurrency level, the budget as a vertical line, the current config and
the winner marked. Points right of the line missed the budget; the winner is the highest point left
of it. Rendered with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonops.tuning import search as tuning_search
from tritonops.tuning.measure import Measurement

PLOT_FILE = "tune.png"
# (marker, colour) of the highlighted points.
MARK_STYLES = {"current": ("s", "tab:orange"), "winner": ("*", "tab:green")}


@dataclass(frozen=True)
class Mark:
    """One highlighted point: its role (current or winner), label, p99 (ms) and throughput (inf/s)."""

    role: str
    label: str
    p99_ms: float
    throughput: float


def figure(search: tuning_search.Search, model: str) -> Any:
    """The matplotlib Figure: one dot per measured (variant, concurrency), the budget line, and
    the baseline and winner marked with their labels (at the level each counts at)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(figsize=(8, 5))
    within_x: list[float] = []
    within_y: list[float] = []
    over_x: list[float] = []
    over_y: list[float] = []
    for measurement in search.measurements:
        for point in measurement.points:
            inside = point.p99_ms <= search.budget_ms
            (within_x if inside else over_x).append(point.p99_ms)
            (within_y if inside else over_y).append(point.throughput)
    axes.scatter(within_x, within_y, s=18, color="tab:blue", label="variant within the budget", gid="within")
    axes.scatter(
        over_x, over_y, s=18, color="tab:grey", alpha=0.6, label="variant over the budget", gid="over"
    )
    axes.axvline(
        search.budget_ms, color="tab:red", linestyle="--", label=f"p99 budget {search.budget_ms:g} ms"
    )
    for mark in marks(search):
        shape, colour = MARK_STYLES[mark.role]
        axes.scatter(
            [mark.p99_ms],
            [mark.throughput],
            s=160,
            marker=shape,
            color=colour,
            zorder=3,
            label=f"{mark.role}: {mark.label}",
            gid=mark.role,
        )
    axes.set_xlabel("p99 latency (ms)")
    axes.set_ylabel("throughput (inferences/s)")
    axes.set_title(f"tritonops tune {model}: {search.strategy} search, {len(search.results)} measurements")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def marks(search: tuning_search.Search) -> list[Mark]:
    """The current config, then the winner (when a variant met the budget), at the level shown."""
    found: list[Mark] = []
    if isinstance(search.baseline, Measurement):
        point = search.baseline.shown(search.budget_ms)
        found.append(Mark("current", search.baseline.variant.label(), point.p99_ms, point.throughput))
    best = search.best
    if best is not None:
        point = best.shown(search.budget_ms)
        found.append(Mark("winner", best.variant.label(), point.p99_ms, point.throughput))
    return found


def write(search: tuning_search.Search, model: str, target: Path) -> Path:
    import matplotlib.pyplot as plt

    """Save the figure at `target`, whole or not at all (a temporary file renamed into place)."""
    fig = figure(search, model)
    partial = target.with_name(f".{target.name}.partial")
    try:
        fig.savefig(partial, dpi=110, format="png")
        os.replace(partial, target)
    finally:
        plt.close(fig)
        partial.unlink(missing_ok=True)
    return target
