"""How a variant is measured: the concurrency levels, perf_analyzer's arguments (stable windows
judged on p99), the level that counts under a budget, and a missing perf_analyzer said clearly."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT
from tests.tuning.conftest import served_config
from tritonops import errors
from tritonops.triton import client as triton_client
from tritonops.triton import perf_analyzer
from tritonops.tuning import measure as tuning_measure
from tritonops.tuning.measure import Failure, Measurement, Point, result_as_dict, result_from_dict
from tritonops.tuning.space import Variant


@pytest.mark.parametrize(
    ("text", "levels"),
    [("16", (16,)), ("4:32", (4, 8, 16, 32)), ("3:20", (3, 6, 12, 20)), ("8:8", (8,))],
    ids=["one", "doubling", "uneven-end", "single-range"],
)
def test_concurrency_levels(text, levels):
    assert tuning_measure.concurrency_levels(text) == levels


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("0", "whole numbers >= 1"),
        ("a:b", "give N or A:B"),
        ("32:4", "write 4:32"),
        ("1:2:3", "give N or A:B"),
    ],
    ids=["zero", "words", "reversed", "three-parts"],
)
def test_bad_concurrency_is_refused_with_the_fix(text, words):
    with pytest.raises(errors.InputError, match=f"--concurrency .*{words}"):
        tuning_measure.concurrency_levels(text)


def test_perf_analyzer_stabilises_on_p99_with_the_given_windows():
    args = perf_analyzer.perf_analyzer_args(
        "127.0.0.1:8000",
        "mlp",
        concurrency=16,
        shape=("a:1,4", "b:2"),
        interval_ms=500,
        stability_percentage=40,
        max_trials=6,
        percentile=99,
    )
    text = " ".join(args)
    for expected in (
        "--concurrency-range 16",
        "--measurement-interval 500",
        "--stability-percentage 40",
        "--max-trials 6",
        "--percentile 99",
        "--shape a:1,4 --shape b:2",
        "-i http",
    ):
        assert expected in text


def test_the_benchmarks_call_keeps_its_defaults():
    """bench/serving.py's call: one shape, no percentile or trial limit (average-latency stability)."""
    args = perf_analyzer.perf_analyzer_args("h:1", "m", concurrency=8, shape="input:512")
    assert "--percentile" not in args and "--max-trials" not in args
    assert args[args.index("--shape") + 1] == "input:512"
    assert args[args.index("--stability-percentage") + 1] == "25"


def test_a_missing_perf_analyzer_names_where_it_looked_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv(perf_analyzer.BINARY_ENV, str(tmp_path / "nowhere" / "perf_analyzer"))
    with pytest.raises(errors.ToolError) as missing:
        perf_analyzer.perf_analyzer_binary()
    assert "nowhere/perf_analyzer: perf_analyzer is not installed there; run `make setup`" in str(
        missing.value
    )


def test_inputs_with_variable_dims_get_a_concrete_shape():
    config = served_config(
        'name: "m" max_batch_size: 8 input [{ name: "tokens" data_type: TYPE_INT64 dims: [-1] }, '
        '{ name: "mask" data_type: TYPE_INT64 dims: [4, -1] }, { name: "x" data_type: TYPE_FP32 dims: [3] }]'
    )
    assert tuning_measure.shapes_for(config) == ("tokens:1", "mask:4,1")


def test_the_level_that_counts_is_the_fastest_within_the_budget():
    measurement = Measurement(
        Variant(8, True),
        (Point(4, 100.0, 5.0, 10.0), Point(8, 180.0, 9.0, 20.0), Point(16, 200.0, 20.0, 45.0)),
    )
    assert measurement.within(30.0) == Point(8, 180.0, 9.0, 20.0)
    assert measurement.within(5.0) is None
    assert measurement.shown(5.0).concurrency == 4, "over budget: the level closest to it is shown"
    assert measurement.lowest_p99_ms == 10.0


# --- GPU memory ------------------------------------------------------------------------------------

GPU_CAPTURES = ROOT / "tests" / "resources" / "gpu"


def _page(name: str) -> triton_client.Samples:
    return triton_client.parse_metrics((GPU_CAPTURES / name).read_text())


@pytest.mark.parametrize(
    "capture", ["h200-triton-2.51-metrics-idle.txt", "h200-triton-2.51-metrics-busy.txt"]
)
def test_gpu_memory_is_read_from_tritons_own_gpu_metrics(capture):
    samples = _page(capture)
    used = triton_client.metric_total(samples, "nv_gpu_memory_used_bytes")
    total = triton_client.metric_total(samples, "nv_gpu_memory_total_bytes")
    assert tuning_measure.gpu_memory_used(samples) == pytest.approx(used / total)


def test_a_server_without_gpu_metrics_has_no_gpu_memory_to_judge():
    cpu_page = triton_client.parse_metrics('nv_inference_count{model="mlp",version="1"} 3\n')
    measured = Measurement(Variant(8, True, 0, None, 1, "KIND_GPU"), (Point(16, 100.0, 5.0, 9.0),))
    assert tuning_measure.gpu_memory_used(cpu_page) is None
    assert tuning_measure.judge_gpu_memory(measured, cpu_page, 0.95) == measured
    assert tuning_measure.judge_gpu_memory(measured, None, 0.95) == measured


def test_a_variant_that_fills_a_gpu_beyond_the_budget_is_a_failure_and_one_within_records_it():
    text = (GPU_CAPTURES / "h200-triton-2.51-metrics-busy.txt").read_text()
    total = triton_client.metric_total(
        _page("h200-triton-2.51-metrics-busy.txt"), "nv_gpu_memory_total_bytes"
    )
    full = re.sub(r"(?m)^(nv_gpu_memory_used_bytes\{[^}]*\}) \S+$", rf"\g<1> {int(total * 0.96)}", text)
    measured = Measurement(Variant(16, True, 0, None, 4, "KIND_GPU"), (Point(16, 900.0, 5.0, 9.0),))
    over = tuning_measure.judge_gpu_memory(measured, triton_client.parse_metrics(full), 0.95)
    assert isinstance(over, Failure) and over.stage == tuning_measure.GPU_MEMORY
    assert "the fullest GPU is 96.0% used, above the GPU memory budget 95%" in over.reason
    within = tuning_measure.judge_gpu_memory(measured, triton_client.parse_metrics(full), 0.97)
    assert isinstance(within, Measurement) and within.gpu_memory == pytest.approx(0.96, abs=1e-6)
    assert result_from_dict(result_as_dict(within)).gpu_memory == pytest.approx(0.96, abs=1e-4)


@pytest.mark.parametrize(
    ("flag", "words"),
    [
        (("--gpu-memory-budget", "1.5"), "'1.5': give a fraction above 0 and at most 1"),
        (("--metrics", "localhost:8002"), "--metrics 'localhost:8002': give the metrics page's URL"),
    ],
    ids=["budget-above-1", "metrics-not-a-url"],
)
def test_bad_gpu_memory_flags_are_refused_before_anything_runs(run_cli, tmp_path, flag, words):
    refused = run_cli(
        "tune", "mlp", "--endpoint", "http://127.0.0.1:9", "--p99-budget", "10", "--out", str(tmp_path), *flag
    )
    assert refused.returncode == 2 and words in refused.stderr, refused.stderr
