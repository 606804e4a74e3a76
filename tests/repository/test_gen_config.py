"""`repo gen-config`: a config from the ONNX graph that passes `repo validate`."""

from __future__ import annotations

import pytest

from tests.repository.conftest import mode_of
from tritonops import errors
from tritonops.repository import config_generator, validator
from tritonops.triton import client as triton_client
from tritonops.triton import onnx_models

BUILDERS = onnx_models.BUILDERS


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("dynamic_batching", [False, True], ids=["plain", "dynamic-batching"])
def test_generated_config_validates_clean(repo, name, dynamic_batching):
    model_file = BUILDERS[name](repo / name / "1" / "model.onnx")
    options = config_generator.GenerateOptions(
        max_batch_size=16, dynamic_batching=dynamic_batching, instances=2
    )
    (repo / name / "config.pbtxt").write_text(config_generator.generate(model_file, options))
    report = validator.validate(repo)
    assert report.findings == (), [str(f) for f in report.findings]


def test_generated_config_content(repo):
    model_file = onnx_models.conv(repo / "resnet" / "1" / "model.onnx")
    text = config_generator.generate(
        model_file, config_generator.GenerateOptions(dynamic_batching=True, instances=2, kind="gpu")
    )
    from google.protobuf import text_format

    config = text_format.Parse(text, triton_client.ModelConfig())
    assert config.name == "resnet"
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == config_generator.AUTO_COMPLETE_MAX_BATCH_SIZE
    assert list(config.input[0].dims) == [3, 224, 224]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert triton_client.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == "KIND_GPU"
    assert config.instance_group[0].count == 2


def test_fixed_shape_model_gets_full_dims_without_batching(repo):
    model_file = onnx_models.linear(repo / "fixed" / "1" / "model.onnx", in_shape=(1, 4))
    text = config_generator.generate(model_file, config_generator.GenerateOptions())
    assert "max_batch_size: 0" in text
    (repo / "fixed" / "config.pbtxt").write_text(text)
    assert validator.validate(repo).findings == ()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            config_generator.GenerateOptions(max_batch_size=8),
            "--max-batch-size 8: the model cannot batch, these tensors have a fixed first dim: input [1, 4]",
        ),
        (
            config_generator.GenerateOptions(max_batch_size=0, dynamic_batching=True),
            "--dynamic-batching: needs a batchable model",
        ),
        (config_generator.GenerateOptions(instances=0), "--instances: must be >= 1"),
        (config_generator.GenerateOptions(kind="tpu"), "--kind 'tpu': use cpu or gpu"),
    ],
    ids=["batching-a-fixed-model", "dynamic-batching-without-batching", "zero-instances", "bad-kind"],
)
def test_bad_options_are_input_errors(repo, options, message):
    model_file = onnx_models.linear(repo / "m" / "1" / "model.onnx", in_shape=(1, 4))
    with pytest.raises(errors.InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_generator.generate(model_file, options)


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


@pytest.mark.parametrize(
    ("umask_value", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o644)], ids=["022", "002", "077"]
)
def test_cli_writes_a_config_the_pod_can_read(run_cli, repo, umask, umask_value, expected):
    # mkstemp's 0600 hid the config from the pod, which reads the repository as UID 1000 over NFS.
    umask(umask_value)
    model_file = onnx_models.linear(repo / "linear" / "1" / "model.onnx")
    result = run_cli("repo", "gen-config", str(model_file))
    assert result.returncode == 0, result.stderr
    assert mode_of(repo / "linear" / "config.pbtxt") == expected


def test_force_keeps_the_mode_of_the_config_it_replaces(run_cli, repo, umask):
    model_file = onnx_models.linear(repo / "linear" / "1" / "model.onnx")
    config = repo / "linear" / "config.pbtxt"
    config.write_text('name: "linear"\n')
    config.chmod(0o640)
    result = run_cli("repo", "gen-config", str(model_file), "--force")
    assert result.returncode == 0, result.stderr
    assert mode_of(config) == 0o640 and "max_batch_size" in config.read_text()


def test_output_folder_means_its_config_pbtxt_and_is_refused_without_force(run_cli, repo):
    model_file = onnx_models.linear(repo / "linear" / "1" / "model.onnx")
    elsewhere = repo.parent / "elsewhere"
    elsewhere.mkdir()
    first = run_cli("repo", "gen-config", str(model_file), "-o", str(elsewhere))
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"wrote {elsewhere / 'config.pbtxt'}\n"
    again = run_cli("repo", "gen-config", str(model_file), "-o", str(elsewhere))
    assert again.returncode == 2
    assert again.stderr.startswith(f"tritonops: {elsewhere / 'config.pbtxt'}: exists; pass --force")
    forced = run_cli("repo", "gen-config", str(model_file), "-o", str(elsewhere), "--force")
    assert forced.returncode == 0, forced.stderr  # was IsADirectoryError


def _output_cases(repo):
    a_file = repo.parent / "a-file"
    a_file.write_text("x")
    return {
        "missing-parent": (
            repo.parent / "absent" / "config.pbtxt",
            f"the folder {repo.parent / 'absent'} does not exist; create it (mkdir -p",
        ),
        "parent-is-a-file": (a_file / "config.pbtxt", f"{a_file} is a file, not a folder"),
    }


@pytest.mark.parametrize("case", ["missing-parent", "parent-is-a-file"])
def test_unusable_output_path_is_an_input_error_naming_it(run_cli, repo, case):
    model_file = onnx_models.linear(repo / "linear" / "1" / "model.onnx")
    target, fragment = _output_cases(repo)[case]
    result = run_cli("repo", "gen-config", str(model_file), "-o", str(target))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.startswith(f"tritonops: -o {target}: {fragment}")


def test_force_keeps_the_version_policy_pin_of_the_config_it_replaces(run_cli, repo):
    model_file = onnx_models.linear(repo / "linear" / "1" / "model.onnx", in_shape=("batch", 4))
    config = repo / "linear" / "config.pbtxt"
    first = run_cli("repo", "gen-config", str(model_file))
    assert first.returncode == 0, first.stderr
    config.write_text(config.read_text() + "version_policy { specific { versions: [ 1 ] } }\n")
    forced = run_cli("repo", "gen-config", str(model_file), "--force", "--dynamic-batching")
    assert forced.returncode == 0, forced.stderr
    assert "kept the replaced config's version_policy { specific { versions: 1 } }" in forced.stdout
    from google.protobuf import text_format

    rewritten = text_format.Parse(config.read_text(), triton_client.ModelConfig())
    assert list(rewritten.version_policy.specific.versions) == [1]
    assert rewritten.dynamic_batching.max_queue_delay_microseconds == 100
    assert validator.validate(repo).errors == []


def test_force_refuses_to_replace_an_unreadable_config_that_may_pin_a_version(run_cli, repo):
    model_file = onnx_models.linear(repo / "linear" / "1" / "model.onnx")
    config = repo / "linear" / "config.pbtxt"
    broken = "bogus_field: 1\nversion_policy { specific { versions: [ 1 ] } }\n"
    config.write_text(broken)
    result = run_cli("repo", "gen-config", str(model_file), "--force")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "holds a version_policy but is not a valid config" in result.stderr
    assert config.read_text() == broken


@pytest.mark.parametrize("dynamic_batching", [False, True], ids=["plain", "dynamic-batching"])
def test_header_mentions_dynamic_batching_only_when_the_config_has_it(repo, dynamic_batching):
    model_file = onnx_models.linear(repo / "linear" / "1" / "model.onnx")
    text = config_generator.generate(
        model_file, config_generator.GenerateOptions(dynamic_batching=dynamic_batching)
    )
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any("dynamic_batching" in line for line in header) == dynamic_batching
    assert ("dynamic_batching {" in text) == dynamic_batching
