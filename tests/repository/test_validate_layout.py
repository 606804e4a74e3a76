"""Layout: what Triton would misread or skip silently is reported, with the folder named."""

from __future__ import annotations

import os

import pytest

from tritonops import errors
from tritonops.repository import checksums, validator


def _messages(report):
    return [f"{f.severity.value}: {f.message}" for f in report.findings]


def test_clean_model_validates_clean(repo, add_linear):
    add_linear()
    report = validator.validate(repo)
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
    report = validator.validate(repo)
    assert not report.passed
    (finding,) = report.errors
    assert fragment in finding.message
    assert finding.file.endswith(folder)


def test_the_promotion_work_area_and_other_dot_folders_are_not_models(repo, add_linear):
    add_linear()
    quarantined = repo / ".tritonops" / "quarantine" / "linear" / "2-20261126T000000Z"
    quarantined.mkdir(parents=True)
    (quarantined / "model.onnx").write_bytes(b"not a model")
    (repo / ".tritonops" / "staging" / "linear-3-abc" / "model.onnx").parent.mkdir(parents=True)
    (repo / ".git").mkdir()

    report = validator.validate(repo)

    assert report.models == ("linear",)
    assert report.findings == ()
    assert [(model, number) for model, number, _ in checksums.versions(repo)] == [("linear", 1)]


def test_empty_version_folder_is_an_error(repo, add_linear):
    model = add_linear()
    (model / "2").mkdir()
    (finding,) = validator.validate(repo).errors
    assert finding.message.startswith("empty version folder: Triton fails to load version 2")
    assert finding.version == "2"


def test_missing_model_file_names_the_expected_file(repo, add_linear):
    model = add_linear()
    (model / "1" / "model.onnx").rename(model / "1" / "weights.onnx")
    (finding,) = validator.validate(repo).errors
    assert "no model.onnx" in finding.message


def test_default_model_filename_is_honoured(repo, add_linear):
    config = (
        'platform: "onnxruntime_onnx"\ndefault_model_filename: "weights.onnx"\nmax_batch_size: 8\n'
        'input [{ name: "input" data_type: TYPE_FP32 dims: [4] }]\noutput [{ name: "output" data_type: TYPE_FP32 dims: [2] }]\n'
    )
    model = add_linear(config=config)
    (model / "1" / "model.onnx").rename(model / "1" / "weights.onnx")
    assert validator.validate(repo).passed


def test_model_without_versions_is_an_error(repo):
    (repo / "empty").mkdir()
    (repo / "empty" / "config.pbtxt").write_text('backend: "python"\n')
    messages = _messages(validator.validate(repo))
    assert "error: no version folders (1, 2, ...): Triton has nothing to load" in messages


def test_missing_config_is_a_warning_when_triton_can_auto_complete(repo, add_linear):
    model = add_linear()
    (model / "config.pbtxt").unlink()
    report = validator.validate(repo)
    assert report.passed
    assert "no config.pbtxt: Triton will auto-complete" in report.findings[0].message


def test_missing_config_for_a_python_model_is_an_error(repo):
    (repo / "pre" / "1").mkdir(parents=True)
    (repo / "pre" / "1" / "model.py").write_text("class TritonPythonModel: ...\n")
    (finding,) = validator.validate(repo).errors
    assert "Triton cannot auto-complete this model's config" in finding.message


def test_files_at_the_repository_root_are_not_models(repo, add_linear):
    add_linear()
    (repo / "current.json").write_text("{}")
    assert validator.validate(repo).models == ("linear",)


def test_single_model_selection_and_unknown_model(repo, add_linear):
    add_linear("a")
    add_linear("b")
    assert validator.validate(repo, model="b").models == ("b",)
    with pytest.raises(errors.InputError, match="--model 'c': no such model folder"):
        validator.validate(repo, model="c")


def test_unusable_paths_are_input_errors(tmp_path):
    with pytest.raises(errors.InputError, match="no such model repository"):
        validator.validate(tmp_path / "absent")
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(errors.InputError, match="not a folder"):
        validator.validate(file)


def test_symlink_loop_is_one_finding_and_does_not_hang(repo, add_linear):
    add_linear()
    (repo / "loop").symlink_to(repo / "loop")
    model = repo / "linear"
    (model / "2").mkdir()
    (model / "2" / "model.onnx").symlink_to(model / "2" / "model.onnx")
    report = validator.validate(repo)
    messages = [f.message for f in report.errors]
    assert any(m.startswith("symlink loop") for m in messages)
    assert any("Too many levels of symbolic links" in m for m in messages)


def test_broken_symlink_model_is_reported(repo, add_linear):
    add_linear()
    (repo / "gone").symlink_to(repo / "nowhere")
    (finding,) = validator.validate(repo).errors
    assert finding.message.startswith("broken symlink")


def test_a_model_folder_given_as_the_root_is_refused_naming_the_root(run_cli, repo, add_linear):
    model = add_linear()
    result = run_cli("repo", "validate", str(model))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(
        f"tritonops: {model}: looks like a model folder (it holds config.pbtxt), not a repository; "
        "give the repository root (the folder holding model folders)"
    )
    assert f"`tritonops repo validate {repo} --model linear`" in result.stderr


def test_a_model_folder_without_config_and_a_version_folder_are_refused(repo, add_linear):
    model = add_linear(versions=(1, 2))
    (model / "config.pbtxt").unlink()
    with pytest.raises(errors.InputError, match=r"looks like a model folder \(version folder\(s\) 1, 2\)"):
        validator.validate(model)
    (model / "config.pbtxt").write_text('name: "linear"\n')
    with pytest.raises(errors.InputError, match="looks like a version folder of the model linear"):
        validator.validate(model / "1")


def test_files_the_pod_cannot_read_are_a_warning_with_the_chmod(repo, add_linear):
    model = add_linear()
    checksums.write_manifests(repo)
    (model / "config.pbtxt").chmod(0o600)
    (model / "1.sha256").chmod(0o600)
    (model / "1").chmod(0o700)
    try:
        report = validator.validate(repo)
    finally:
        (model / "1").chmod(0o755)
    assert report.passed
    (finding,) = report.findings
    assert finding.severity.value == "warning" and finding.model == "linear"
    assert "the pod runs as another user (uid 1000, gid 1000) and cannot read" in finding.message
    for shown in ("1/ (0700)", "1.sha256 (0600)", "config.pbtxt (0600)"):
        assert shown in finding.message
    assert finding.message.endswith(f"Run `chmod -R o+rX {model}`")


def test_a_record_the_pod_cannot_read_is_a_warning(repo, add_linear):
    add_linear()
    state = repo / "current.json"
    state.write_text('{"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {}}')
    state.chmod(0o600)
    (finding,) = validator.validate(repo).findings
    assert "cannot read current.json (0600)" in finding.message
    assert finding.message.endswith(f"Run `chmod o+r {state}`")


def test_files_the_pod_user_owns_need_no_access_for_others(repo, add_linear):
    model = add_linear()
    (model / "config.pbtxt").chmod(0o600)
    owner = (os.getuid(), os.getgid())
    assert validator.validate(repo, pod_user=owner).findings == ()
    group_only = (os.getuid() + 1, os.getgid())
    (model / "config.pbtxt").chmod(0o640)
    assert validator.validate(repo, pod_user=group_only).findings == ()
    (model / "config.pbtxt").chmod(0o600)
    assert len(validator.validate(repo, pod_user=group_only).findings) == 1


AGENT_BLOCK = 'model_repository_agents { agents [ { name: "checksum" parameters { key: "MD5:1/model.onnx" value: "0" } } ] }\n'


def test_a_checksum_agent_block_is_a_warning_on_the_local_tier_only(run_cli, repo, add_linear):
    model = add_linear()
    (model / "config.pbtxt").write_text((model / "config.pbtxt").read_text() + AGENT_BLOCK)
    assert validator.validate(repo).findings == ()
    (finding,) = validator.validate(repo, local_tier=True).findings
    assert (finding.model, finding.field, finding.severity.value) == (
        "linear",
        "model_repository_agents",
        "warning",
    )
    assert "has no libtritonrepoagent_checksum.so: `tritonops up` fails to load this model" in finding.message
    local = run_cli("repo", "validate", str(repo), "--env", "local")
    assert local.returncode == 0 and "libtritonrepoagent_checksum.so" in local.stdout
    prod = run_cli("repo", "validate", str(repo), "--env", "prod")
    assert prod.returncode == 0 and "libtritonrepoagent_checksum.so" not in prod.stdout
