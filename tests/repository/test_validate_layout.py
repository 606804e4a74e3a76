"""Layout: what Triton would misread or skip silently is reported, with the folder named."""

from __future__ import annotations

import pytest

from tritonops import errors
from tritonops.repository import validating


def _messages(report):
    return [f"{f.severity.value}: {f.message}" for f in report.findings]


def test_clean_model_validates_clean(repo, add_linear):
    add_linear()
    report = validating.validate(repo)
    assert report.findings == ()
    assert report.models == ("linear",)


@pytest.mark.parametrize(
    ("folder", "fragment"),
    [
        ("3.failed_20261125", "Triton reads '3.failed_20261125' as version 3"),
        ("007", "version folder '007' has a leading zero; Triton would read it as 7: rename it to 7"),
        ("0", "version folder '0' has a leading zero"),
        ("backup", "folder 'backup' is not a version: Triton skips it silently"),
        (".ipynb_checkpoints", "folder '.ipynb_checkpoints' is not a version"),
    ],
    ids=["quarantine-suffix", "zero-prefixed", "zero", "non-integer", "hidden"],
)
def test_misleading_version_folders_are_errors(repo, add_linear, folder, fragment):
    model = add_linear()
    (model / folder).mkdir()
    report = validating.validate(repo)
    assert not report.passed
    (finding,) = report.errors
    assert fragment in finding.message
    assert finding.file.endswith(folder)


def test_empty_version_folder_is_an_error(repo, add_linear):
    model = add_linear()
    (model / "2").mkdir()
    (finding,) = validating.validate(repo).errors
    assert finding.message.startswith("empty version folder: Triton fails to load version 2")
    assert finding.version == "2"


def test_missing_model_file_names_the_expected_file(repo, add_linear):
    model = add_linear()
    (model / "1" / "model.onnx").rename(model / "1" / "weights.onnx")
    (finding,) = validating.validate(repo).errors
    assert "no model.onnx" in finding.message


def test_default_model_filename_is_honoured(repo, add_linear):
    config = (
        'platform: "onnxruntime_onnx"\ndefault_model_filename: "weights.onnx"\nmax_batch_size: 8\n'
        'input [{ name: "input" data_type: TYPE_FP32 dims: [4] }]\noutput [{ name: "output" data_type: TYPE_FP32 dims: [2] }]\n'
    )
    model = add_linear(config=config)
    (model / "1" / "model.onnx").rename(model / "1" / "weights.onnx")
    assert validating.validate(repo).passed


def test_model_without_versions_is_an_error(repo):
    (repo / "empty").mkdir()
    (repo / "empty" / "config.pbtxt").write_text('backend: "python"\n')
    messages = _messages(validating.validate(repo))
    assert "error: no version folders (1, 2, ...): Triton has nothing to load" in messages


def test_missing_config_is_a_warning_when_triton_can_auto_complete(repo, add_linear):
    model = add_linear()
    (model / "config.pbtxt").unlink()
    report = validating.validate(repo)
    assert report.passed
    assert "no config.pbtxt: Triton will auto-complete" in report.findings[0].message


def test_missing_config_for_a_python_model_is_an_error(repo):
    (repo / "pre" / "1").mkdir(parents=True)
    (repo / "pre" / "1" / "model.py").write_text("class TritonPythonModel: ...\n")
    (finding,) = validating.validate(repo).errors
    assert "Triton cannot auto-complete this model's config" in finding.message


def test_files_at_the_repository_root_are_not_models(repo, add_linear):
    add_linear()
    (repo / "current.json").write_text("{}")
    assert validating.validate(repo).models == ("linear",)


def test_single_model_selection_and_unknown_model(repo, add_linear):
    add_linear("a")
    add_linear("b")
    assert validating.validate(repo, model="b").models == ("b",)
    with pytest.raises(errors.InputError, match="--model 'c': no such model folder"):
        validating.validate(repo, model="c")


def test_unusable_paths_are_input_errors(tmp_path):
    with pytest.raises(errors.InputError, match="no such model repository"):
        validating.validate(tmp_path / "absent")
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(errors.InputError, match="not a folder"):
        validating.validate(file)


def test_symlink_loop_is_one_finding_and_does_not_hang(repo, add_linear):
    add_linear()
    (repo / "loop").symlink_to(repo / "loop")
    model = repo / "linear"
    (model / "2").mkdir()
    (model / "2" / "model.onnx").symlink_to(model / "2" / "model.onnx")
    report = validating.validate(repo)
    messages = [f.message for f in report.errors]
    assert any(m.startswith("symlink loop") for m in messages)
    assert any("Too many levels of symbolic links" in m for m in messages)


def test_broken_symlink_model_is_reported(repo, add_linear):
    add_linear()
    (repo / "gone").symlink_to(repo / "nowhere")
    (finding,) = validating.validate(repo).errors
    assert finding.message.startswith("broken symlink")
