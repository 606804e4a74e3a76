"""tune.png: throughput against p99 for every measured point, the budget line, the current config
and the winner marked; drawn from a quick search replayed on the recorded MLP grid."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from tests.tuning.conftest import load_grid
from tritonops.tuning import plot as tuning_plot
from tritonops.tuning import search as tuning_search

BUDGET_MS = 45.0


@pytest.fixture(scope="module")
def found():
    grid = load_grid()
    return tuning_search.quick(grid.space, grid.replay(), BUDGET_MS)


@pytest.fixture
def axes(found):
    fig = tuning_plot.figure(found, "mlp")
    yield fig.axes[0]
    plt.close(fig)


def _dots(axes, gid):
    (collection,) = [c for c in axes.collections if c.get_gid() == gid]
    return [tuple(xy) for xy in collection.get_offsets()]


def test_every_measured_point_is_a_dot_on_the_side_of_the_budget_it_fell(found, axes):
    within, over = _dots(axes, "within"), _dots(axes, "over")
    points = [(p.p99_ms, p.throughput) for m in found.measurements for p in m.points]
    assert sorted(within + over) == sorted(points)
    assert within and all(p99 <= BUDGET_MS for p99, _ in within)
    assert all(p99 > BUDGET_MS for p99, _ in over)


def test_the_budget_is_a_vertical_line_and_the_winner_the_highest_dot_left_of_it(found, axes):
    (line,) = axes.get_lines()
    assert set(line.get_xdata()) == {BUDGET_MS}
    (winner,) = _dots(axes, "winner")
    best = found.best.shown(BUDGET_MS)
    assert winner == (best.p99_ms, best.throughput)
    assert winner[1] == max(throughput for _, throughput in _dots(axes, "within"))
    baseline = found.baseline.shown(BUDGET_MS)
    assert _dots(axes, "current") == [(baseline.p99_ms, baseline.throughput)]
    labels = axes.get_legend_handles_labels()[1]
    assert f"winner: {found.best.variant.label()}" in labels


def test_without_a_winner_only_the_current_config_is_marked(found):
    missed = tuning_search.Search(found.strategy, 0.001, found.results)
    fig = tuning_plot.figure(missed, "mlp")
    try:
        gids = {c.get_gid() for c in fig.axes[0].collections}
    finally:
        plt.close(fig)
    assert "winner" not in gids and "current" in gids


def test_the_file_is_a_whole_png_with_no_partial_file_left(found, tmp_path):
    target = tuning_plot.write(found, "mlp", tmp_path / tuning_plot.PLOT_FILE)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == [tuning_plot.PLOT_FILE]
