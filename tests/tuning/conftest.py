"""Fixtures for `tune`: model configs as the server reports them, a replayed measure(variant)
callable over recorded or synthetic grids, and a local runtime shared by the live tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format, text_format

from tests.runtime.conftest import FAST_PROBES, free_port_offset
from tritonops.triton import client as triton_client
from tritonops.tuning import space as tuning_space
from tritonops.tuning.measure import Failure, Measurement, Point, Result, result_from_dict

RESOURCES = Path(__file__).parent / "resources"
MLP_GRID = RESOURCES / "mlp_grid.json"

# What Triton reports for bench/serving.py's default MLP config (max_batch_size 16, one CPU
# instance, no dynamic batching) on the local runtime.
MLP_SERVED = """
name: "mlp"
platform: "onnxruntime_onnx"
backend: "onnxruntime"
runtime: "model.py"
version_policy { latest { num_versions: 1 } }
max_batch_size: 16
input [{ name: "input" data_type: TYPE_FP32 dims: [512] }]
output [{ name: "output" data_type: TYPE_FP32 dims: [16] }]
instance_group [{ name: "mlp_0" count: 1 kind: KIND_CPU }]
default_model_filename: "model.onnx"
optimization { input_pinned_memory { enable: true } output_pinned_memory { enable: true } }
"""


def served_config(text: str = MLP_SERVED) -> Any:
    config = triton_client.ModelConfig()
    text_format.Parse(text, config)
    return config


@dataclass
class Replay:
    """measure(variant) answered from a table; `calls` is every variant asked for, in order."""

    table: dict[tuning_space.Variant, Result]
    calls: list[tuning_space.Variant] = field(default_factory=list)

    def __call__(self, variant: tuning_space.Variant) -> Result:
        self.calls.append(variant)
        return self.table[variant]


@dataclass(frozen=True)
class Grid:
    """A recorded exhaustive grid: its space and every result by variant."""

    space: tuning_space.Space
    results: dict[tuning_space.Variant, Result]
    document: dict[str, Any]

    def replay(self) -> Replay:
        return Replay(dict(self.results))


def load_grid(path: Path = MLP_GRID) -> Grid:
    document = json.loads(path.read_text())
    config = triton_client.ModelConfig()
    json_format.ParseDict(document["original_config"], config)
    # Recorded with perf_analyzer, whose requests carry one item each: every batch size is fair.
    space = tuning_space.build(config, concurrency=tuple(document["concurrency"]), allow_smaller_batch=True)
    results = {}
    for entry in document["results"]:
        result = result_from_dict(entry)
        results[result.variant] = result
    return Grid(space, results, document)


def measured(
    variant: tuning_space.Variant, throughput: float, p99_ms: float, concurrency: int = 16
) -> Measurement:
    return Measurement(variant, (Point(concurrency, throughput, p99_ms / 2, p99_ms),))


def synthetic(
    space: tuning_space.Space, score: Callable[[tuning_space.Variant], tuple[float, float] | str]
) -> dict[tuning_space.Variant, Result]:
    """A grid over `space`: score(variant) gives (throughput, p99 ms), or a string: a load failure
    with that reason."""
    table: dict[tuning_space.Variant, Result] = {}
    for variant in [space.baseline, *space.variants()]:
        found = score(variant)
        if isinstance(found, str):
            table[variant] = Failure(variant, "load", found, variant == space.baseline)
        else:
            throughput, p99 = found
            result = measured(variant, throughput, p99)
            table[variant] = Measurement(result.variant, result.points, variant == space.baseline)
    return table


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The local runtime with the sample repository (its `linear` model loaded at start, the agent
    converging the committed state), shared by a module's live tests and always brought down."""
    from tritonops.runtime import control

    work_dir = tmp_path_factory.mktemp("tune-runtime") / "work"
    current = control.up("local", work_dir=work_dir, port_offset=free_port_offset(1), set_values=FAST_PROBES)
    try:
        assert current.all_ready, control.logs(work_dir, None, 30)
        yield current
    finally:
        control.down(work_dir)
