"""Against the model: the ONNX graph's real tensors compared with the config, with Triton's batch
reasoning, one finding per mismatch naming the tensor, both sides and the fix."""

from __future__ import annotations

import pytest

from tritonops.repository import validator
from tritonops.repository.signatures import onnx_signature
from tritonops.triton import onnx_models

LINEAR_TENSORS = 'input [{{ name: "input" data_type: TYPE_FP32 dims: {i} }}]\noutput [{{ name: "output" data_type: TYPE_FP32 dims: {o} }}]\n'


def _config(max_batch_size, in_dims, out_dims):
    return f'platform: "onnxruntime_onnx"\nmax_batch_size: {max_batch_size}\n' + LINEAR_TENSORS.format(
        i=in_dims, o=out_dims
    )


@pytest.mark.parametrize(
    ("builder", "inputs", "outputs"),
    [
        (onnx_models.linear, [("input", "TYPE_FP32", (-1, 4))], [("output", "TYPE_FP32", (-1, 2))]),
        (onnx_models.mlp, [("input", "TYPE_FP32", (-1, 8))], [("output", "TYPE_FP32", (-1, 3))]),
        (onnx_models.conv, [("image", "TYPE_FP32", (-1, 3, 224, 224))], [("scores", "TYPE_FP32", (-1, 4))]),
        (
            onnx_models.dynamic_sequence,
            [("tokens", "TYPE_FP32", (-1, -1, 8))],
            [("summed", "TYPE_FP32", (-1, 8))],
        ),
        (
            onnx_models.two_inputs,
            [("a", "TYPE_FP32", (-1, 3)), ("b", "TYPE_FP32", (-1, 3))],
            [("sum", "TYPE_FP32", (-1, 3)), ("diff", "TYPE_FP32", (-1, 3))],
        ),
        (
            onnx_models.int64_bool,
            [("ids", "TYPE_INT64", (-1, 5))],
            [("doubled", "TYPE_INT64", (-1, 5)), ("positive", "TYPE_BOOL", (-1, 5))],
        ),
    ],
    ids=["linear", "mlp", "conv-nchw", "dynamic-seq", "two-inputs", "int64-bool"],
)
def test_signature_reads_names_types_and_dims_without_initializers(tmp_path, builder, inputs, outputs):
    signature = onnx_signature(builder(tmp_path / "model.onnx"))
    assert [(t.name, t.data_type, t.dims) for t in signature.inputs] == inputs
    assert [(t.name, t.data_type, t.dims) for t in signature.outputs] == outputs


@pytest.mark.parametrize(
    ("in_shape", "config", "expected"),
    [
        (
            (1, 4),
            _config(0, "[4]", "[1, 2]"),
            "input 'input': config dims [4] (max_batch_size 0) vs model shape [1, 4]: with max_batch_size 0 dims are the full shape: set dims: [1, 4]",
        ),
        (
            ("batch", 4),
            _config(8, "[1, 4]", "[2]"),
            "input 'input': config dims [1, 4] (max_batch_size 8) vs model shape [-1, 4]: with max_batch_size > 0 dims exclude the batch dim: set dims: [4]",
        ),
        (
            (1, 4),
            _config(8, "[4]", "[2]"),
            "the model's first dim is fixed, so it cannot batch; set max_batch_size: 0 and dims: [1, 4]",
        ),
        (
            ("batch", 4),
            _config(8, "[5]", "[2]"),
            "input 'input': config dims [5] (max_batch_size 8) vs model shape [-1, 4]: dim 0 is 4 in the model but 5 in the config",
        ),
        (("batch", 4), _config(8, "[-1]", "[2]"), "dim 0 is 4 in the model but -1 in the config"),
        (
            ("batch", 4),
            _config(0, "[1, 4]", "[1, 2]"),
            "output 'output': config dims [1, 2] (max_batch_size 0) vs model shape [-1, 2]: dim 0 is variable in the model, so the config must say -1, not 1",
        ),
    ],
    ids=[
        "classic-1x4-as-4",
        "batch-dim-written-out",
        "fixed-batch-with-batching",
        "wrong-size",
        "variable-vs-fixed",
        "output-fixed-vs-variable",
    ],
)
def test_dims_mismatch_findings_give_the_fix(repo, add_linear, in_shape, config, expected):
    add_linear(config=config, in_shape=in_shape)
    messages = [f.message for f in validator.validate(repo).errors]
    assert any(expected in message for message in messages), messages


def test_full_shape_config_of_a_fixed_model_is_clean(repo, add_linear):
    add_linear(config=_config(0, "[1, 4]", "[1, 2]"), in_shape=(1, 4))
    assert validator.validate(repo).findings == ()


def test_batchable_model_served_without_batching_gets_a_warning(repo, add_linear):
    add_linear(config=_config(0, "[-1, 4]", "[-1, 2]"))
    report = validator.validate(repo)
    assert report.passed
    assert "the model can batch, but max_batch_size is 0" in report.findings[0].message


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            _config(8, "[4]", "[2]").replace('name: "input"', 'name: "x"'),
            [
                "input 'x' is not in the model; the model's inputs are ['input']",
                "model input 'input' (TYPE_FP32 [-1, 4]) is missing from the config; add it",
            ],
        ),
        (
            _config(8, "[4]", "[2]").replace('name: "output"', 'name: "y"'),
            ["output 'y' is not in the model; the model's outputs are ['output']"],
        ),
        (
            _config(8, "[4]", "[2]").replace("TYPE_FP32 dims: [2]", "TYPE_FP16 dims: [2]"),
            ["output 'output': config says TYPE_FP16, the model says TYPE_FP32; set data_type: TYPE_FP32"],
        ),
    ],
    ids=["unknown-input", "unknown-output", "wrong-output-type"],
)
def test_names_and_types_are_compared(repo, add_linear, config, expected):
    add_linear(config=config)
    assert sorted(f.message for f in validator.validate(repo).errors) == sorted(expected)


def test_every_version_is_compared(repo, add_linear):
    model = add_linear(versions=(1, 2))
    onnx_models.linear(model / "2" / "model.onnx", in_shape=("batch", 5))
    (finding,) = validator.validate(repo).errors
    assert finding.version == "2"
    assert "dim 0 is 5 in the model but 4 in the config" in finding.message


def test_reshape_is_compared_instead_of_dims(repo, add_linear):
    config = 'platform: "onnxruntime_onnx"\nmax_batch_size: 8\ninput [{ name: "input" data_type: TYPE_FP32 dims: [2, 2] reshape: { shape: [4] } }]\noutput [{ name: "output" data_type: TYPE_FP32 dims: [2] }]\n'
    add_linear(config=config)
    assert validator.validate(repo).passed
