"""One measurement of `tune`: load a variant on the server (a load that carries its full config as
the override), wait until the model is ready, and run perf_analyzer at each concurrency level.

A measurement keeps every level it measured; which level counts depends on the budget (the one
with the highest throughput whose p99 is within it), so a recorded measurement can be judged
again under another budget. A variant the server refuses to load, or that perf_analyzer cannot
measure, is a Failure: recorded, reported and skipped, never fatal. The server unreachable, or the
key refused, ends the run (the restore then says what it could do)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tritonops import errors
from tritonops.triton import client as triton_client
from tritonops.triton import perf_analyzer
from tritonops.tuning import space as tuning_space

log = logging.getLogger(__name__)

# Which latency percentile perf_analyzer stabilises on and the budget applies to.
PERCENTILE = 99
DEFAULT_INTERVAL_MS = 2000
DEFAULT_MAX_TRIALS = 10
DEFAULT_STABILITY_PERCENTAGE = perf_analyzer.DEFAULT_STABILITY_PERCENTAGE


@dataclass(frozen=True)
class Point:
    """perf_analyzer's stable result at one concurrency: items per second, latencies in ms."""

    concurrency: int
    throughput: float
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "throughput": round(self.throughput, 3),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> Point:
        return cls(
            int(document["concurrency"]),
            float(document["throughput"]),
            float(document["p50_ms"]),
            float(document["p99_ms"]),
        )


@dataclass(frozen=True)
class Measurement:
    """A variant that loaded and was measured, at every concurrency level."""

    variant: tuning_space.Variant
    points: tuple[Point, ...]
    baseline: bool = False

    def within(self, budget_ms: float) -> Point | None:
        """The level with the highest throughput whose p99 meets the budget, or None."""
        meeting = [point for point in self.points if point.p99_ms <= budget_ms]
        return max(meeting, key=lambda point: point.throughput) if meeting else None

    def throughput_within(self, budget_ms: float) -> float | None:
        point = self.within(budget_ms)
        return point.throughput if point else None

    @property
    def lowest_p99_ms(self) -> float:
        return min(point.p99_ms for point in self.points)

    def shown(self, budget_ms: float) -> Point:
        """The level a report shows: the best within the budget, else the one with the lowest p99."""
        return self.within(budget_ms) or min(self.points, key=lambda point: point.p99_ms)


@dataclass(frozen=True)
class Failure:
    """A variant that did not load (`stage` load) or could not be measured (`stage` measure)."""

    variant: tuning_space.Variant
    stage: str
    reason: str
    baseline: bool = False


Result = Measurement | Failure
Measure = Callable[[tuning_space.Variant], Result]


def result_as_dict(result: Result) -> dict[str, Any]:
    document: dict[str, Any] = {"variant": result.variant.as_dict(), "baseline": result.baseline}
    if isinstance(result, Measurement):
        document["points"] = [point.as_dict() for point in result.points]
    else:
        document["failed"] = {"stage": result.stage, "reason": result.reason}
    return document


def result_from_dict(document: dict[str, Any]) -> Result:
    variant = tuning_space.Variant.from_dict(document["variant"])
    baseline = bool(document.get("baseline", False))
    if "failed" in document:
        return Failure(variant, document["failed"]["stage"], document["failed"]["reason"], baseline)
    return Measurement(variant, tuple(Point.from_dict(p) for p in document["points"]), baseline)


@dataclass(frozen=True)
class Settings:
    """How perf_analyzer measures: concurrency levels, window length, stability band, max windows."""

    concurrency: tuple[int, ...]
    interval_ms: int = DEFAULT_INTERVAL_MS
    stability_percentage: int = DEFAULT_STABILITY_PERCENTAGE
    max_trials: int = DEFAULT_MAX_TRIALS
    shapes: tuple[str, ...] = ()


class Measurer:
    """measure(variant) against one server: `apply` loads a config (the session's, which defers
    Ctrl-C until a load has answered), then perf_analyzer runs on the server's HTTP address."""

    def __init__(
        self,
        client: triton_client.Client,
        space: tuning_space.Space,
        settings: Settings,
        apply: Callable[[dict[str, Any]], None],
    ) -> None:
        self.client = client
        self.space = space
        self.settings = settings
        self.apply = apply

    def __call__(self, variant: tuning_space.Variant) -> Result:
        baseline = variant == self.space.baseline
        try:
            self.apply(self.space.override(variant))
        except (errors.ModelLoadError, errors.TritonRequestError) as error:
            log.info("%s: did not load: %s", variant.label(), error)
            return Failure(variant, "load", _short(str(error)), baseline)
        if not self.client.model_ready(self.space.model):
            return Failure(variant, "load", "loaded, but the model does not report ready", baseline)
        points = []
        for concurrency in self.settings.concurrency:
            try:
                found = perf_analyzer.perf_analyzer(
                    self.client.address,
                    self.space.model,
                    concurrency=concurrency,
                    shape=self.settings.shapes,
                    label=variant.label(),
                    interval_ms=self.settings.interval_ms,
                    stability_percentage=self.settings.stability_percentage,
                    max_trials=self.settings.max_trials,
                    percentile=PERCENTILE,
                )
            except errors.ToolError as error:
                return Failure(variant, "measure", _short(str(error)), baseline)
            points.append(Point(concurrency, found.throughput, found.p50_us / 1000, found.p99_us / 1000))
        return Measurement(variant, tuple(points), baseline)


def shapes_for(config: Any) -> tuple[str, ...]:
    """perf_analyzer's --shape for inputs with variable dims (other than the batch dim): each -1 is
    sent as 1, since perf_analyzer needs a concrete shape to make data."""
    found = []
    for tensor in config.input:
        dims = list(tensor.dims)
        if any(dim < 0 for dim in dims):
            found.append(f"{tensor.name}:{','.join(str(dim if dim >= 0 else 1) for dim in dims)}")
    return tuple(found)


def concurrency_levels(text: str) -> tuple[int, ...]:
    """`--concurrency N` or `A:B` (A, 2A, 4A, ... and B): the levels each variant is measured at."""
    parts = text.split(":")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or any(number < 1 for number in numbers):
        raise errors.InputError(
            f"--concurrency {text!r}: give N or A:B with whole numbers >= 1 (e.g. 16 or 4:32)"
        )
    if len(numbers) == 1:
        return (numbers[0],)
    low, high = numbers
    if low > high:
        raise errors.InputError(f"--concurrency {text}: the range starts above its end; write {high}:{low}")
    levels = []
    level = low
    while level < high:
        levels.append(level)
        level *= 2
    return (*levels, high)


def _short(text: str, limit: int = 400) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
