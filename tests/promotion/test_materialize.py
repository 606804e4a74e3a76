"""Materialize and verify a candidate from a local folder or file: copied whole into staging,
checked against its checksum manifest and `repo validate` against the model's config; bad sources
are refused with nothing created in the repository."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest

from tritonops import errors
from tritonops.promotion import materialize, workarea
from tritonops.repository import checksums
from tritonops.triton import onnx_models


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    root.mkdir()
    return root


def linear_folder(root: Path, name: str = "v2", **shape: object) -> Path:
    return onnx_models.linear(root / name / "model.onnx", **shape).parent  # type: ignore[arg-type]


def with_external_data(folder: Path, location: str = "weights.bin") -> Path:
    """Re-save folder/model.onnx with every tensor in one external-data file beside it."""
    model = onnx.load(str(folder / "model.onnx"))
    onnx.save(
        model, str(folder / "model.onnx"), save_as_external_data=True, location=location, size_threshold=0
    )
    return folder


def nothing_created(repo: Path) -> bool:
    return not workarea.root(repo).exists() and sorted(p.name for p in (repo / "linear").iterdir()) == [
        "1",
        "config.pbtxt",
    ]


def test_a_local_folder_is_copied_whole_and_verified(repo: Path, artifacts: Path) -> None:
    source = with_external_data(linear_folder(artifacts))
    (source / "README.txt").write_text("notes travel with the version\n")

    staged = materialize.materialize(str(source), repo, "linear", 2)

    assert staged.path.parent == workarea.staging_dir(repo)
    assert checksums.file_digests(staged.path) == checksums.file_digests(source)
    assert (staged.version, staged.resolved_source, staged.digest) == (
        2,
        str(source),
        checksums.version_digest(source),
    )
    assert staged.description == f"local folder {source}"
    # onnx.save writes external data 0600; the pod reads the repository as another user.
    assert (source / "weights.bin").stat().st_mode & 0o777 == 0o600
    assert (staged.path / "weights.bin").stat().st_mode & 0o044 == 0o044
    assert materialize.verify(staged, repo, "linear") == []
    assert workarea.stage(staged.path, repo, "linear", 2).path == repo / "linear" / "2"


def test_a_manifest_beside_the_folder_is_checked(repo: Path, artifacts: Path) -> None:
    source = linear_folder(artifacts)
    checksums.write_manifests(artifacts / "v2")  # the folder itself: a manifest beside each version
    manifest = artifacts / "v2.sha256"
    manifest.write_text(checksums.manifest_text(checksums.file_digests(source)))

    staged = materialize.materialize(str(source), repo, "linear", 2)

    assert staged.manifest == manifest and "(manifest v2.sha256)" in staged.description
    assert materialize.verify(staged, repo, "linear") == []


def test_a_corrupted_file_is_refused_by_its_manifest_before_anything_is_staged(
    repo: Path, artifacts: Path
) -> None:
    source = linear_folder(artifacts)
    (artifacts / "v2.sha256").write_text(checksums.manifest_text(checksums.file_digests(source)))
    data = bytearray((source / "model.onnx").read_bytes())
    data[-1] ^= 0xFF  # one flipped bit, as a bad disk or a truncated copy leaves it
    (source / "model.onnx").write_bytes(bytes(data))
    staged = materialize.materialize(str(source), repo, "linear", 2)

    with pytest.raises(errors.CandidateRejected, match=r"do not match the manifest .*: model\.onnx changed"):
        materialize.verify(staged, repo, "linear")

    assert not (repo / "linear" / "2").exists()


@pytest.mark.parametrize(
    "filename", [None, "weights.onnx"], ids=["platform-default", "default_model_filename"]
)
def test_a_local_file_is_placed_under_the_name_the_config_expects(
    repo: Path, artifacts: Path, filename: str | None
) -> None:
    if filename:
        config = repo / "linear" / "config.pbtxt"
        config.write_text(
            config.read_text().replace(
                "max_batch_size", f'default_model_filename: "{filename}"\nmax_batch_size'
            )
        )
    source = with_external_data(linear_folder(artifacts))

    staged = materialize.materialize(str(source / "model.onnx"), repo, "linear", 2)

    assert sorted(p.name for p in staged.path.iterdir()) == sorted([filename or "model.onnx", "weights.bin"])
    assert staged.description == f"local file {source / 'model.onnx'}"
    assert materialize.verify(staged, repo, "linear") == []


def test_a_model_whose_graph_disagrees_with_the_config_is_refused(repo: Path, artifacts: Path) -> None:
    staged = materialize.materialize(str(linear_folder(artifacts, out_features=3)), repo, "linear", 2)

    with pytest.raises(errors.CandidateRejected) as raised:
        materialize.verify(staged, repo, "linear")

    assert "is not a valid version 2 of linear" in str(raised.value)
    assert "output 'output'" in str(raised.value)
    assert raised.value.findings and raised.value.exit_code == 2


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda folder: (folder / "model.onnx").write_bytes(b"\x00garbage"), "not a readable ONNX model"),
        (lambda folder: (folder / "model.onnx").unlink(), "no model.onnx"),
        (
            lambda folder: (with_external_data(folder) / "weights.bin").unlink(),
            "external-data file weights.bin",
        ),
    ],
    ids=["corrupted-model", "no-model-file", "external-data-left-behind"],
)
def test_a_broken_artifact_is_refused(repo: Path, artifacts: Path, damage, message: str) -> None:
    source = linear_folder(artifacts)
    (source / "MLmodel").write_text("flavors: {}\n")
    damage(source)
    staged = materialize.materialize(str(source), repo, "linear", 2)

    with pytest.raises(errors.CandidateRejected, match=message):
        materialize.verify(staged, repo, "linear")


@pytest.mark.parametrize(
    ("model", "source", "message"),
    [
        ("linear", "{tmp}/nowhere", "no such file or folder"),
        ("nope", "{tmp}", "'nope': no such model folder"),
        ("linear", "runs:/0123/model", "not a source tritonops reads"),
        ("linear", "s3://bucket/linear/2", "not a source tritonops reads"),
        ("linear", "models:/linear", "give an MLflow Model Registry URI as models:/NAME/VERSION"),
        ("linear", "models:/linear/latest", "give an MLflow Model Registry URI as models:/NAME/VERSION"),
        ("linear", "models:/linear/2", "set MLFLOW_TRACKING_URI"),
    ],
    ids=["missing-path", "unknown-model", "runs-uri", "s3-uri", "no-version", "stage-name", "no-registry"],
)
def test_a_source_that_does_not_resolve_is_refused_with_nothing_created(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str, source: str, message: str
) -> None:
    for name in materialize.REGISTRY_ENV:
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(errors.InputError, match=message):
        materialize.materialize(source.format(tmp=tmp_path), repo, model, 2)

    assert nothing_created(repo)


def test_a_registry_database_that_does_not_exist_is_not_created(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "typo.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}")

    with pytest.raises(errors.InputError, match=f"no such database file {database}"):
        materialize.materialize("models:/linear/2", repo, "linear", 2)

    assert not database.exists() and nothing_created(repo)


def test_a_bad_version_number_is_refused(repo: Path, artifacts: Path) -> None:
    with pytest.raises(errors.InputError, match="give a positive version number"):
        materialize.materialize(str(linear_folder(artifacts)), repo, "linear", 0)
    assert nothing_created(repo)


def test_discard_removes_a_staged_candidate(repo: Path, artifacts: Path) -> None:
    staged = materialize.materialize(str(linear_folder(artifacts)), repo, "linear", 2)
    materialize.discard(staged)
    assert not staged.path.exists()
    shutil.rmtree(workarea.root(repo))
    assert nothing_created(repo)
