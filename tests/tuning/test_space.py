"""The search space: what a model allows (from its config and ONNX graph), in a fixed order, and
each variant as the full config a load sends, built from the original."""

from __future__ import annotations

import pytest
from google.protobuf import json_format, text_format

from tests.tuning.conftest import MLP_SERVED, served_config
from tritonops import errors
from tritonops.repository import signatures
from tritonops.triton import client as triton_client
from tritonops.tuning import space as tuning_space
from tritonops.tuning.space import Variant

FIXED_BATCH = """
name: "fixed"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [{ name: "input" data_type: TYPE_FP32 dims: [1, 4] }]
output [{ name: "output" data_type: TYPE_FP32 dims: [1, 2] }]
instance_group [{ count: 1 kind: KIND_CPU }]
"""

UNBATCHED_BUT_DYNAMIC = """
name: "flat"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [{ name: "input" data_type: TYPE_FP32 dims: [-1, 4] }]
output [{ name: "output" data_type: TYPE_FP32 dims: [-1, 2] }]
version_policy { specific { versions: [1] } }
"""


def graph(first_dim: int) -> signatures.Signature:
    return signatures.Signature(
        (signatures.Tensor("input", "TYPE_FP32", (first_dim, 4)),),
        (signatures.Tensor("output", "TYPE_FP32", (first_dim, 2)),),
    )


@pytest.mark.parametrize(
    ("concurrency", "sizes"),
    [((16,), (2, 4, 8, 16)), ((4, 20), (2, 4, 8, 16, 32)), ((1000,), (2, 4, 8, 16, 32, 64, 128))],
    ids=["at-the-concurrency", "next-power-of-two", "capped"],
)
def test_batch_sizes_stop_where_batches_can_no_longer_fill(concurrency, sizes):
    space = tuning_space.build(served_config(), concurrency=concurrency, allow_smaller_batch=True)
    assert space.batchable
    assert space.batch_sizes == sizes


def test_a_fixed_first_dim_allows_only_max_batch_size_0_and_instance_counts():
    space = tuning_space.build(served_config(FIXED_BATCH), concurrency=(16,), signature=graph(1))
    assert not space.batchable
    variants = space.variants()
    assert {v.max_batch_size for v in variants} == {0}
    assert not any(v.dynamic_batching for v in variants)
    assert [v.instances for v in variants] == [2, 4], "the baseline (1 instance) is measured as itself"


def test_a_config_that_does_not_batch_is_tuned_on_instances_only_whatever_the_graph_allows():
    """max_batch_size 0 over a graph whose first dim is dynamic: that dim may be tokens or
    detections, not a batch, so batching is never switched on (the batcher would join requests)."""
    config = served_config(UNBATCHED_BUT_DYNAMIC)
    for signature in (graph(-1), graph(1), None):
        space = tuning_space.build(config, concurrency=(8,), signature=signature)
        assert not space.batchable
        assert {v.max_batch_size for v in space.variants()} == {0}


def test_a_batching_config_over_a_graph_with_a_fixed_first_dim_is_not_varied():
    assert not tuning_space.build(served_config(), concurrency=(8,), signature=graph(1)).batchable
    assert tuning_space.build(served_config(), concurrency=(8,), signature=graph(-1)).batchable
    assert tuning_space.build(served_config(), concurrency=(8,)).batchable


@pytest.mark.parametrize(
    ("current", "concurrency", "sizes"),
    [(16, (16,), (16,)), (8, (16,), (8, 16)), (64, (16,), (64,)), (4, (32,), (4, 8, 16, 32))],
    ids=["at-the-current", "from-the-current-up", "current-above-the-cap", "small-current"],
)
def test_max_batch_size_never_goes_below_the_current_one_unless_allowed(current, concurrency, sizes):
    """Below it, client requests that carry more items than the new maximum would be refused."""
    config = served_config(MLP_SERVED.replace("max_batch_size: 16", f"max_batch_size: {current}"))
    assert tuning_space.build(config, concurrency=concurrency).batch_sizes == sizes
    allowed = tuning_space.build(config, concurrency=concurrency, allow_smaller_batch=True)
    assert allowed.batch_sizes[0] == 2


def test_the_order_is_fixed_and_each_variant_appears_once_without_the_baseline():
    first = tuning_space.build(served_config(), concurrency=(16,), allow_smaller_batch=True).variants()
    again = tuning_space.build(served_config(), concurrency=(16,), allow_smaller_batch=True).variants()
    assert first == again
    assert len(set(first)) == len(first)
    space = tuning_space.build(served_config(), concurrency=(16,), allow_smaller_batch=True)
    assert space.baseline == Variant(16, False, 0, None, 1, "KIND_CPU")
    assert space.baseline not in first
    # Per instance count: no dynamic batching, then batch 2 (4 delays), then 4, 8, 16 (4 delays,
    # and a preferred size with each delay above 0).
    assert len(first) == 3 * (1 + 4 + 3 * 7) - 1
    assert [v.instances for v in first] == sorted(v.instances for v in first)
    assert first[:3] == [Variant(2, True, 0), Variant(2, True, 100), Variant(2, True, 1000)]


def test_a_variant_changes_only_batching_and_instances():
    space = tuning_space.build(served_config(), concurrency=(16,))
    override = space.override(Variant(8, True, 1000, 4, 2, "KIND_CPU"))
    assert override["max_batch_size"] == 8
    assert override["dynamic_batching"] == {
        "max_queue_delay_microseconds": "1000",
        "preferred_batch_size": [4],
    }
    assert override["instance_group"] == [{"count": 2, "kind": "KIND_CPU"}]
    unchanged = (
        "name",
        "platform",
        "backend",
        "input",
        "output",
        "version_policy",
        "optimization",
        "runtime",
    )
    assert {key: override[key] for key in unchanged} == {key: space.original[key] for key in unchanged}
    # The override is a config Triton's protobuf reads.
    json_format.ParseDict(override, triton_client.ModelConfig())


def test_no_dynamic_batching_removes_the_block_and_the_baseline_is_the_original():
    text = MLP_SERVED.replace(
        "default_model_filename",
        "dynamic_batching { max_queue_delay_microseconds: 500 preferred_batch_size: [16] }\ndefault_model_filename",
    )
    space = tuning_space.build(served_config(text), concurrency=(16,))
    # Triton fills preferred_batch_size with max_batch_size: that is no preference of its own.
    assert space.baseline == Variant(16, True, 500, None, 1, "KIND_CPU")
    assert "dynamic_batching" not in space.override(Variant(16, False, instances=2))
    assert space.override(space.baseline) == space.original


def test_a_model_on_gpus_also_tries_cpu_instances_and_kinds_can_be_given():
    gpu = served_config()
    gpu.instance_group[0].kind = triton_client.ModelInstanceGroup.Kind.Value("KIND_GPU")
    assert tuning_space.build(gpu, concurrency=(4,)).kinds == ("KIND_GPU", "KIND_CPU")
    assert tuning_space.build(served_config(), concurrency=(4,)).kinds == ("KIND_CPU",)
    given = tuning_space.build(served_config(), concurrency=(4,), kinds=("KIND_GPU",))
    assert {v.kind for v in given.variants()} == {"KIND_GPU"}


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("sequence_batching { }", "uses sequence_batching, which `tune` does not model"),
        ("ensemble_scheduling { }", "uses ensemble_scheduling"),
    ],
    ids=["sequence-batching", "ensemble"],
)
def test_schedulers_the_search_does_not_model_are_refused(extra, words):
    with pytest.raises(errors.InputError) as refused:
        tuning_space.build(served_config(FIXED_BATCH + extra), concurrency=(4,))
    assert words in str(refused.value)


def test_max_instances_gives_doubling_counts_and_the_maximum():
    assert tuning_space.build(served_config(), concurrency=(4,), max_instances=6).instance_counts == (
        1,
        2,
        4,
        6,
    )
    with pytest.raises(errors.InputError, match="--max-instances 0"):
        tuning_space.build(served_config(), concurrency=(4,), max_instances=0)


def test_a_variant_as_text_is_a_config_with_the_files_other_fields():
    space = tuning_space.build(served_config(), concurrency=(16,))
    base = triton_client.ModelConfig()
    text_format.Parse(
        'name: "mlp" platform: "onnxruntime_onnx" max_batch_size: 16 '
        'input [{ name: "input" data_type: TYPE_FP32 dims: [512] }] '
        'output [{ name: "output" data_type: TYPE_FP32 dims: [16] }] '
        "version_policy { specific { versions: [3] } }",
        base,
    )
    variant = Variant(8, True, 100, None, 2, "KIND_CPU")
    for source in (None, base):
        parsed = triton_client.ModelConfig()
        text_format.Parse(space.config_text(variant, source), parsed)
        assert parsed.max_batch_size == 8
        assert parsed.dynamic_batching.max_queue_delay_microseconds == 100
        assert [(g.count, g.kind) for g in parsed.instance_group] == [
            (2, triton_client.ModelInstanceGroup.KIND_CPU)
        ]
        assert not parsed.runtime, "the server's own runtime choice is not written"
    from_file = triton_client.ModelConfig()
    text_format.Parse(space.config_text(variant, base), from_file)
    assert list(from_file.version_policy.specific.versions) == [3], "the file's pin is kept"
    assert not from_file.HasField("optimization"), "nothing the file did not say is added"
