"""Chart delivery: Chart.yaml's Artifact Hub annotations, ct lint's own checks of Chart.yaml and
values.yaml, and the archive `helm package` makes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import pytest
import yaml

from tests.ci.conftest import CHART_YAML, CI_DIR, ROOT, load_yaml
from tritonops.chart import environments, render

# --- Artifact Hub annotations ----------------------------------------------------------------------

# What Artifact Hub reads from the changes and images annotations, from artifacthub/hub v1.22.0:
# internal/hub/pkg.go (Change, Link, ContainerImage) and internal/pkg/metadata.go (validChangeKinds;
# ValidateChange wants a description, and a name and url for every link). Artifact Hub drops keys it
# does not know without a word; these objects are closed so that a misspelt key fails here instead.
ARTIFACT_HUB_CHANGES = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["kind", "description"],
        "properties": {
            "kind": {"enum": ["added", "changed", "deprecated", "removed", "fixed", "security"]},
            "description": {"type": "string", "minLength": 1},
            "links": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "url"],
                    "properties": {"name": {"type": "string", "minLength": 1}, "url": {"type": "string"}},
                },
            },
        },
    },
}
ARTIFACT_HUB_IMAGES = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "image"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "image": {"type": "string", "minLength": 1},
            "whitelisted": {"type": "boolean"},
            "platforms": {"type": "array", "items": {"type": "string"}},
        },
    },
}
# strconv.ParseBool, which Artifact Hub applies to artifacthub.io/prerelease.
GO_BOOLS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}


def annotation_problems(annotation: str, schema: dict[str, Any]) -> list[str]:
    """The annotation (a YAML document in a string) parsed as Artifact Hub parses it, and checked."""
    document = yaml.safe_load(annotation)
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{error.json_path}: {error.message}" for error in validator.iter_errors(document)]


def test_changes_annotation_is_a_list_of_artifact_hub_entries(chart_metadata):
    changes = chart_metadata["annotations"]["artifacthub.io/changes"]
    assert annotation_problems(changes, ARTIFACT_HUB_CHANGES) == []


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ("- kind: improved\n  description: Faster.\n", "$[0].kind"),
        ("- kind: added\n  descripton: Faster.\n", "$[0]"),
        (
            "- kind: added\n  description: Faster.\n  links:\n    - url: https://example.com\n",
            "$[0].links[0]",
        ),
    ],
    ids=["unknown-kind", "misspelt-description", "link-without-name"],
)
def test_changes_check_refuses_what_artifact_hub_would_refuse_or_drop(entry, where):
    problems = annotation_problems(entry, ARTIFACT_HUB_CHANGES)
    assert any(problem.startswith(where + ":") for problem in problems), problems


def test_annotations_are_strings_artifact_hub_can_read(chart_metadata):
    annotations = chart_metadata["annotations"]
    assert all(isinstance(value, str) for value in annotations.values())
    assert annotations["artifacthub.io/prerelease"] in GO_BOOLS
    assert annotation_problems(annotations["artifacthub.io/images"], ARTIFACT_HUB_IMAGES) == []


def container_images(node: Any) -> set[str]:
    """Every image of every container, init container and ephemeral container in `node`."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers", "ephemeralContainers") and isinstance(value, list):
                found |= {container["image"] for container in value if "image" in container}
            found |= container_images(value)
    elif isinstance(node, list):
        for item in node:
            found |= container_images(item)
    return found


# The least a user must give for the chart to render: where the models are.
MINIMAL_VALUES = {"modelRepository": {"pvc": {"existingClaim": "models"}}}


def rendered_images(values: dict[str, Any]) -> set[str]:
    """The container images of every object the chart renders with `values` (test hooks included)."""
    chart = helm_python.Chart.load(str(environments.CHART_DIR))
    rendered = chart.render(values, name="triton", namespace="triton")
    manifests = [text for path, text in rendered.items() if path.endswith(".yaml")]
    return set().union(*(container_images(doc) for text in manifests for doc in yaml.safe_load_all(text)))


def test_license_annotation_is_the_projects_license(chart_metadata):
    """Artifact Hub shows the SPDX id; it must be the license the repository ships and declares."""
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert chart_metadata["annotations"]["artifacthub.io/license"] == declared == "Apache-2.0"
    assert "Apache License\n                           Version 2.0" in (ROOT / "LICENSE").read_text()


def test_images_annotation_names_exactly_the_images_of_the_default_render(chart_metadata):
    images = rendered_images(MINIMAL_VALUES)
    listed = yaml.safe_load(chart_metadata["annotations"]["artifacthub.io/images"])
    assert {entry["image"] for entry in listed} == images
    assert f"nvcr.io/nvidia/tritonserver:{chart_metadata['appVersion']}" in images


def test_images_check_sees_an_init_containers_image(chart_metadata):
    # The comparison above can fail: were the download init container on by default, its image
    # would be missing from the list.
    with_download = {
        "modelRepository": {
            "pvc": {"enabled": False},
            "download": {
                "enabled": True,
                "artifacts": [
                    {"url": "https://example.com/m.onnx", "sha256": "0" * 64, "path": "m/1/model.onnx"}
                ],
            },
        }
    }
    images = rendered_images(with_download)
    listed = {
        entry["image"] for entry in yaml.safe_load(chart_metadata["annotations"]["artifacthub.io/images"])
    }
    assert images - listed == {"busybox:1.36.1"}


# --- what `ct lint` checks besides helm lint: yamale on Chart.yaml, yamllint on both files ---------


def ct_yamale(chart_yaml: Path) -> subprocess.CompletedProcess[str]:
    """`yamale --schema ci/chart_schema.yaml Chart.yaml`, as ct runs it (pkg/tool/linter.go)."""
    command = [sys.executable, "-m", "yamale.command_line", "--schema", str(CI_DIR / "chart_schema.yaml")]
    return subprocess.run([*command, str(chart_yaml)], capture_output=True, text=True, check=False)


def ct_yamllint(path: Path) -> subprocess.CompletedProcess[str]:
    """`yamllint --config-file ci/lintconf.yaml FILE`, as ct runs it (pkg/tool/linter.go)."""
    command = [sys.executable, "-m", "yamllint", "--config-file", str(CI_DIR / "lintconf.yaml"), str(path)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_chart_yaml_passes_cts_chart_schema():
    result = ct_yamale(CHART_YAML)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["Chart.yaml", "values.yaml"])
def test_chart_files_pass_cts_yaml_lint(name):
    result = ct_yamllint(environments.CHART_DIR / name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cts_chart_schema_refuses_an_unquoted_annotation(tmp_path):
    text = CHART_YAML.read_text(encoding="utf-8")
    assert 'artifacthub.io/prerelease: "false"' in text
    broken = tmp_path / "Chart.yaml"
    broken.write_text(text.replace('artifacthub.io/prerelease: "false"', "artifacthub.io/prerelease: false"))
    assert ct_yamale(broken).returncode != 0


def test_cts_yaml_lint_refuses_a_key_given_twice(tmp_path):
    broken = tmp_path / "Chart.yaml"
    broken.write_text(CHART_YAML.read_text(encoding="utf-8") + "version: 9.9.9\n", encoding="utf-8")
    result = ct_yamllint(broken)
    assert result.returncode != 0
    assert "key-duplicates" in result.stdout


# --- helm package ----------------------------------------------------------------------------------


def package(chart_dir: Path, destination: Path) -> Path:
    """The chart archived by Helm's own package action (helm-python-sdk)."""
    helm_python.disable_logging()
    return Path(helm_python.package(chart_dir, destination=destination))


def archive_members(archive: Path) -> set[str]:
    with tarfile.open(archive) as tar:
        return {member.name for member in tar.getmembers() if member.isfile()}


def test_helm_package_archives_every_chart_file_under_the_charts_name(tmp_path, chart_metadata):
    archive = package(environments.CHART_DIR, tmp_path)
    assert archive.name == f"triton-{chart_metadata['version']}.tgz"
    tracked = subprocess.run(
        ["git", "ls-files", "--", "."], cwd=environments.CHART_DIR, capture_output=True, text=True, check=True
    ).stdout.split()
    assert archive_members(archive) == {f"triton/{path}" for path in tracked}
    with tarfile.open(archive) as tar:
        member = tar.extractfile("triton/Chart.yaml")
        assert member is not None
        packaged = yaml.safe_load(member.read())
    assert packaged["version"] == chart_metadata["version"]
    assert packaged["annotations"] == chart_metadata["annotations"]


def test_helm_package_leaves_out_what_helmignore_lists(tmp_path):
    chart_dir = tmp_path / "triton"
    shutil.copytree(environments.CHART_DIR, chart_dir)
    litter = [
        "files/__pycache__/agent.cpython-311.pyc",
        "values.yaml.swp",
        ".DS_Store",
        ".idea/workspace.xml",
    ]
    for path in litter:
        (chart_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (chart_dir / path).write_text("litter\n", encoding="utf-8")
    members = archive_members(package(chart_dir, tmp_path / "dist"))
    assert not members & {f"triton/{path}" for path in litter}
    assert "triton/files/agent.py" in members


def test_packaged_chart_renders_what_the_folder_renders(tmp_path):
    archive = package(environments.CHART_DIR, tmp_path)
    packaged = helm_python.Chart.load_archive(archive.read_bytes())
    folder = helm_python.Chart.load(str(environments.CHART_DIR))
    # An existing Secret: the generated key is random, so two renders would differ there.
    values = render.merge_layers(
        [
            load_yaml(ROOT / "values" / "base.yaml"),
            MINIMAL_VALUES,
            {"repositoryApi": {"restricted": {"existingSecret": "triton-api-key"}}},
        ]
    )
    assert packaged.render(values, name="triton", namespace="triton") == folder.render(
        values, name="triton", namespace="triton"
    )


def test_chart_readme_points_at_the_ci_files():
    readme = (environments.CHART_DIR / "README.md").read_text(encoding="utf-8")
    ci = readme.split("\n## CI\n", 1)
    assert len(ci) == 2, "the chart README has no CI section"
    for path in ("ci/github-workflow.yml", "ci/ct.yaml"):
        assert path in ci[1]
        assert (ROOT / path).is_file()
