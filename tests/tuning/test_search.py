"""The search strategies, replayed on recorded and synthetic grids (a search is a pure function of
its measure(variant) callable, so these tests are deterministic and measure nothing).

The recorded grids (resources/<model>_grid.json, made by bench/tune.py --write-grids) are the
exhaustive grids of the MLP of bench/serving.py (twice: mlp_rerun is a later run, where batch 16
without a delay could not be measured) and of a ResNet-style conv net on the local runtime. On each, quick must reach at least 95 % of exhaustive's best throughput under the same
budget with at most a third of its measurements; on the MLP, the winner must beat the default
config by 2x at no more than the default's p99 (the conv net's uplift is reported by the bench)."""

from __future__ import annotations

import math

import pytest

from tests.tuning.conftest import RESOURCES, Replay, load_grid, served_config, synthetic
from tritonops.tuning import measure as tuning_measure
from tritonops.tuning import search as tuning_search
from tritonops.tuning import space as tuning_space
from tritonops.tuning.measure import Failure, Measurement
from tritonops.tuning.space import Variant

STRATEGIES = {"quick": tuning_search.quick, "exhaustive": tuning_search.exhaustive}


# Budgets per recorded grid: the default config's own p99 (None: the quality target's), and tighter
# ones down to where only a few variants meet them.
BUDGETS = {
    "mlp": {"default-p99": None, "60ms": 60.0, "45ms": 45.0, "35ms": 35.0},
    "mlp_rerun": {"default-p99": None, "60ms": 60.0, "45ms": 45.0, "35ms": 35.0},
    "resnet_like": {"default-p99": None, "17ms": 17.0, "16ms": 16.0},
}
GRID_BUDGETS = [(model, name) for model, budgets in BUDGETS.items() for name in budgets]


@pytest.fixture(scope="module", params=list(BUDGETS))
def grid(request):
    return load_grid(RESOURCES / f"{request.param}_grid.json")


@pytest.fixture(scope="module")
def mlp_grid():
    return load_grid(RESOURCES / "mlp_grid.json")


def _default_p99(grid) -> float:
    baseline = grid.results[grid.space.baseline]
    assert isinstance(baseline, Measurement)
    return baseline.lowest_p99_ms


@pytest.mark.parametrize(("model", "budget_name"), GRID_BUDGETS, ids=[f"{m}-{b}" for m, b in GRID_BUDGETS])
def test_quick_reaches_95_percent_of_exhaustive_with_a_third_of_the_measurements(model, budget_name):
    grid = load_grid(RESOURCES / f"{model}_grid.json")
    budget = BUDGETS[model][budget_name] or _default_p99(grid)
    full = tuning_search.exhaustive(grid.space, grid.replay(), budget)
    fast = tuning_search.quick(grid.space, grid.replay(), budget)
    assert len(full.results) == len(grid.results), "exhaustive measures the whole recorded grid"
    assert full.best is not None, f"nothing in the grid meets {budget} ms"
    assert fast.best is not None
    best, found = full.best.throughput_within(budget), fast.best.throughput_within(budget)
    assert found >= 0.95 * best, (fast.best.variant, full.best.variant)
    assert len(fast.results) <= len(full.results) / 3, [r.variant.label() for r in fast.results]


def test_the_winner_beats_the_default_by_2x_at_no_more_than_its_p99(mlp_grid):
    grid = mlp_grid
    budget = _default_p99(grid)
    found = tuning_search.quick(grid.space, grid.replay(), budget)
    baseline = found.baseline
    assert isinstance(baseline, Measurement) and baseline.variant == grid.space.baseline
    assert found.best is not None
    winner = found.best.within(budget)
    assert winner is not None and winner.p99_ms <= budget
    assert winner.throughput >= 2 * baseline.points[0].throughput


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_the_same_answers_give_the_same_sequence_of_measurements(grid, strategy):
    runs = [STRATEGIES[strategy](grid.space, (replay := grid.replay()), 60.0) for _ in range(2)]
    assert [r.variant for r in runs[0].results] == [r.variant for r in runs[1].results]
    assert replay.calls == [r.variant for r in runs[1].results], "each variant is measured once"


def test_the_recorded_grid_is_the_space_of_its_config(grid):
    """The fixture and the space agree: rebuilding the space from the recorded config gives exactly
    the recorded variants, so the replay never asks for one that was not measured."""
    assert set(grid.results) == {grid.space.baseline, *grid.space.variants()}


# --- synthetic grids -----------------------------------------------------------------------------


def _space(**options):
    return tuning_space.build(served_config(), concurrency=(16,), allow_smaller_batch=True, **options)


def _shaped(variant: Variant) -> tuple[float, float]:
    """A model where batching pays up to 8, a short delay helps a little, two instances help."""
    if variant.max_batch_size == 0 or not variant.dynamic_batching:
        return 100.0, 160.0
    throughput = 100.0 * min(variant.max_batch_size, 8) ** 0.8
    throughput *= {0: 1.0, 100: 1.05, 1000: 1.02, 5000: 0.9}[variant.queue_delay_us]
    throughput *= {1: 1.0, 2: 1.3, 4: 1.25}[variant.instances]
    throughput *= 1.01 if variant.preferred_batch_size else 1.0
    return throughput, 16_000 / throughput + variant.queue_delay_us / 1000


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_a_search_starts_with_the_baseline_and_reports_each_measurement(strategy):
    space = _space()
    replay = Replay(synthetic(space, _shaped))
    seen: list[tuple[str, int, int]] = []
    found = STRATEGIES[strategy](
        space,
        replay,
        100.0,
        starting=lambda index, planned, variant: seen.append(("start", index, planned)),
        finished=lambda index, planned, result, best: seen.append(("done", index, planned)),
    )
    assert replay.calls[0] == space.baseline and found.results[0].baseline
    planned = tuning_search.planned(space, strategy)
    assert seen[:2] == [("start", 1, planned), ("done", 1, planned)]
    assert len(seen) == 2 * len(found.results) and len(found.results) <= planned


def test_exhaustive_measures_every_variant_once_in_the_spaces_order():
    space = _space()
    replay = Replay(synthetic(space, _shaped))
    tuning_search.exhaustive(space, replay, 100.0)
    assert replay.calls == [space.baseline, *space.variants()]


def test_quick_finds_the_best_of_a_structured_grid_with_few_measurements():
    space = _space()
    full = tuning_search.exhaustive(space, Replay(synthetic(space, _shaped)), 100.0)
    fast = tuning_search.quick(space, Replay(synthetic(space, _shaped)), 100.0)
    assert fast.best is not None and full.best is not None
    assert fast.best.variant == full.best.variant == Variant(8, True, 100, 4, 2, "KIND_CPU")
    assert len(fast.results) <= len(full.results) / 3


def test_no_variant_within_the_budget_gives_no_best_and_names_the_closest():
    space = _space()
    found = tuning_search.quick(space, Replay(synthetic(space, _shaped)), 1.0)
    assert found.best is None
    closest = found.closest
    assert closest is not None
    assert closest.lowest_p99_ms == min(m.lowest_p99_ms for m in found.measurements)


def test_variants_that_fail_to_load_are_recorded_and_skipped():
    """Four instances do not load: both searches record the failures and still find the best."""
    space = _space()

    def score(variant: Variant) -> tuple[float, float] | str:
        return "out of memory" if variant.instances == 4 else _shaped(variant)

    full = tuning_search.exhaustive(space, Replay(synthetic(space, score)), 100.0)
    assert len(full.failures) == len(space.variants_for(4, "KIND_CPU"))
    assert all(isinstance(f, Failure) and f.reason == "out of memory" for f in full.failures)
    assert full.best is not None and full.best.variant.instances == 2
    fast = tuning_search.quick(space, Replay(synthetic(space, score)), 100.0)
    assert fast.best == full.best


def test_a_kind_that_does_not_load_ends_its_walk_and_the_next_kind_is_tried():
    space = _space(kinds=("KIND_GPU", "KIND_CPU"))

    def score(variant: Variant) -> tuple[float, float] | str:
        return "no GPUs are available" if variant.kind == "KIND_GPU" else _shaped(variant)

    replay = Replay(synthetic(space, score))
    found = tuning_search.quick(space, replay, 100.0)
    assert [v.kind for v in replay.calls].count("KIND_GPU") == 1
    assert found.best is not None and found.best.variant.kind == "KIND_CPU"


def test_a_variant_beyond_the_gpu_memory_budget_is_skipped_and_ends_the_walks_that_would_fill_more():
    """Memory grows with batch size and instances: on GPU, batch 16 or 4 instances are too full."""
    space = _space(kinds=("KIND_GPU",))
    table = synthetic(space, _shaped)
    for variant in table:
        if variant != space.baseline and (variant.max_batch_size >= 16 or variant.instances >= 4):
            table[variant] = Failure(variant, tuning_measure.GPU_MEMORY, "the fullest GPU is 97.0% used")
    replay = Replay(table)
    found = tuning_search.quick(space, replay, 100.0)
    assert found.best is not None and found.best.variant.max_batch_size == 8
    over = [r.variant for r in found.failures if r.stage == tuning_measure.GPU_MEMORY]
    assert over and all(v.max_batch_size >= 16 or v.instances >= 4 for v in over)
    assert [v for v in replay.calls if v.instances == 4] == [Variant(8, True, 0, None, 4, "KIND_GPU")], (
        "the first 4-instance variant over the budget ends that kind's walk over instance counts"
    )


def test_a_variant_perf_analyzer_cannot_measure_is_passed_over_where_a_walk_starts():
    space = _space()
    table = synthetic(space, _shaped)
    unstable = Variant(2, True, 0)
    table[unstable] = Failure(unstable, "measure", "no stable measurement")
    replay = Replay(table)
    found = tuning_search.quick(space, replay, 100.0)
    assert replay.calls[1:3] == [unstable, Variant(4, True, 0)]
    assert found.best is not None and found.best.variant.max_batch_size == 8


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_max_measurements_stops_the_search_there(strategy):
    space = _space()
    found = STRATEGIES[strategy](space, Replay(synthetic(space, _shaped)), 100.0, max_measurements=3)
    assert len(found.results) == 3 and found.limited
    assert tuning_search.planned(space, strategy, 3) == 3


def test_a_model_that_cannot_batch_varies_instances_until_they_stop_paying():
    space = tuning_space.build(
        served_config(
            'name: "fixed" platform: "onnxruntime_onnx" max_batch_size: 0 '
            'input [{ name: "input" data_type: TYPE_FP32 dims: [1, 4] }] '
            'output [{ name: "output" data_type: TYPE_FP32 dims: [1, 2] }] '
            "instance_group [{ count: 1 kind: KIND_CPU }]"
        ),
        concurrency=(16,),
        max_instances=16,
    )
    speed = {1: 100.0, 2: 180.0, 4: 181.0, 8: 170.0, 16: 160.0}
    replay = Replay(synthetic(space, lambda v: (speed[v.instances], 1600 / speed[v.instances])))
    found = tuning_search.quick(space, replay, 1000.0)
    assert [v.instances for v in replay.calls] == [1, 2, 4, 8], "two counts without a gain: 16 is not tried"
    assert found.best is not None and found.best.variant.instances == 4, "the best measured, gain or not"
    assert math.isclose(found.best.throughput_within(1000.0) or 0, 181.0)
