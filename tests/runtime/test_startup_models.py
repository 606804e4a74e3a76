"""`up` on a repository that lacks a model the rendered pod loads at startup refuses before
anything starts (exit 2), naming the model, the values layer that asks for it and the `--set` that
drops it; the `--set` it names then starts. Before, Triton failed after three restarts with
"failed to load all models"."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.runtime.conftest import FAST_PROBES, free_port_offset
from tritonops import errors
from tritonops.runtime import control

SAMPLE = ROOT / "examples" / "model-repository"


@pytest.fixture
def mlp_only(tmp_path: Path) -> Path:
    """A user's repository: the sample's mlp, without the platform's canary model `linear`."""
    repository = tmp_path / "myrepo"
    repository.mkdir()
    shutil.copytree(SAMPLE / "mlp", repository / "mlp")
    return repository


def _nothing_started(work: Path) -> None:
    assert not work.exists(), sorted(p.name for p in work.iterdir())


def test_missing_canary_model_names_base_values_and_the_set_that_drops_it(run_cli, mlp_only, tmp_path):
    work = tmp_path / "work"
    up = run_cli("up", "--env", "local", "--repository", str(mlp_only), "--work-dir", str(work))
    assert up.returncode == 2, up.stdout + up.stderr
    assert up.stderr == (
        f"tritonops: the model repository {mlp_only} cannot serve what the rendered pod loads at "
        "startup; nothing was started:\n"
        f"  model linear is not in the repository (no folder {mlp_only / 'linear'}), but "
        "server.loadModels is [linear] in values/base.yaml. Add the model folder, or drop it with "
        "--set 'server.loadModels={}'\n"
    )
    assert "Traceback" not in up.stderr and up.stdout == ""
    _nothing_started(work)


def test_the_set_the_message_names_starts_the_pod(run_cli, mlp_only, tmp_path):
    work = tmp_path / "work"
    refused = run_cli("up", "--repository", str(mlp_only), "--work-dir", str(work))
    suggested = re.search(r"--set '([^']*)'", refused.stderr)
    assert refused.returncode == 2 and suggested, refused.stderr
    offset = str(free_port_offset(1))
    try:
        up = run_cli(
            "up", "--repository", str(mlp_only), "--work-dir", str(work), "--port-offset", offset,
            "--set", suggested.group(1),
        )  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        plan = json.loads((work / "plan.json").read_text())
        assert not [word for word in plan["replicas"][0]["command"] if word.startswith("--load-model")]
    finally:
        run_cli("down", "--work-dir", str(work))


def test_a_values_file_that_asks_for_models_is_named_and_only_the_missing_one_dropped(mlp_only, tmp_path):
    extra = tmp_path / "team.yaml"
    extra.write_text(yaml.safe_dump({"server": {"loadModels": ["linear", "mlp", "ghost"]}}))
    work = tmp_path / "work"
    with pytest.raises(errors.InputError) as raised:
        control.up("local", work_dir=work, repository=mlp_only, extra_files=(extra,))
    message = str(raised.value)
    assert "models linear, ghost are not in the repository" in message
    assert f"server.loadModels is [linear, mlp, ghost] in {extra}" in message
    assert "--set 'server.loadModels={mlp}'" in message
    _nothing_started(work)


def test_a_load_model_flag_in_extra_args_is_named(mlp_only, tmp_path):
    work = tmp_path / "work"
    sets = ("server.loadModels={mlp}", "server.extraArgs={--load-model=ghost}")
    with pytest.raises(errors.InputError, match=r"ghost is not in the repository") as raised:
        control.up("local", work_dir=work, repository=mlp_only, set_values=sets)
    assert "server.extraArgs holds --load-model=ghost in --set" in str(raised.value)
    assert "linear" not in str(raised.value)
    _nothing_started(work)


def test_a_committed_model_the_launcher_would_refuse_is_named(mlp_only, tmp_path):
    # current.json commits linear, whose folder is missing: the launcher refuses to start.
    shutil.copy(SAMPLE / "current.json", mlp_only / "current.json")
    work = tmp_path / "work"
    with pytest.raises(errors.InputError) as raised:
        control.up("local", work_dir=work, repository=mlp_only, set_values=("server.loadModels={}",))
    message = str(raised.value)
    assert f"{mlp_only / 'linear'} [models.linear]: committed model folder is missing" in message
    assert "remove models.linear from the committed-state record" in message
    assert f"({mlp_only / 'current.json'})" in message
    assert "server.loadModels" not in message  # the static list is empty: only the record is named
    _nothing_started(work)


def test_committed_files_that_changed_are_refused_before_starting(tmp_path):
    repository = tmp_path / "copy"
    shutil.copytree(SAMPLE, repository)
    model = next((repository / "linear" / "1").iterdir())
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(errors.InputError, match=r"linear") as raised:
        control.up("local", work_dir=tmp_path / "work", repository=repository, set_values=FAST_PROBES)
    assert "digest" in str(raised.value)
    _nothing_started(tmp_path / "work")


def test_a_committed_config_that_does_not_pin_its_version_is_refused_before_starting(tmp_path):
    # Before `up` checked, the launcher refused this repository in each of three starts.
    repository = tmp_path / "unpinned"
    shutil.copytree(SAMPLE, repository)
    config = repository / "linear" / "config.pbtxt"
    config.write_text(re.sub(r"version_policy\s*\{[^{}]*\{[^{}]*\}\s*\}", "", config.read_text()))
    with pytest.raises(errors.InputError) as raised:
        control.up("local", work_dir=tmp_path / "work", repository=repository)
    assert "version_policy pins nothing but the committed state says version 1" in str(raised.value)
    _nothing_started(tmp_path / "work")
