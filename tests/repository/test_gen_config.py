"""`repo gen-config`: a config from the ONNX graph that passes `repo validate`."""

from __future__ import annotations

import pytest

from tritonops import errors, triton
from tritonops import onnx_samples as onnx_models
from tritonops.repository import generating, validating

BUILDERS = onnx_models.BUILDERS


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("dynamic_batching", [False, True], ids=["plain", "dynamic-batching"])
def test_generated_config_validates_clean(repo, name, dynamic_batching):
    model_file = BUILDERS[name](repo / name / "1" / "model.onnx")
    options = generating.GenerateOptions(max_batch_size=16, dynamic_batching=dynamic_batching, instances=2)
    (repo / name / "config.pbtxt").write_text(generating.generate(model_file, options))
    report = validating.validate(repo)
    assert report.findings == (), [str(f) for f in report.findings]


def test_generated_config_content(repo):
    model_file = onnx_models.conv(repo / "resnet" / "1" / "model.onnx")
    text = generating.generate(
        model_file, generating.GenerateOptions(dynamic_batching=True, instances=2, kind="gpu")
    )
    from google.protobuf import text_format

    config = text_format.Parse(text, triton.ModelConfig())
    assert config.name == "resnet"
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == generating.AUTO_COMPLETE_MAX_BATCH_SIZE
    assert list(config.input[0].dims) == [3, 224, 224]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert triton.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == "KIND_GPU"
    assert config.instance_group[0].count == 2


def test_fixed_shape_model_gets_full_dims_without_batching(repo):
    model_file = onnx_models.linear(repo / "fixed" / "1" / "model.onnx", in_shape=(1, 4))
    text = generating.generate(model_file, generating.GenerateOptions())
    assert "max_batch_size: 0" in text
    (repo / "fixed" / "config.pbtxt").write_text(text)
    assert validating.validate(repo).findings == ()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            generating.GenerateOptions(max_batch_size=8),
            "--max-batch-size 8: the model cannot batch, these tensors have a fixed first dim: input [1, 4]",
        ),
        (
            generating.GenerateOptions(max_batch_size=0, dynamic_batching=True),
            "--dynamic-batching: needs a batchable model",
        ),
        (generating.GenerateOptions(instances=0), "--instances: must be >= 1"),
        (generating.GenerateOptions(kind="tpu"), "--kind 'tpu': use cpu or gpu"),
    ],
    ids=["batching-a-fixed-model", "dynamic-batching-without-batching", "zero-instances", "bad-kind"],
)
def test_bad_options_are_input_errors(repo, options, message):
    model_file = onnx_models.linear(repo / "m" / "1" / "model.onnx", in_shape=(1, 4))
    with pytest.raises(errors.InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        generating.generate(model_file, options)


def test_cli_writes_next_to_the_version_and_refuses_to_overwrite(run_cli, repo):
    model_file = onnx_models.linear(repo / "linear" / "1" / "model.onnx")
    first = run_cli("repo", "gen-config", str(model_file), "--dynamic-batching", "--max-batch-size", "8")
    assert first.returncode == 0, first.stderr
    assert (repo / "linear" / "config.pbtxt").exists()
    again = run_cli("repo", "gen-config", str(model_file))
    assert again.returncode == 2 and "exists; pass --force" in again.stderr
    stdout = run_cli("repo", "gen-config", str(model_file), "-o", "-")
    assert stdout.returncode == 0 and 'name: "linear"' in stdout.stdout
    broken = repo / "broken.onnx"
    broken.write_bytes(b"garbage")
    bad = run_cli("repo", "gen-config", str(broken), "-o", "-")
    assert bad.returncode == 2 and "broken.onnx" in bad.stderr and "Traceback" not in bad.stderr


def _wrong_inputs(repo):
    """Paths a new user gives gen-config instead of an ONNX file, each with what the error must say."""
    model = repo / "linear"
    onnx_models.linear(model / "1" / "model.onnx")
    (model / "config.pbtxt").write_text('name: "linear"\n')
    (repo / "README.txt").write_text("my notes\n")
    return {
        "pbtxt": (model / "config.pbtxt", "a Triton model config (.pbtxt), not an ONNX model"),
        "folder": (model, "is a folder"),
        "missing": (model / "2" / "model.onnx", "no such file"),
        "not-onnx-suffix": (repo / "README.txt", "a .txt file, not an ONNX model"),
    }


@pytest.mark.parametrize("case", ["pbtxt", "folder", "missing", "not-onnx-suffix"])
def test_cli_wrong_file_is_a_clear_error_naming_it(run_cli, repo, case):
    path, fragment = _wrong_inputs(repo)[case]
    result = run_cli("repo", "gen-config", str(path), "-o", "-")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.startswith(f"tritonops: {path}: {fragment}")
    assert "gen-config reads an .onnx model file" in result.stderr
    # Points at the model file that is there.
    assert str(repo / "linear" / "1" / "model.onnx") in result.stderr
