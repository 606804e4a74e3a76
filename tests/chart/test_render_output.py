"""`tritonops render`: `-o DIR` never touches what it did not write; the stream stays clean YAML."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tritonops import errors
from tritonops.chart import render

RECORD = render.RENDER_MANIFEST


def _snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path below `root` (hidden ones too) with its mode and, for files, its content."""
    found: dict[str, tuple[int, bytes | None]] = {".": (root.stat().st_mode, None)}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        content = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
        found[path.relative_to(root).as_posix()] = (info.st_mode, content)
    return found


def _yaml_files(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir() if path.suffix == ".yaml"}


def test_render_into_the_current_project_folder_is_refused_and_changes_nothing(run_cli, tmp_path):
    project = tmp_path / "project"
    (project / "src" / "app").mkdir(parents=True)
    (project / "src" / "app" / "__init__.py").write_text("print('mine')\n")
    (project / "pyproject.toml").write_text("[project]\nname = 'app'\n")
    (project / "README.md").write_text("# my project\n")
    (project / ".git").mkdir()
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    before = _snapshot(project)

    result = run_cli("render", "--env", "dev", "-o", ".", cwd=project)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "-o .: holds files tritonops did not write (.git, README.md, pyproject.toml, src)" in result.stderr
    assert "nothing was changed" in result.stderr and "Pick an empty or new folder" in result.stderr
    assert _snapshot(project) == before


def test_render_into_manifests_holding_a_kustomization_and_notes_is_refused_untouched(run_cli, tmp_path):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "kustomization.yaml").write_text("resources:\n  - deployment.yaml\n")
    (manifests / "notes.md").write_text("why prod runs two replicas\n")
    before = _snapshot(manifests)

    result = run_cli("render", "--env", "prod", "-o", "manifests", cwd=tmp_path)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "-o manifests: holds files tritonops did not write (kustomization.yaml, notes.md)" in result.stderr
    assert _snapshot(manifests) == before


def test_rerender_replaces_its_own_files_and_drops_objects_that_no_longer_render(run_cli, tmp_path):
    first = run_cli("render", "--env", "dev", "-o", "out", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "out"
    dashboards = {name for name in _yaml_files(out) if "-configmap-" in name and "dashboard" in name}
    assert len(dashboards) == 1, _yaml_files(out)

    second = run_cli(
        "render", "--env", "dev", "--set", "monitoring.dashboard.enabled=false", "-o", "out", cwd=tmp_path
    )

    assert second.returncode == 0, second.stderr
    expected = render.render("dev", set_values=["monitoring.dashboard.enabled=false"])
    files = sorted(_yaml_files(out))
    assert not dashboards & set(files)
    objects = [yaml.safe_load((out / name).read_text()) for name in files]
    assert [(body["kind"], body["metadata"]["name"]) for body in objects] == [
        (manifest.kind, manifest.name) for manifest in expected.manifests
    ]
    record = json.loads((out / RECORD).read_text())
    assert sorted(record["files"]) == files and record["environment"] == "dev"
    assert sorted(path.name for path in out.iterdir()) == sorted([*files, RECORD])  # no staging left
    # `kubectl apply -f out` reads every .yaml, .yml and .json file there: each must be an object.
    assert all("kind" in obj and "apiVersion" in obj for obj in objects)
    assert not [path for path in out.iterdir() if path.suffix in (".json", ".yml")]
    assert "removed 1 file(s) it wrote before, of objects that no longer render" in second.stdout


def test_one_file_per_object_named_by_install_rank_kind_and_name(run_cli, tmp_path):
    result = run_cli("render", "--env", "prod", "-o", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    files = sorted(_yaml_files(tmp_path / "out"))
    assert files[0] == "01-serviceaccount-triton.yaml"
    assert "07-deployment-triton.yaml" in files and "12-prometheusrule-triton.yaml" in files
    kinds = [yaml.safe_load((tmp_path / "out" / name).read_text())["kind"] for name in files]
    assert kinds.count("Deployment") == 1 and "HorizontalPodAutoscaler" in kinds
    assert result.stdout == f"wrote {len(files)} objects for prod to out\n"


def test_a_file_added_or_edited_after_a_render_is_never_overwritten(rendered, tmp_path):
    out = tmp_path / "out"
    written = render.write_directory(rendered["dev"], out).written
    (out / "kustomization.yaml").write_text("resources: []\n")
    with pytest.raises(errors.InputError, match=r"kustomization\.yaml"):
        render.write_directory(rendered["dev"], out)
    (out / "kustomization.yaml").unlink()
    written[0].write_text("# my edit\n" + written[0].read_text())
    before = _snapshot(out)
    with pytest.raises(
        errors.InputError, match=rf"{re.escape(written[0].name)} \(changed since tritonops wrote it\)"
    ):
        render.write_directory(rendered["dev"], out)
    assert _snapshot(out) == before


def test_a_new_folder_gets_normal_permissions(rendered, tmp_path):
    target = tmp_path / "rendered" / "dev"
    previous = os.umask(0o022)
    try:
        written = render.write_directory(rendered["dev"], target).written
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o755
    assert {stat.S_IMODE(path.stat().st_mode) for path in [*written, target / RECORD]} == {0o644}


@dataclasses.dataclass(frozen=True)
class _Unserialisable(render.Manifest):
    def to_yaml(self) -> str:
        raise OSError("disk full")


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "earlier-render"])
def test_a_failure_while_writing_leaves_the_folder_as_it_was(rendered, tmp_path, existing):
    out = tmp_path / "out"
    if existing:
        render.write_directory(rendered["prod"], out)
    before = _snapshot(out) if existing else None
    manifests = list(rendered["dev"].manifests)
    manifests[3] = _Unserialisable(manifests[3].template, manifests[3].body)
    broken = dataclasses.replace(rendered["dev"], manifests=tuple(manifests))

    with pytest.raises(OSError, match="disk full"):
        render.write_directory(broken, out)

    if existing:
        assert _snapshot(out) == before
    else:
        assert not out.exists()


def test_a_path_that_is_a_file_is_refused(run_cli, tmp_path):
    (tmp_path / "out").write_text("mine\n")
    result = run_cli("render", "--env", "dev", "-o", "out", cwd=tmp_path)
    assert result.returncode == 2 and "-o out: exists and is not a directory" in result.stderr
    assert (tmp_path / "out").read_text() == "mine\n"


def _render_stream(**env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "TRITONOPS_ENV"}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "tritonops.cli", "render"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "said", "namespace"),
    [
        (
            {},
            "environment dev (the default; choose with --env dev|prod|local or TRITONOPS_ENV)",
            "triton-dev",
        ),
        (
            {"TRITONOPS_ENV": "prod"},
            "environment prod (from TRITONOPS_ENV; --env overrides it)",
            "triton-prod",
        ),
    ],
    ids=["default", "from-env-variable"],
)
def test_render_without_env_says_which_on_stderr_and_keeps_stdout_yaml(env, said, namespace):
    result = _render_stream(**env)
    assert result.returncode == 0, result.stderr
    assert said in result.stderr
    documents = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    assert deployment["metadata"]["namespace"] == namespace
