"""Bad input: one clear finding or error each, never a traceback, never a hang; CLI exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tritonops.repository import validator


def _model_error(repo):
    report = validator.validate(repo)
    assert len(report.errors) == 1, [str(f) for f in report.findings]
    return report.errors[0]


def test_truncated_onnx_is_one_finding(repo, add_linear):
    model_file = add_linear() / "1" / "model.onnx"
    model_file.write_bytes(model_file.read_bytes()[:40])
    finding = _model_error(repo)
    assert finding.file == str(model_file)
    assert "re-export" in finding.message


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "empty file; re-export the model"),
        (b"PK\x03\x04 this is a zip file, not onnx" * 10, "re-export"),
    ],
    ids=["empty", "not-onnx"],
)
def test_non_onnx_files_are_one_finding(repo, add_linear, content, fragment):
    model_file = add_linear() / "1" / "model.onnx"
    model_file.write_bytes(content)
    assert fragment in _model_error(repo).message


def test_two_gigabyte_model_is_reported_without_reading_it(repo, add_linear):
    model_file = add_linear() / "1" / "model.onnx"
    with model_file.open("r+b") as handle:
        handle.truncate(2**31)  # sparse: nothing is written or read
    finding = _model_error(repo)
    assert "exceeds protobuf's 2 GiB limit; export the model with external data" in finding.message


def test_validate_cli_exit_codes_and_json(run_cli, repo, add_linear):
    add_linear("good")
    clean = run_cli("repo", "validate", str(repo))
    assert clean.returncode == 0, clean.stdout
    assert "1 model(s): 0 error(s), 0 warning(s)" in clean.stdout
    add_linear("bad", config='platform: "onnxruntime_onnx"\nmax_batch_size: 8\nbogus: 1\n')
    dirty = run_cli("repo", "validate", str(repo), "--json")
    assert dirty.returncode == 1
    (finding,) = json.loads(dirty.stdout)
    assert set(finding) == {"model", "version", "file", "line", "column", "field", "severity", "message"}
    assert finding["model"] == "bad" and finding["line"] == 3 and finding["severity"] == "error"
    missing = run_cli("repo", "validate", str(repo / "absent"))
    assert missing.returncode == 2
    assert "no such model repository" in missing.stderr and "Traceback" not in missing.stderr


def test_validate_cli_flags_kind_gpu_for_a_cpu_environment(run_cli, repo, add_linear):
    config = 'platform: "onnxruntime_onnx"\nmax_batch_size: 8\ninput [{ name: "input" data_type: TYPE_FP32 dims: [4] }]\noutput [{ name: "output" data_type: TYPE_FP32 dims: [2] }]\ninstance_group [{ kind: KIND_GPU }]\n'
    add_linear(config=config)
    assert run_cli("repo", "validate", str(repo), "--env", "prod").returncode == 0
    dev = run_cli("repo", "validate", str(repo), "--env", "dev")
    assert dev.returncode == 1 and "KIND_GPU on an environment without GPUs" in dev.stdout


def _without_file_override(command: list[str]) -> list[str]:
    """Root reads every folder; dropping CAP_DAC_OVERRIDE/READ_SEARCH makes permissions count."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *command]


def test_unreadable_model_folder_is_one_finding(repo, add_linear):
    add_linear("open")
    locked = add_linear("locked")
    locked.chmod(0o000)
    try:
        command = _without_file_override(
            [sys.executable, "-m", "tritonops.cli", "repo", "validate", str(repo), "--json"]
        )
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 1, result.stderr
    findings = json.loads(result.stdout)
    assert [f["model"] for f in findings] == ["locked"]
    assert findings[0]["message"].startswith("cannot list folder: Permission denied")


def test_model_file_with_a_text_suffix_is_read_as_binary_onnx_like_triton(repo, add_linear):
    # onnx.load would pick a text parser from a .txt/.json/.pbtxt suffix and raise its own ParseError;
    # Triton's ONNX Runtime backend reads the bytes as a binary model whatever the name.
    model = add_linear()
    (model / "1" / "model.onnx").rename(model / "1" / "model.txt")
    config = (model / "config.pbtxt").read_text() + 'default_model_filename: "model.txt"\n'
    (model / "config.pbtxt").write_text(config)
    assert validator.validate(repo).findings == ()
    (model / "1" / "model.txt").write_text('ir_version: 8\nname: "not binary"\n')
    assert "not a readable ONNX model" in _model_error(repo).message
