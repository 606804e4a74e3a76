"""Bad input fails with a message naming the value path and the values file, exit code 2, and no
traceback; nothing is written."""

from __future__ import annotations

import pytest
import yaml


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gpu:\n  enabeld: true\n", ["gpu.enabeld: unknown key", "allowed here: count, enabled"]),
        ("replicaCount: two\n", ["replicaCount: 'two' is not of type integer"]),
        ("server:\n  modelControlMode: manual\n", ["server.modelControlMode: 'manual' is not one of"]),
        ("bogusTopLevel: 1\n", ["bogusTopLevel: unknown key"]),
        (
            "modelRepository:\n  download:\n    artifacts:\n      - {url: 'https://x/y', sha256: short, path: a/b}\n",
            ["modelRepository.download.artifacts.0.sha256"],
        ),
        (
            "modelRepository:\n  download:\n    artifacts:\n      - {url: 'https://x/y', sha256: '"
            + "a" * 64
            + "', path: ../escape}\n",
            ["modelRepository.download.artifacts.0.path"],
        ),
        ("gpu:\n  resourceName: amd.com/gpu\n", ["gpu.resourceName"]),
        ("repositoryApi:\n  restricted:\n    key: hunter2\n", ["repositoryApi.restricted.key: unknown key"]),
        # gRPC refuses upper-case metadata keys ("Admin-Key"), so the gRPC side would never match.
        (
            "repositoryApi:\n  restricted:\n    header: Admin-Key\n",
            ["repositoryApi.restricted.header: 'Admin-Key' does not match '^[a-z0-9-]+$'"],
        ),
    ],
    ids=[
        "typo",
        "wrong-type",
        "enum",
        "unknown-top-level",
        "bad-sha256",
        "path-escape",
        "non-nvidia-resource",
        "inline-key",
        "upper-case-header",
    ],
)
def test_schema_errors_name_the_file_and_value_path(run_cli, tmp_path, text, expected):
    extra = _write(tmp_path, "extra.yaml", text)
    result = run_cli("render", "--env", "dev", "-f", str(extra))
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    assert "extra.yaml" in result.stderr
    for fragment in expected:
        assert fragment in result.stderr
    assert result.stdout == ""


def test_set_override_errors_name_the_set_flag(run_cli):
    result = run_cli("render", "--env", "dev", "--set", "gpu.count=none")
    assert result.returncode == 2
    assert "--set: gpu.count: 'none' is not of type integer" in result.stderr


def test_missing_required_value_names_the_merged_values(run_cli):
    result = run_cli("render", "--env", "dev", "--set", "resources.limits=null")
    assert result.returncode == 2
    # The exact "path: problem" line, not any mention of "resources" (Helm's raw text has that too).
    assert (
        "values/base.yaml <- values/dev.yaml <- --set): resources: missing property 'limits'" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_conflicting_combination_fails_with_the_guard_message_and_the_files(run_cli):
    result = run_cli("render", "--env", "dev", "--set", "modelRepository.image.enabled=true")
    assert result.returncode == 2
    assert result.stderr.startswith("tritonops: modelRepository: enable exactly one source")
    assert "values/base.yaml <- values/dev.yaml <- --set" in result.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("gpu:\n  enabled: true\n bad-indent: 1\n", "broken.yaml:3:2: invalid YAML"),
        ("- a\n- b\n", "broken.yaml: must be a mapping of values, found list"),
    ],
    ids=["invalid-yaml", "not-a-mapping"],
)
def test_unreadable_values_files_are_reported_with_position(run_cli, tmp_path, content, expected):
    broken = _write(tmp_path, "broken.yaml", content)
    result = run_cli("render", "--env", "dev", "-f", str(broken))
    assert result.returncode == 2
    assert expected in result.stderr


def test_missing_values_file_and_unknown_environment(run_cli, tmp_path):
    missing = run_cli("render", "--env", "dev", "-f", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml: no such values file" in missing.stderr
    unknown = run_cli("render", "--env", "staging")
    assert (
        unknown.returncode == 2
        and "--env 'staging': unknown environment; choose one of dev, prod, local" in unknown.stderr
    )


def test_unknown_flag_exits_2_with_one_line(run_cli):
    result = run_cli("render", "--envv", "dev")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("tritonops: error: unrecognized arguments")


def test_failed_render_leaves_the_output_directory_untouched(run_cli, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.yaml").write_text("kept")
    result = run_cli("render", "--env", "dev", "--set", "gpu.enabled=maybe", "-o", str(out))
    assert result.returncode == 2
    assert [p.name for p in out.iterdir()] == ["keep.yaml"]


def test_output_path_that_is_a_file_is_refused(run_cli, tmp_path):
    target = _write(tmp_path, "file.txt", "x")
    result = run_cli("render", "--env", "dev", "-o", str(target))
    assert result.returncode == 2 and "exists and is not a directory" in result.stderr


def test_stream_output_parses_as_yaml(run_cli):
    result = run_cli("render", "--env", "dev")
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert {d["kind"] for d in documents} >= {"Deployment", "Service", "ServiceMonitor", "NetworkPolicy"}
