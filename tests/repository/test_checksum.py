"""`repo checksum`: per-version SHA-256 manifests, verification, and Triton's agent block."""

from __future__ import annotations

import hashlib

import pytest

from tests.repository.conftest import mode_of
from tritonops.repository import checksums


def test_write_then_verify_then_detect_tampering(run_cli, repo, add_linear):
    model = add_linear(versions=(1, 2))
    written = run_cli("repo", "checksum", str(repo), "--write")
    assert written.returncode == 0, written.stderr
    manifest = model / "1.sha256"
    digest = hashlib.sha256((model / "1" / "model.onnx").read_bytes()).hexdigest()
    assert manifest.read_text() == f"{digest}  model.onnx\n"
    assert run_cli("repo", "checksum", str(repo), "--verify").returncode == 0
    (model / "2" / "model.onnx").write_bytes(b"tampered")
    (model / "2" / "extra.txt").write_text("new")
    verify = run_cli("repo", "checksum", str(model), "--verify")
    assert verify.returncode == 1
    assert "FAILED  linear version 2: model.onnx changed; extra.txt not in the manifest" in verify.stdout
    assert "ok      linear version 1" in verify.stdout


def test_missing_manifest_fails_verification(run_cli, repo, add_linear):
    add_linear()
    result = run_cli("repo", "checksum", str(repo), "--verify")
    assert result.returncode == 1 and "MISSING linear version 1" in result.stdout


def test_nested_files_are_listed_with_relative_paths(repo, add_linear):
    model = add_linear()
    (model / "1" / "assets").mkdir()
    (model / "1" / "assets" / "vocab.txt").write_text("a\nb\n")
    assert list(checksums.file_digests(model / "1")) == ["assets/vocab.txt", "model.onnx"]


def test_version_digest_changes_with_any_file(repo, add_linear):
    model = add_linear()
    before = checksums.version_digest(model / "1")
    (model / "1" / "notes.txt").write_text("x")
    assert before.startswith("sha256:") and checksums.version_digest(model / "1") != before


def test_agent_block_uses_md5_keys_relative_to_the_model(run_cli, repo, add_linear):
    model = add_linear()
    md5 = hashlib.md5((model / "1" / "model.onnx").read_bytes()).hexdigest()
    result = run_cli("repo", "checksum", str(model), "--agent-block")
    assert result.returncode == 0
    assert f'key: "MD5:1/model.onnx"\n      value: "{md5}"' in result.stdout
    assert 'name: "checksum"' in result.stdout


def test_manifest_is_not_read_by_triton_as_a_version(repo, add_linear):
    from tritonops.repository import validator

    add_linear()
    checksums.write_manifests(repo)
    assert validator.validate(repo).findings == ()


def test_corrupt_manifest_and_missing_path_exit_2(run_cli, repo, add_linear):
    model = add_linear()
    (model / "1.sha256").write_text("not a manifest\n")
    corrupt = run_cli("repo", "checksum", str(repo), "--verify")
    assert corrupt.returncode == 2 and "1.sha256:1: not a sha256sum line" in corrupt.stderr
    missing = run_cli("repo", "checksum", str(repo / "absent"), "--verify")
    assert missing.returncode == 2 and "no such model repository or model folder" in missing.stderr


def test_agent_block_on_a_repository_root_names_its_models_and_exits_2(run_cli, repo, add_linear):
    add_linear("linear")
    add_linear("other")
    result = run_cli("repo", "checksum", str(repo), "--agent-block")
    assert result.returncode == 2 and result.stdout == ""
    assert f"{repo}: a model repository (models: linear, other), not one model folder" in result.stderr
    assert f"`tritonops repo checksum {repo / 'linear'} --agent-block`" in result.stderr


@pytest.mark.parametrize("mode", ["--agent-block", "--write", "--verify"])
@pytest.mark.parametrize("where", ["empty-folder", "version-folder"])
def test_a_path_without_versions_is_refused_and_nothing_is_written(run_cli, repo, add_linear, mode, where):
    model = add_linear()
    path = repo / "empty" if where == "empty-folder" else model / "1"
    path.mkdir(exist_ok=True)
    before = sorted(p.relative_to(repo) for p in repo.rglob("*"))
    result = run_cli("repo", "checksum", str(path), mode)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    expected = (
        "no model versions found"
        if where == "empty-folder"
        else f"a version folder; give its model folder {model}"
    )
    assert result.stderr.startswith(f"tritonops: {path}: {expected}")
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before


@pytest.mark.parametrize(
    ("umask_value", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o644)], ids=["022", "002", "077"]
)
def test_write_creates_manifests_the_pod_can_read(run_cli, repo, add_linear, umask, umask_value, expected):
    # mkstemp's 0600 hid the manifests from the pod, which reads the repository as UID 1000 over NFS.
    umask(umask_value)
    model = add_linear()
    result = run_cli("repo", "checksum", str(repo), "--write")
    assert result.returncode == 0, result.stderr
    assert mode_of(model / "1.sha256") == expected


def test_rewriting_a_manifest_keeps_its_mode(run_cli, repo, add_linear, umask):
    model = add_linear()
    (model / "1.sha256").write_text("stale\n")
    (model / "1.sha256").chmod(0o640)
    result = run_cli("repo", "checksum", str(model), "--write")
    assert result.returncode == 0, result.stderr
    assert mode_of(model / "1.sha256") == 0o640 and "model.onnx" in (model / "1.sha256").read_text()


@pytest.mark.parametrize("mode", ["--agent-block", "--write", "--verify"])
@pytest.mark.parametrize("which", ["model-file", "config"])
def test_a_file_is_refused_naming_its_model_folder(run_cli, repo, add_linear, mode, which):
    model = add_linear()
    path = model / "1" / "model.onnx" if which == "model-file" else model / "config.pbtxt"
    result = run_cli("repo", "checksum", str(path), mode)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == (
        f"tritonops: {path}: a file; repo checksum takes a model folder (or a repository root): "
        f"give {model}\n"
    )
    assert not (model / "1.sha256").exists()
