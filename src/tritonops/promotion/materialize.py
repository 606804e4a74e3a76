"""Materialize a promotion candidate into the repository's staging area, and verify it there.

SOURCE is one of:
- a local version folder: copied whole (symlinked files and folders are copied as what they point
  to, so the version holds what Triton would read); a checksum manifest beside it
  (`<folder>.sha256`, the `tritonops repo checksum` format) is verified;
- a local model file: placed under the config's `default_model_filename`, or the platform's
  default name (model.onnx, model.plan, ...); an ONNX file's external-data files are copied too;
- an MLflow Model Registry URI, `models:/NAME/VERSION` or `models:/NAME@ALIAS`, read with the real
  `mlflow` package from the registry that MLFLOW_REGISTRY_URI names, else MLFLOW_TRACKING_URI (a
  server URL, or e.g. `sqlite:///path/mlflow.db` with its artifact folder). An alias is resolved to
  its version number first and both are recorded; the files are downloaded through
  `models:/NAME/VERSION` (never by parsing the version's `source`, which MLflow 3 sets to
  `models:/m-<id>`), whole: `mlflow.onnx.log_model` writes large tensors to external-data files
  beside model.onnx. The ONNX flavor's model file is renamed to the name the config expects.

Nothing is created in the repository until the source is resolved; a failure after that removes
the staging folder. `verify` then refuses (errors.CandidateRejected) a candidate whose files fail
their manifest, or that `repo validate` rejects against the model's config (a missing or corrupted
model file, a graph whose tensors disagree with the config, missing external data), before any
replica is touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import yaml
from google.protobuf.message import DecodeError

from tritonops import errors
from tritonops.promotion import workarea
from tritonops.repository import checksums, configs, validator
from tritonops.repository.findings import Finding, FindingSink, Severity

log = logging.getLogger(__name__)

MLFLOW_SCHEME = "models:/"
_MLFLOW_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/@]+)|@(?P<alias>[^/@]+))$")
REGISTRY_ENV = ("MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_URI")


@dataclass(frozen=True)
class Staged:
    """A materialized candidate in the repository's staging area."""

    path: Path  # <repository>/.tritonops/staging/<model>-<version>-<random>
    model: str
    version: int
    source: str  # as the user gave it
    description: str  # e.g. "MLflow models:/mlp@champion (version 3)"
    resolved_source: str  # models:/mlp/3, or the absolute local path
    digest: str  # sha256 of the staged folder's manifest (what the record's `digest` holds)
    manifest: Path | None = None  # the source's checksum manifest, when it carries one


def materialize(source: str, repository: Path, model: str, version: int) -> Staged:
    """Copy or download SOURCE into a new staging folder of `repository` for `model` version
    `version`. InputError (nothing created) for an unknown model, a bad version or a source that
    does not resolve."""
    repository = Path(repository)
    parsed = _model_config(repository, model)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise errors.InputError(f"--version {version!r}: give a positive version number")
    if source.startswith(MLFLOW_SCHEME):
        resolved = _resolve_mlflow(source)
        fill = resolved.download
        description = resolved.description
        resolved_source = resolved.uri
        manifest = None
    else:
        local = _local_source(source)
        filename = parsed.model_filename
        if local.is_file() and not filename:
            raise errors.InputError(
                f"{parsed.path}: cannot tell what to name {local.name} in the version folder; set "
                "default_model_filename (or platform/backend) in the config, or give a version folder"
            )
        manifest = checksums.manifest_path(local) if local.is_dir() else None
        manifest = manifest if manifest is not None and manifest.is_file() else None
        kind = "folder" if local.is_dir() else "file"
        description = f"local {kind} {local}" + (f" (manifest {manifest.name})" if manifest else "")
        resolved_source = str(local)

        def fill(staging: Path) -> None:
            _copy_local(local, staging, filename)

    with _staging(repository, model, version) as staging:
        fill(staging)
        _rename_model_file(staging, parsed)
        _readable_modes(staging)
        digest = checksums.version_digest(staging)
    return Staged(staging, model, version, source, description, resolved_source, digest, manifest)


def verify(staged: Staged, repository: Path, model: str) -> list[Finding]:
    """Check the staged candidate: its manifest (when the source carried one), then `repo validate`
    of the version against the model's config. Return the warnings; raise CandidateRejected with
    every error otherwise."""
    if staged.manifest is not None:
        _check_manifest(staged)
    parsed = _model_config(Path(repository), model)
    findings = validator.validate_version(parsed, staged.path, staged.version)
    findings += _external_data_findings(staged.path, parsed, staged.version)
    rejected = [finding for finding in findings if finding.severity is Severity.ERROR]
    if rejected:
        raise errors.CandidateRejected(
            f"{staged.description} is not a valid version {staged.version} of {model}: "
            + "; ".join(f"{_relative(f.file, staged.path)}: {f.message}" for f in rejected),
            rejected,
        )
    return findings


def discard(staged: Staged) -> None:
    """Remove a staged candidate that will not be staged (e.g. refused by `verify`)."""
    shutil.rmtree(staged.path, ignore_errors=True)


# --- the model and the staging folder ------------------------------------------------------------


def _model_config(repository: Path, model: str) -> configs.ParsedConfig:
    if not repository.is_dir():
        raise errors.InputError(f"{repository}: no such model repository")
    model_dir = repository / model
    if model.startswith(".") or "/" in model or not model_dir.is_dir():
        raise errors.InputError(f"{model!r}: no such model folder in {repository}")
    config = model_dir / "config.pbtxt"
    sink = FindingSink(model=model)
    parsed = configs.read_config(config, sink) if config.is_file() else None
    if parsed is None:
        why = "; ".join(f.message for f in sink.findings) or "it is missing"
        raise errors.InputError(
            f"{config}: the model's config is needed to check and place the candidate, but {why}"
        )
    return parsed


@contextlib.contextmanager
def _staging(repository: Path, model: str, version: int) -> Iterator[Path]:
    """A new staging folder, removed again if filling it fails."""
    staging = workarea.new_staging(repository, model, version)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# --- local sources -------------------------------------------------------------------------------


def _local_source(source: str) -> Path:
    if "://" in source or source.startswith(("models:", "runs:")):
        raise errors.InputError(
            f"--from {source}: not a source tritonops reads; give a local folder or file, or an "
            "MLflow Model Registry URI models:/NAME/VERSION or models:/NAME@ALIAS"
        )
    path = Path(source).expanduser()
    if not path.exists():
        raise errors.InputError(f"--from {source}: no such file or folder")
    if not (path.is_dir() or path.is_file()):
        raise errors.InputError(f"--from {source}: neither a folder nor a file")
    return path.resolve()


def _copy_local(source: Path, staging: Path, filename: str | None) -> None:
    try:
        if source.is_dir():
            shutil.copytree(source, staging, dirs_exist_ok=True)
            return
        assert filename is not None
        target = staging / filename
        shutil.copy2(source, target)
        for relative in _external_data(target):
            if (source.parent / relative).is_file():
                (staging / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source.parent / relative, staging / relative)
    except OSError as error:
        raise errors.InputError(
            f"--from {source}: cannot copy {getattr(error, 'filename', None) or source}: "
            f"{error.strerror or error}"
        ) from None


def _external_data(model_file: Path) -> list[str]:
    """The external-data files an ONNX model refers to (relative to its folder); [] for anything
    that is not a readable ONNX model (verify reports that)."""
    if model_file.suffix != ".onnx":
        return []
    try:
        model = onnx.load(str(model_file), format="protobuf", load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError):
        return []
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        for attribute in node.attribute:
            tensors += [attribute.t] if attribute.HasField("t") else []
            tensors += list(attribute.tensors)
    helper = onnx.external_data_helper
    return sorted(
        {
            str(helper.ExternalDataInfo(tensor).location)
            for tensor in tensors
            if helper.uses_external_data(tensor)
        }
    )


def _external_data_findings(version_dir: Path, parsed: configs.ParsedConfig, version: int) -> list[Finding]:
    filename = parsed.model_filename
    if not filename or not (version_dir / filename).is_file():
        return []
    missing = [name for name in _external_data(version_dir / filename) if not (version_dir / name).is_file()]
    return [
        Finding(
            Severity.ERROR,
            f"{filename} keeps tensors in the external-data file {name}, which is not in the version: "
            "copy the whole model folder (mlflow.onnx.log_model writes such files beside model.onnx)",
            model=parsed.path.parent.name,
            version=str(version),
            file=str(version_dir / filename),
        )
        for name in missing
    ]


def _rename_model_file(staging: Path, parsed: configs.ParsedConfig) -> None:
    """Give an MLflow model's file the name the config expects (the ONNX flavor names its file in
    MLmodel, `model.onnx` by default). External-data references are relative to the folder, not
    the file name, so the rename keeps them valid."""
    expected = parsed.model_filename
    mlmodel = staging / "MLmodel"
    if not expected or (staging / expected).exists() or not mlmodel.is_file():
        return
    try:
        flavors = yaml.safe_load(mlmodel.read_text(encoding="utf-8")).get("flavors", {})
        data = flavors["onnx"]["data"]
    except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError):
        return
    if isinstance(data, str) and (staging / data).is_file():
        os.rename(staging / data, staging / expected)
        log.info("renamed the MLflow model's %s to %s (the config's model file name)", data, expected)


def _readable_modes(staging: Path) -> None:
    """Give the copies an ordinary file's mode (0o666/0o777 less the umask): the pod reads the
    repository as another user, and sources are often private (onnx.save writes external-data
    files 0600, and MLflow's download keeps that)."""
    mask = checksums.repository_umask()
    for directory, folders, files in os.walk(staging):
        for name in folders:
            os.chmod(os.path.join(directory, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o666 & ~mask)


def _check_manifest(staged: Staged) -> None:
    assert staged.manifest is not None
    expected = checksums._read_manifest(staged.manifest)
    actual = checksums.file_digests(staged.path)
    problems = [f"{name} changed" for name in expected if name in actual and actual[name] != expected[name]]
    problems += [f"{name} missing" for name in expected if name not in actual]
    problems += [f"{name} not in the manifest" for name in actual if name not in expected]
    if problems:
        raise errors.CandidateRejected(
            f"{staged.description}: the files do not match the manifest {staged.manifest}: "
            f"{'; '.join(problems)}. The artifact is corrupted or was changed after its manifest was "
            "written: restore it, or rewrite the manifest with `tritonops repo checksum --write` "
            "once you know the files are right"
        )


def _relative(file: str | None, root: Path) -> str:
    if file is None:
        return "candidate"
    with contextlib.suppress(ValueError):
        return str(Path(file).relative_to(root))
    return file


# --- MLflow --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MlflowVersion:
    uri: str  # models:/NAME/VERSION
    description: str
    registry: str

    def download(self, staging: Path) -> None:
        import mlflow

        with _quiet_progress():
            try:
                downloaded = Path(
                    mlflow.artifacts.download_artifacts(artifact_uri=self.uri, dst_path=str(staging))
                )
            except Exception as error:  # MlflowException, or the artifact store's own OSError
                raise errors.InputError(
                    f"{self.description}: cannot download from the registry at {self.registry}: {error}"
                ) from None
        if downloaded.resolve() != staging.resolve():  # files landed in a sub-folder: lift them up
            for entry in list(downloaded.iterdir()):
                os.rename(entry, staging / entry.name)
            shutil.rmtree(downloaded, ignore_errors=True)
        if not any(staging.iterdir()):
            raise errors.InputError(f"{self.description}: the registry returned no files")


def registry_uri() -> str:
    """The MLflow registry tritonops reads: MLFLOW_REGISTRY_URI, else MLFLOW_TRACKING_URI."""
    for name in REGISTRY_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    raise errors.InputError(
        "an MLflow source needs the registry: set MLFLOW_TRACKING_URI (or MLFLOW_REGISTRY_URI) to "
        "your MLflow server (http://...) or store (sqlite:///path/mlflow.db)"
    )


def _resolve_mlflow(source: str) -> _MlflowVersion:
    match = _MLFLOW_URI.match(source)
    if match is None or (match["version"] is not None and not match["version"].isdigit()):
        raise errors.InputError(
            f"--from {source}: give an MLflow Model Registry URI as models:/NAME/VERSION (a number) "
            "or models:/NAME@ALIAS"
        )
    registry = registry_uri()
    _refuse_missing_sqlite(registry)
    # MLflow retries an HTTP registry for minutes by default: a promotion should say at once that
    # the registry does not answer (the user's own settings win).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    import mlflow
    from mlflow.exceptions import MlflowException

    client: Any = mlflow.MlflowClient(registry_uri=registry)
    name = match["name"]
    try:
        if match["alias"] is not None:
            found = client.get_model_version_by_alias(name, match["alias"])
        else:
            found = client.get_model_version(name, match["version"])
    except MlflowException as error:
        if _unreachable(error):
            raise errors.InputError(
                f"--from {source}: the registry at {registry} does not answer ({_first_line(error)}); "
                "check MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI and that the server runs"
            ) from None
        what = f"alias {match['alias']!r}" if match["alias"] else f"version {match['version']}"
        raise errors.InputError(
            f"--from {source}: the registry at {registry} has no {what} of model {name!r} "
            f"({_first_line(error)}); check the model name and its aliases in the registry UI"
        ) from None
    uri = f"models:/{name}/{found.version}"
    description = f"MLflow {source}" + (f" (version {found.version})" if match["alias"] else "")
    return _MlflowVersion(uri, description, registry)


def _unreachable(error: BaseException) -> bool:
    text = str(error)
    return any(sign in text for sign in ("Max retries exceeded", "Connection refused", "timed out"))


def _refuse_missing_sqlite(registry: str) -> None:
    """MLflow creates an empty database for a sqlite URI whose file does not exist: refuse instead,
    so a typo creates nothing. (`sqlite:///rel/path.db` is relative, `sqlite:////abs/path.db` absolute.)"""
    if registry.startswith("sqlite:///"):
        database = Path(registry.removeprefix("sqlite:///").split("?", 1)[0])
        if not database.is_file():
            raise errors.InputError(f"MLflow registry {registry}: no such database file {database}")


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """No per-file progress bars from MLflow on the user's terminal (the chain reports its steps)."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    saved = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved
