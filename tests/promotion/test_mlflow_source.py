"""Materialize from a real MLflow Model Registry (sqlite tracking store, local artifact folder) with
an ONNX model logged and aliased the way users do it: `mlflow.onnx.log_model` writes the weights
to an external-data file beside model.onnx, and MLflow 3 registers versions whose `source` is
`models:/m-<id>`; both URI forms fetch every file, an alias resolves to its version number, and
what does not resolve is refused with nothing created."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.promotion.conftest import Registry
from tritonops import errors
from tritonops.promotion import materialize, workarea
from tritonops.repository import checksums

MLP_CONFIG = """\
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 8
{extra}input [ {{ name: "input" data_type: TYPE_FP32 dims: [ 8 ] }} ]
output [ {{ name: "output" data_type: TYPE_FP32 dims: [ 3 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""


@pytest.fixture
def mlp_repo(tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.uri)
    root = tmp_path / "models"
    for name, extra in (("mlp", ""), ("mlp_named", 'default_model_filename: "weights.onnx"\n')):
        (root / name).mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(MLP_CONFIG.format(name=name, extra=extra))
    return root


def registered_files(registry: Registry, version: str) -> dict[str, str]:
    """The files MLflow stored for a registered version, by digest (read straight from its store)."""
    import mlflow

    source = mlflow.MlflowClient().get_model_version("mlp", version).source
    assert source.startswith("models:/m-"), source  # MLflow 3: not a path to parse
    (folder,) = [p for p in registry.artifacts.rglob("MLmodel") if source.removeprefix("models:/") in str(p)]
    return checksums.file_digests(folder.parent)


@pytest.mark.parametrize("uri", ["models:/mlp/1", "models:/mlp@champion"], ids=["version", "alias"])
def test_a_registered_version_materializes_with_every_file(
    mlp_repo: Path, registry: Registry, uri: str
) -> None:
    staged = materialize.materialize(uri, mlp_repo, "mlp", 5)

    files = checksums.file_digests(staged.path)
    # Every stored file, byte for byte (the download adds MLflow's registered_model_meta).
    assert registered_files(registry, "1").items() <= files.items()
    assert [name for name in files if name.endswith(".data")], "the weights went to external data"
    assert {"model.onnx", "MLmodel"} <= set(files)
    assert (staged.source, staged.resolved_source) == (uri, "models:/mlp/1")
    assert staged.description == f"MLflow {uri}" + (" (version 1)" if "@" in uri else "")
    assert materialize.verify(staged, mlp_repo, "mlp") == []


def test_the_model_file_gets_the_name_the_config_expects(mlp_repo: Path) -> None:
    staged = materialize.materialize("models:/mlp@champion", mlp_repo, "mlp_named", 1)

    assert (staged.path / "weights.onnx").is_file() and not (staged.path / "model.onnx").exists()
    assert materialize.verify(staged, mlp_repo, "mlp_named") == []


def test_a_registered_version_that_disagrees_with_the_config_is_refused(mlp_repo: Path) -> None:
    staged = materialize.materialize("models:/mlp/2", mlp_repo, "mlp", 2)

    with pytest.raises(
        errors.CandidateRejected, match=r"MLflow models:/mlp/2 is not a valid version 2 of mlp: .*output"
    ):
        materialize.verify(staged, mlp_repo, "mlp")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/mlp/9", "has no version 9 of model 'mlp'"),
        ("models:/mlp@production", "has no alias 'production' of model 'mlp'"),
        ("models:/nope/1", "has no version 1 of model 'nope'"),
    ],
    ids=["unknown-version", "unknown-alias", "unknown-model"],
)
def test_a_uri_that_does_not_resolve_is_refused_with_nothing_created(
    mlp_repo: Path, registry: Registry, uri: str, message: str
) -> None:
    with pytest.raises(errors.InputError, match=message) as raised:
        materialize.materialize(uri, mlp_repo, "mlp", 3)

    assert registry.uri in str(raised.value)
    assert not workarea.root(mlp_repo).exists()
    assert sorted(p.name for p in (mlp_repo / "mlp").iterdir()) == ["config.pbtxt"]


def test_a_registry_that_does_not_answer_is_named_at_once(
    mlp_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLflow's own default retries an HTTP registry for minutes; the promotion says so in seconds.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    with pytest.raises(errors.InputError, match=r"the registry at http://127.0.0.1:9 does not answer"):
        materialize.materialize("models:/mlp@champion", mlp_repo, "mlp", 5)
    assert not (mlp_repo / "mlp" / "5").exists()
