"""Configs are parsed with Triton's own protobuf and checked field by field."""

from __future__ import annotations

import pytest

from tritonops.repository import validator

HEAD = 'platform: "onnxruntime_onnx"\n'
TENSORS = 'input [{ name: "input" data_type: TYPE_FP32 dims: [4] }]\noutput [{ name: "output" data_type: TYPE_FP32 dims: [2] }]\n'


def _only_error(repo):
    report = validator.validate(repo)
    assert len(report.errors) == 1, [str(f) for f in report.findings]
    return report.errors[0]


@pytest.mark.parametrize(
    ("config", "line", "column", "fragment"),
    [
        (HEAD + "max_batch_size: 8\nbogus_field: 1\n", 3, 1, 'has no field named "bogus_field"'),
        (
            HEAD + 'max_batch_size: 8\ninput [{ name: "input" data_type: TYPE_FP33 dims: [4] }]\n',
            3,
            None,
            "has no value named TYPE_FP33",
        ),
        (HEAD + "max_batch_size: eight\n", 2, 17, "Couldn't parse integer: eight"),
        (HEAD + 'max_batch_size: 8\ninput [{ name: "input" \n', None, None, "invalid config"),
    ],
    ids=["unknown-field", "bad-enum", "bad-integer", "unterminated"],
)
def test_parse_errors_carry_file_line_and_column(repo, add_linear, config, line, column, fragment):
    add_linear(config=config)
    finding = _only_error(repo)
    assert finding.file.endswith("config.pbtxt")
    assert fragment in finding.message
    if line is not None:
        assert finding.line == line
    if column is not None:
        assert finding.column == column


def test_binary_config_is_one_finding(repo, add_linear):
    model = add_linear()
    (model / "config.pbtxt").write_bytes(b"\x08\x96\x01\x00\xff\xfe")
    assert _only_error(repo).message == "binary content where a text protobuf config is expected"


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (
            'name: "other"\n' + HEAD + "max_batch_size: 8\n" + TENSORS,
            "name 'other' does not match the folder 'linear'",
        ),
        ('platform: "onnx"\nmax_batch_size: 8\n' + TENSORS, "unknown platform 'onnx'"),
        (
            HEAD + 'backend: "pytorch"\nmax_batch_size: 8\n' + TENSORS,
            "runs on backend 'onnxruntime', not 'pytorch'",
        ),
        (
            HEAD
            + "max_batch_size: 8\n"
            + TENSORS
            + 'input [{ name: "input" data_type: TYPE_FP32 dims: [4] }]\n',
            "duplicate input name 'input'",
        ),
        (
            HEAD
            + 'max_batch_size: 8\ninput [{ name: "input" dims: [4] }]\noutput [{ name: "output" data_type: TYPE_FP32 dims: [2] }]\n',
            "data_type is missing",
        ),
        (
            HEAD
            + 'max_batch_size: 8\ninput [{ name: "input" data_type: TYPE_FP32 }]\noutput [{ name: "output" data_type: TYPE_FP32 dims: [2] }]\n',
            "dims is missing",
        ),
        (
            HEAD + "max_batch_size: 8\n" + TENSORS + "dynamic_batching { preferred_batch_size: [4, 16] }\n",
            "preferred_batch_size 16 must be between 1 and max_batch_size 8",
        ),
        (
            HEAD + "max_batch_size: 8\n" + TENSORS + "instance_group [{ kind: KIND_CPU gpus: [0] }]\n",
            "KIND_CPU lists gpus",
        ),
        (
            HEAD + "max_batch_size: 8\n" + TENSORS + "version_policy { specific { versions: [1, 3] } }\n",
            "pins version(s) [3] but the folder holds [1]",
        ),
        (
            HEAD + "max_batch_size: 8\n" + TENSORS + "version_policy { latest { num_versions: 0 } }\n",
            "num_versions must be >= 1",
        ),
    ],
    ids=[
        "name-mismatch",
        "unknown-platform",
        "platform-backend-clash",
        "duplicate-input",
        "no-data-type",
        "no-dims",
        "preferred-above-max",
        "cpu-with-gpus",
        "policy-missing-version",
        "latest-zero",
    ],
)
def test_config_semantics(repo, add_linear, config, fragment):
    add_linear(config=config)
    messages = [f.message for f in validator.validate(repo).errors]
    assert any(fragment in m for m in messages), messages


def test_queue_delay_over_100ms_is_a_warning(repo, add_linear):
    add_linear(
        config=HEAD
        + "max_batch_size: 8\n"
        + TENSORS
        + "dynamic_batching { max_queue_delay_microseconds: 500000 }\n"
    )
    report = validator.validate(repo)
    assert report.passed
    assert "adds up to 500 ms to every request" in report.findings[0].message


def test_kind_gpu_is_flagged_only_for_environments_without_gpus(repo, add_linear):
    add_linear(
        config=HEAD + "max_batch_size: 8\n" + TENSORS + "instance_group [{ kind: KIND_GPU count: 1 }]\n"
    )
    assert validator.validate(repo).passed
    assert validator.validate(repo, gpu_available=True).passed
    (finding,) = validator.validate(repo, gpu_available=False).errors
    assert "KIND_GPU on an environment without GPUs" in finding.message
    assert finding.line == 5


def test_findings_name_the_line_of_the_tensor(repo, add_linear):
    config = (
        HEAD
        + "max_batch_size: 8\n"
        + 'input [{ name: "input" data_type: TYPE_INT32 dims: [4] }]\noutput [{ name: "output" data_type: TYPE_FP32 dims: [2] }]\n'
    )
    add_linear(config=config)
    finding = _only_error(repo)
    assert finding.line == 3
    assert finding.field == "input[input]"
    assert (
        finding.message
        == "input 'input': config says TYPE_INT32, the model says TYPE_FP32; set data_type: TYPE_FP32"
    )


def test_ensemble_references_are_checked(repo, add_linear):
    add_linear("linear")
    ensemble = repo / "pipeline"
    (ensemble / "1").mkdir(parents=True)
    (ensemble / "config.pbtxt").write_text(
        'platform: "ensemble"\nmax_batch_size: 8\n'
        'input [{ name: "x" data_type: TYPE_FP32 dims: [4] }]\n'
        'output [{ name: "y" data_type: TYPE_FP32 dims: [2] }, { name: "z" data_type: TYPE_FP32 dims: [2] }]\n'
        "ensemble_scheduling { step [\n"
        '  { model_name: "linear" model_version: -1 input_map { key: "input" value: "x" } output_map { key: "output" value: "y" } },\n'
        '  { model_name: "linear" model_version: -1 input_map { key: "inputs" value: "nowhere" } output_map { key: "output" value: "y2" } },\n'
        '  { model_name: "missing" model_version: -1 input_map { key: "a" value: "x" } output_map { key: "b" value: "c" } }\n'
        "] }\n"
    )
    messages = [f.message for f in validator.validate(repo).errors]
    assert "step 1: 'linear' has no input 'inputs' (it has ['input'])" in messages
    assert "step 1: input_map value 'nowhere' is neither an ensemble input nor any step's output" in messages
    assert "step 2 uses model 'missing', which is not in the repository" in messages
    assert "ensemble output 'z' is not produced by any step's output_map" in messages
    assert len(messages) == 4


def test_valid_ensemble_with_empty_version_folder_passes(repo, add_linear):
    add_linear("linear")
    ensemble = repo / "pipeline"
    (ensemble / "1").mkdir(parents=True)
    (ensemble / "config.pbtxt").write_text(
        'platform: "ensemble"\nmax_batch_size: 8\n'
        'input [{ name: "x" data_type: TYPE_FP32 dims: [4] }]\noutput [{ name: "y" data_type: TYPE_FP32 dims: [2] }]\n'
        'ensemble_scheduling { step [{ model_name: "linear" model_version: -1 input_map { key: "input" value: "x" } output_map { key: "output" value: "y" } }] }\n'
    )
    assert validator.validate(repo).passed


def test_dynamic_batching_without_batching_is_a_warning(repo, add_linear):
    config = (
        HEAD
        + "max_batch_size: 0\n"
        + 'input [{ name: "input" data_type: TYPE_FP32 dims: [-1, 4] }]\noutput [{ name: "output" data_type: TYPE_FP32 dims: [-1, 2] }]\ndynamic_batching { }\n'
    )
    add_linear(config=config)
    report = validator.validate(repo)
    assert report.passed
    assert any("dynamic_batching has no effect with max_batch_size 0" in f.message for f in report.findings)
