"""The search strategies of `tune`, as pure functions of a `measure(variant)` callable: given the
same answers they make the same measurements in the same order, so they are tested on recorded
data (tests/tuning/resources/) and run unchanged against a server.

Both measure the baseline (the original config) first and count it; the objective is throughput
subject to p99 <= budget, and the best is the measurement with the highest throughput within the
budget (ties: the first measured).

`exhaustive` measures every variant of the space. `quick` is a coordinate search along the
structure serving throughput usually has, at most len(batch sizes) + len(queue delays) + 1
measurements per instance count, where exhaustive needs about their product:
- per instance count (ascending, per kind), batch size with dynamic batching on and no queue
  delay, doubled from the smallest size (or the best so far) while throughput rises: it is
  roughly monotone in batch size until batches stop filling;
- then, at the best batch size, every queue delay: a delay trades latency for fuller batches, and
  the axis is short, so each is measured rather than guessed (under load its gain is not monotone);
- then, when a delay won, the next batch size up with it, if the walk has no measurement of that
  size without a delay (a delay fills larger batches, so it may be the best size after all);
- then, with a delay, a preferred batch size of half the maximum;
- more instances only while they gain (instances saturate the cores).
A step "gains" when its throughput within the budget beats the best by MIN_GAIN (noise is not a
gain); meeting the budget beats missing it, and between two that miss it the lower p99 gains.
Along batch size and instance count a walk stops after PATIENCE + 1 steps in a row without a gain,
so one noisy measurement does not end it. A variant that fails to load or to measure ends the
batch-size walk in that direction; where a walk starts, one that perf_analyzer could not measure
is passed over, and one that does not load (GPU instances on a server without them) or that fills a
GPU beyond the memory budget ends the walk over instance counts of that kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from tritonops.tuning import measure as tuning_measure
from tritonops.tuning import space as tuning_space
from tritonops.tuning.measure import Failure, Measurement, Result
from tritonops.tuning.space import Variant

QUICK, EXHAUSTIVE = "quick", "exhaustive"
STRATEGIES = (QUICK, EXHAUSTIVE)
# A step must beat the best by this much to count as a gain: perf_analyzer's stable windows still
# differ by a few percent from run to run.
MIN_GAIN = 0.02
# Steps along an axis (batch size, instance count) that may fail to gain before the walk along it
# stops: one noisy measurement must not end it.
PATIENCE = 1

# Called before each measurement (index from 1, planned total, variant) and after it (index,
# planned total, result, best within the budget so far).
Starting = Callable[[int, int, Variant], None]
Finished = Callable[[int, int, Result, Measurement | None], None]


@dataclass(frozen=True)
class Search:
    """What a search measured, in order (the baseline first), and what it found."""

    strategy: str
    budget_ms: float
    results: tuple[Result, ...]
    # The search stopped at --max-measurements before it was done.
    limited: bool = False

    @property
    def baseline(self) -> Result:
        return self.results[0]

    @property
    def measurements(self) -> list[Measurement]:
        return [result for result in self.results if isinstance(result, Measurement)]

    @property
    def failures(self) -> list[Failure]:
        return [result for result in self.results if isinstance(result, Failure)]

    @property
    def best(self) -> Measurement | None:
        """The highest throughput within the budget (the first measured on a tie), or None."""
        return best_within(self.measurements, self.budget_ms)

    @property
    def closest(self) -> Measurement | None:
        """When nothing meets the budget: the measurement with the lowest p99."""
        measured = self.measurements
        return min(measured, key=lambda m: m.lowest_p99_ms) if measured else None


def best_within(measured: list[Measurement], budget_ms: float) -> Measurement | None:
    best: Measurement | None = None
    for candidate in measured:
        throughput = candidate.throughput_within(budget_ms)
        if throughput is not None and (best is None or throughput > (best.throughput_within(budget_ms) or 0)):
            best = candidate
    return best


def planned(space: tuning_space.Space, strategy: str, max_measurements: int | None = None) -> int:
    """How many measurements a search makes at most (exact for exhaustive), baseline included."""
    if strategy == EXHAUSTIVE:
        total = 1 + len(space.variants())
    else:
        per_count = 1
        if space.batchable:
            # sizes, the other delays, the next size with a delay, a preferred size
            per_count = len(space.batch_sizes) + len(space.queue_delays_us) - 1 + 1 + 1
        total = 1 + per_count * len(space.instance_counts) * len(space.kinds)
    return min(total, max_measurements) if max_measurements else total


class _Limit(Exception):
    """--max-measurements reached."""


class _Run:
    """The measure callable as a search sees it: each variant measured once (a repeat returns the
    first answer), counted against the limit, and reported before and after."""

    def __init__(
        self,
        measure: tuning_measure.Measure,
        budget_ms: float,
        planned_total: int,
        limit: int | None,
        starting: Starting | None,
        finished: Finished | None,
    ) -> None:
        self.measure = measure
        self.budget_ms = budget_ms
        self.planned = planned_total
        self.limit = limit
        self.starting = starting
        self.finished = finished
        self.results: dict[Variant, Result] = {}
        self.order: list[Result] = []

    @classmethod
    def of(
        cls,
        strategy: str,
        space: tuning_space.Space,
        measure: tuning_measure.Measure,
        budget_ms: float,
        limit: int | None,
        starting: Starting | None,
        finished: Finished | None,
    ) -> _Run:
        """The run of `strategy` over `space`, its planned total counted as `planned` says."""
        return cls(measure, budget_ms, planned(space, strategy, limit), limit, starting, finished)

    def __call__(self, variant: Variant, *, baseline: bool = False) -> Measurement | None:
        """The measurement of `variant`, or None when it failed."""
        result = self.result(variant, baseline=baseline)
        return result if isinstance(result, Measurement) else None

    def result(self, variant: Variant, *, baseline: bool = False) -> Result:
        if variant in self.results:
            return self.results[variant]
        if self.limit is not None and len(self.order) >= self.limit:
            raise _Limit
        index = len(self.order) + 1
        if self.starting:
            self.starting(index, self.planned, variant)
        result = self.measure(variant)
        if baseline and not result.baseline:
            result = replace(result, baseline=True)
        self.results[variant] = result
        self.order.append(result)
        if self.finished:
            measured = [r for r in self.order if isinstance(r, Measurement)]
            self.finished(index, self.planned, result, best_within(measured, self.budget_ms))
        return result

    def search(self, strategy: str, limited: bool = False) -> Search:
        return Search(strategy, self.budget_ms, tuple(self.order), limited)


def exhaustive(
    space: tuning_space.Space,
    measure: tuning_measure.Measure,
    budget_ms: float,
    *,
    max_measurements: int | None = None,
    starting: Starting | None = None,
    finished: Finished | None = None,
) -> Search:
    """The baseline, then every variant of the space in its order."""
    run = _Run.of(EXHAUSTIVE, space, measure, budget_ms, max_measurements, starting, finished)
    try:
        run(space.baseline, baseline=True)
        for variant in space.variants():
            run(variant)
    except _Limit:
        return run.search(EXHAUSTIVE, limited=True)
    return run.search(EXHAUSTIVE)


def quick(
    space: tuning_space.Space,
    measure: tuning_measure.Measure,
    budget_ms: float,
    *,
    max_measurements: int | None = None,
    starting: Starting | None = None,
    finished: Finished | None = None,
) -> Search:
    """The baseline, then the walk the module docstring describes."""
    run = _Run.of(QUICK, space, measure, budget_ms, max_measurements, starting, finished)
    try:
        run(space.baseline, baseline=True)
        for kind in space.kinds:
            best: Measurement | None = None
            misses = 0
            for count in space.instance_counts:
                found = _best_for_count(run, space, count, kind, best)
                if found is None:
                    break  # this kind does not load (or nothing could be measured)
                if gains(found, best, budget_ms):
                    best, misses = found, 0
                else:
                    misses += 1
                    if misses > PATIENCE:
                        break  # more instances stopped paying
    except _Limit:
        return run.search(QUICK, limited=True)
    return run.search(QUICK)


def gains(new: Measurement, old: Measurement | None, budget_ms: float) -> bool:
    """Whether `new` is meaningfully better than `old` under the budget (see the module docstring)."""
    if old is None:
        return True
    new_throughput, old_throughput = new.throughput_within(budget_ms), old.throughput_within(budget_ms)
    if new_throughput is not None and old_throughput is not None:
        return new_throughput > old_throughput * (1 + MIN_GAIN)
    if new_throughput is not None or old_throughput is not None:
        return new_throughput is not None
    return new.lowest_p99_ms < old.lowest_p99_ms * (1 - MIN_GAIN)


def _best_for_count(
    run: _Run, space: tuning_space.Space, count: int, kind: str, previous: Measurement | None
) -> Measurement | None:
    if not space.batchable:
        return run(Variant(0, instances=count, kind=kind))
    best = _climb_batch_size(run, space, count, kind, previous)
    if best is None:
        return None
    # Every queue delay at the best batch size: the axis is short, and measured under load the
    # gain of a delay is not monotone (a short one may lose where a long one wins).
    at_size = best
    for delay in space.queue_delays_us:
        if delay != at_size.variant.queue_delay_us:
            found = run(replace(at_size.variant, queue_delay_us=delay, preferred_batch_size=None))
            if found is not None and gains(found, best, run.budget_ms):
                best = found
    if best.variant.queue_delay_us > 0:
        best = _next_size_with_delay(run, space, best)
    preferred = tuning_space.preferred_size(best.variant.max_batch_size)
    if best.variant.queue_delay_us > 0 and preferred:
        found = run(replace(best.variant, preferred_batch_size=preferred))
        if found is not None and gains(found, best, run.budget_ms):
            best = found
    return best


def _next_size_with_delay(run: _Run, space: tuning_space.Space, best: Measurement) -> Measurement:
    """The next batch size up at the best queue delay, when the walk could not measure it without
    a delay (perf_analyzer found no stable windows, or the walk stopped short of it): a delay
    fills larger batches, so it may be the best size after all."""
    sizes = space.batch_sizes
    size = best.variant.max_batch_size
    if size not in sizes or sizes.index(size) + 1 >= len(sizes):
        return best
    larger = replace(best.variant, max_batch_size=sizes[sizes.index(size) + 1], preferred_batch_size=None)
    if isinstance(run.results.get(replace(larger, queue_delay_us=0)), Measurement):
        return best  # measured without a delay, and the walk did not keep it
    found = run(larger)
    return found if found is not None and gains(found, best, run.budget_ms) else best


def _climb_batch_size(
    run: _Run, space: tuning_space.Space, count: int, kind: str, previous: Measurement | None
) -> Measurement | None:
    """Dynamic batching, no delay: from the previous count's best size (or the smallest) upward
    while it gains; if the start was not the smallest and up did not gain, downward likewise."""
    sizes = space.batch_sizes
    start = 0
    if previous is not None and previous.variant.max_batch_size in sizes:
        start = sizes.index(previous.variant.max_batch_size)

    # The first size that measures: one perf_analyzer could not measure (unstable windows) is
    # passed over; one that does not load means this count or kind does not load at all.
    best = None
    while best is None and start < len(sizes):
        first = run.result(Variant(sizes[start], True, 0, None, count, kind))
        if isinstance(first, Failure) and first.stage in (tuning_measure.LOAD, tuning_measure.GPU_MEMORY):
            return None  # larger batches and more instances need no less memory
        best = first if isinstance(first, Measurement) else None
        start += 1 if best is None else 0
    if best is None:
        return None
    best, moved = _walk(run, sizes, range(start + 1, len(sizes)), count, kind, best)
    if not moved:
        best, _ = _walk(run, sizes, range(start - 1, -1, -1), count, kind, best)
    return best


def _walk(
    run: _Run, sizes: tuple[int, ...], indices: range, count: int, kind: str, best: Measurement
) -> tuple[Measurement, bool]:
    """Batch sizes in `indices` order while they gain, allowing PATIENCE steps that do not (one
    noisy measurement must not end the walk); a failure ends it. Returns the best and whether it moved."""
    moved, misses = False, 0
    for index in indices:
        found = run(Variant(sizes[index], True, 0, None, count, kind))
        if found is None:
            break
        if gains(found, best, run.budget_ms):
            best, moved, misses = found, True, 0
            continue
        misses += 1
        if misses > PATIENCE:
            break
    return best, moved
