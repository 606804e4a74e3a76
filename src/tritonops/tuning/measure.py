"""One measurement of `tune`: load a variant on the server (a load that carries its full config as
the override), wait until the model is ready, and run perf_analyzer at each concurrency level.

A measurement keeps every level it measured; which level counts depends on the budget (the one
with the highest throughput whose p99 is within it), so a recorded measurement can be judged
again under another budget. A variant the server refuses to load, or that perf_analyzer cannot
measure, is a Failure: recorded, reported and skipped, never fatal. The server unreachable, or the
key refused, ends the run (the restore then says what it could do).

Where the server publishes GPU metrics (Triton's `nv_gpu_memory_used_bytes` and
`nv_gpu_memory_total_bytes` on its metrics port), the fullest GPU is read after each variant is
measured, while it is still loaded: a variant above the GPU memory budget is a Failure at stage
`gpu-memory`, like one that does not load, so no winner leaves a GPU fuller than the chart's
`TritonGPUMemoryCritical` alert allows (its default threshold is the default budget). Without GPU
metrics there is nothing to check."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
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
# Used / total memory of the fullest GPU a variant may leave: the chart's default threshold of
# TritonGPUMemoryCritical (values.yaml monitoring.prometheusRule.alerts.gpuMemory.threshold).
DEFAULT_GPU_MEMORY_BUDGET = 0.95
LOAD, MEASURE, GPU_MEMORY = "load", "measure", "gpu-memory"


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
    # Used / total memory of the fullest GPU after the measurement; None without GPU metrics.
    gpu_memory: float | None = None

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
    """A variant that did not load (`stage` load), could not be measured (`stage` measure) or left
    a GPU fuller than the budget (`stage` gpu-memory)."""

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
        if result.gpu_memory is not None:
            document["gpu_memory"] = round(result.gpu_memory, 4)
    else:
        document["failed"] = {"stage": result.stage, "reason": result.reason}
    return document


def result_from_dict(document: dict[str, Any]) -> Result:
    variant = tuning_space.Variant.from_dict(document["variant"])
    baseline = bool(document.get("baseline", False))
    if "failed" in document:
        return Failure(variant, document["failed"]["stage"], document["failed"]["reason"], baseline)
    points = tuple(Point.from_dict(p) for p in document["points"])
    gpu_memory = document.get("gpu_memory")
    return Measurement(variant, points, baseline, float(gpu_memory) if gpu_memory is not None else None)


@dataclass(frozen=True)
class Settings:
    """How perf_analyzer measures: concurrency levels, window length, stability band, max windows."""

    concurrency: tuple[int, ...]
    interval_ms: int = DEFAULT_INTERVAL_MS
    stability_percentage: int = DEFAULT_STABILITY_PERCENTAGE
    max_trials: int = DEFAULT_MAX_TRIALS
    shapes: tuple[str, ...] = ()
    # The server's metrics page (GPU memory is read there when it has GPU metrics) and the budget.
    metrics_url: str | None = None
    gpu_memory_budget: float = DEFAULT_GPU_MEMORY_BUDGET


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
            return Failure(variant, LOAD, _short(str(error)), baseline)
        if not self.client.model_ready(self.space.model):
            return Failure(variant, LOAD, "loaded, but the model does not report ready", baseline)
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
                return Failure(variant, MEASURE, _short(self._with_advice(str(error))), baseline)
            points.append(Point(concurrency, found.throughput, found.p50_us / 1000, found.p99_us / 1000))
        changed = self._served_otherwise(variant)
        if changed:
            return Failure(variant, MEASURE, changed, baseline)
        return judge_gpu_memory(
            Measurement(variant, tuple(points), baseline),
            self._gpu_samples(),
            self.settings.gpu_memory_budget,
        )

    def _with_advice(self, reason: str) -> str:
        if "no stable measurement" not in reason:
            return reason
        settings = self.settings
        return (
            f"{reason}; raise --measurement-interval (now {settings.interval_ms} ms) or "
            f"--stability-percentage (now {settings.stability_percentage})"
        )

    def _served_otherwise(self, variant: tuning_space.Variant) -> str | None:
        """Why the figures cannot be this variant's: the server reports another config now (a
        restart drops an override, its agent or someone else loaded the model). None when it
        still serves the variant."""
        served = tuning_space.baseline_of(self.client.model_config(self.space.model))
        if served.key() == variant.key():
            return None
        return (
            f"the server reports another config after the measurement ({served.label()}): a restart, "
            "its agent or another load replaced the variant, so the figures are not counted"
        )

    def _gpu_samples(self) -> triton_client.Samples | None:
        """The metrics page now, or None when there is none to read (a warning says why)."""
        if self.settings.metrics_url is None:
            return None
        try:
            return triton_client.scrape_metrics(self.settings.metrics_url)
        except (errors.TritonUnavailable, errors.TritonRequestError) as error:
            log.warning("GPU memory not checked for this variant: %s", error)
            return None


def gpu_memory_used(samples: triton_client.Samples) -> float | None:
    """Used / total memory of the fullest GPU on a Triton metrics page, or None without GPU metrics."""
    totals = {
        dict(labels).get("gpu_uuid"): value
        for (name, labels), value in samples.items()
        if name == "nv_gpu_memory_total_bytes"
    }
    fractions = [
        value / totals[uuid]
        for (name, labels), value in samples.items()
        if name == "nv_gpu_memory_used_bytes" and totals.get(uuid := dict(labels).get("gpu_uuid"))
    ]
    return max(fractions) if fractions else None


def judge_gpu_memory(measured: Measurement, samples: triton_client.Samples | None, budget: float) -> Result:
    """The measurement with its GPU memory recorded, or a gpu-memory Failure above the budget."""
    used = gpu_memory_used(samples) if samples is not None else None
    if used is None:
        return measured
    if used > budget:
        return Failure(
            measured.variant,
            GPU_MEMORY,
            f"the fullest GPU is {used:.1%} used, above the GPU memory budget {budget:.0%} (--gpu-memory-budget)",
            measured.baseline,
        )
    return replace(measured, gpu_memory=used)


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


def _short(text: str, limit: int = 600) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
