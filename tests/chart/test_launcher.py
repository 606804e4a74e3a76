"""The Triton container entrypoint (charts/triton/files/launch.py), run for real.

The "server" after `--` is a small script that records the argv it was exec'd with, so each test
sees exactly what tritonserver would receive, or that it never started.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

FILES = Path(__file__).resolve().parents[2] / "charts" / "triton" / "files"
LAUNCH = FILES / "launch.py"
SERVER_ARGS = ["--model-repository=/models", "--model-control-mode=explicit", "--strict-readiness=false"]


def _load_committed_state() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_committed_state", FILES / "committed_state.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


committed_state = _load_committed_state()


@dataclass
class Launch:
    returncode: int
    stderr: str
    server_argv: list[str] | None  # None: the server was never exec'd


LaunchFn = Callable[..., Launch]


@pytest.fixture
def fake_server(tmp_path: Path) -> tuple[Path, Path]:
    """An executable that writes its arguments as JSON to argv.json, standing in for tritonserver."""
    argv_file = tmp_path / "argv.json"
    server = tmp_path / "tritonserver"
    server.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"with open({str(argv_file)!r}, 'w') as handle:\n"
        "    json.dump(sys.argv[1:], handle)\n",
        encoding="utf-8",
    )
    server.chmod(0o755)
    return server, argv_file


@pytest.fixture
def launch(fake_server: tuple[Path, Path]) -> LaunchFn:
    server, argv_file = fake_server

    def run(*options: str, server_args: list[str] = SERVER_ARGS, separator: bool = True) -> Launch:
        command = [sys.executable, str(LAUNCH), *options]
        if separator:
            command += ["--", str(server), *server_args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        argv = json.loads(argv_file.read_text(encoding="utf-8")) if argv_file.exists() else None
        return Launch(result.returncode, result.stderr, argv)

    return run


def pin(version: int) -> str:
    return (
        'platform: "onnxruntime_onnx"\n'
        "max_batch_size: 8\n"
        f"version_policy: {{ specific: {{ versions: [{version}] }} }}\n"
        "instance_group [ { kind: KIND_CPU } ]\n"
    )


def add_model(repo: Path, name: str, folders: list[int], config: str | None) -> Path:
    model = repo / name
    model.mkdir(parents=True)
    for folder in folders:
        (model / str(folder)).mkdir()
    if config is not None:
        (model / "config.pbtxt").write_text(f'name: "{name}"\n{config}', encoding="utf-8")
    return model


def write_state(path: Path, models: dict[str, object]) -> Path:
    document = {"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": models}
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def record(version: object) -> dict[str, object]:
    return {"version": version, "digest": "sha256:" + "0" * 64, "committedAt": "2026-11-25T22:00:00Z"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path


def assert_refused(result: Launch) -> None:
    """The launcher exited non-zero and never started the server."""
    assert result.returncode != 0
    assert result.server_argv is None


def state_options(state: Path, repo: Path) -> list[str]:
    return [f"--committed-state={state}", f"--repository={repo}"]


# --- committed models -------------------------------------------------------------------------


@pytest.mark.parametrize("with_state_option", [False, True], ids=["no-option", "state-file-absent"])
def test_without_committed_state_server_args_pass_through_unchanged(
    launch: LaunchFn, repo: Path, with_state_option: bool
) -> None:
    options = state_options(repo / "current.json", repo) if with_state_option else []

    result = launch(*options)

    assert result.returncode == 0, result.stderr
    assert result.server_argv == SERVER_ARGS


def test_committed_models_are_loaded_in_sorted_order_after_server_args(launch: LaunchFn, repo: Path) -> None:
    add_model(repo, "zeta", [2, 3], pin(3))
    add_model(repo, "alpha", [1], pin(1))
    state = write_state(repo / "current.json", {"zeta": record(3), "alpha": record(1)})

    result = launch(*state_options(state, repo))

    assert result.returncode == 0, result.stderr
    assert result.server_argv == [*SERVER_ARGS, "--load-model=alpha", "--load-model=zeta"]
    assert "committed model alpha version 1" in result.stderr
    assert "committed model zeta version 3" in result.stderr


def test_committed_model_already_on_command_line_is_not_loaded_twice(launch: LaunchFn, repo: Path) -> None:
    add_model(repo, "zeta", [3], pin(3))
    add_model(repo, "alpha", [1], pin(1))
    state = write_state(repo / "current.json", {"zeta": record(3), "alpha": record(1)})
    server_args = [*SERVER_ARGS, "--load-model=zeta"]

    result = launch(*state_options(state, repo), server_args=server_args)

    assert result.returncode == 0, result.stderr
    assert result.server_argv == [*server_args, "--load-model=alpha"]


def test_empty_committed_models_start_with_static_list_only(launch: LaunchFn, repo: Path) -> None:
    state = write_state(repo / "current.json", {})

    result = launch(*state_options(state, repo))

    assert result.returncode == 0, result.stderr
    assert result.server_argv == SERVER_ARGS


def test_config_pinning_another_version_refuses_to_start(launch: LaunchFn, repo: Path) -> None:
    model = add_model(repo, "resnet", [3, 4], pin(4))
    state = write_state(repo / "current.json", {"resnet": record(3)})

    result = launch(*state_options(state, repo))

    assert_refused(result)
    assert result.stderr.startswith("launch:")
    assert str(model / "config.pbtxt") in result.stderr
    assert "pins [4]" in result.stderr
    assert "version 3" in result.stderr


@pytest.mark.parametrize(
    "policy",
    [
        "",
        "version_policy: { latest: { num_versions: 1 } }\n",
        "version_policy: { all: {} }\n",
        "version_policy: { specific: { } }\n",
    ],
    ids=["no-policy", "latest", "all", "specific-empty"],
)
def test_config_that_does_not_pin_the_committed_version_refuses_to_start(
    launch: LaunchFn, repo: Path, policy: str
) -> None:
    model = add_model(repo, "resnet", [3], 'platform: "onnxruntime_onnx"\n' + policy)
    state = write_state(repo / "current.json", {"resnet": record(3)})

    result = launch(*state_options(state, repo))

    assert_refused(result)
    assert result.stderr.startswith("launch:")
    assert str(model / "config.pbtxt") in result.stderr
    assert "pins nothing" in result.stderr


def test_missing_committed_version_folder_refuses_naming_the_folder(launch: LaunchFn, repo: Path) -> None:
    model = add_model(repo, "resnet", [2], pin(3))
    state = write_state(repo / "current.json", {"resnet": record(3)})

    result = launch(*state_options(state, repo))

    assert_refused(result)
    assert result.stderr.startswith("launch:")
    assert f"{model}/3: committed version folder is missing" in result.stderr


def test_missing_config_refuses_naming_the_config(launch: LaunchFn, repo: Path) -> None:
    model = add_model(repo, "resnet", [3], config=None)
    state = write_state(repo / "current.json", {"resnet": record(3)})

    result = launch(*state_options(state, repo))

    assert_refused(result)
    assert f"{model / 'config.pbtxt'}: cannot read" in result.stderr


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps(["CommittedState"]),
        json.dumps({"apiVersion": "tritonops/v1", "kind": "Something", "models": {}}),
        json.dumps({"apiVersion": "tritonops/v2", "kind": "CommittedState", "models": {}}),
        json.dumps({"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": []}),
        json.dumps({"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {"m": record(0)}}),
        json.dumps({"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {"m": record(-1)}}),
        json.dumps({"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {"m": record("3")}}),
        json.dumps({"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {"m": record(3.0)}}),
        json.dumps({"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {"m": record(True)}}),
        json.dumps({"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {"m": 3}}),
    ],
    ids=[
        "not-json",
        "not-a-mapping",
        "wrong-kind",
        "wrong-api-version",
        "models-not-mapping",
        "version-zero",
        "version-negative",
        "version-string",
        "version-float",
        "version-bool",
        "record-not-mapping",
    ],
)
def test_malformed_committed_state_refuses_naming_the_file(
    launch: LaunchFn, repo: Path, content: str
) -> None:
    add_model(repo, "m", [3], pin(3))
    state = repo / "current.json"
    state.write_text(content, encoding="utf-8")

    result = launch(*state_options(state, repo))

    assert_refused(result)
    assert result.stderr.startswith("launch: refusing to start:")
    assert str(state) in result.stderr


# --- repository API key ---------------------------------------------------------------------


def test_api_key_file_adds_restricted_http_and_grpc_flags(launch: LaunchFn, tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text("s3cr3t-key\n", encoding="utf-8")

    result = launch(f"--api-key-file={key_file}", "--api-header=X-Repo-Key")

    assert result.returncode == 0, result.stderr
    assert result.server_argv == [
        *SERVER_ARGS,
        "--http-restricted-api=model-repository,logging,shared-memory,trace:X-Repo-Key=s3cr3t-key",
        "--grpc-restricted-protocol=model-repository,logging,shared-memory,trace:X-Repo-Key=s3cr3t-key",
    ]
    assert "s3cr3t-key" not in result.stderr


def test_committed_models_and_api_key_flags_are_combined(
    launch: LaunchFn, repo: Path, tmp_path: Path
) -> None:
    add_model(repo, "resnet", [3], pin(3))
    state = write_state(repo / "current.json", {"resnet": record(3)})
    key_file = tmp_path / "api-key"
    key_file.write_text("k", encoding="utf-8")

    result = launch(*state_options(state, repo), f"--api-key-file={key_file}", "--api-header=H")

    assert result.returncode == 0, result.stderr
    assert result.server_argv == [
        *SERVER_ARGS,
        "--load-model=resnet",
        "--http-restricted-api=model-repository,logging,shared-memory,trace:H=k",
        "--grpc-restricted-protocol=model-repository,logging,shared-memory,trace:H=k",
    ]


def test_missing_api_key_file_refuses_naming_the_file(launch: LaunchFn, tmp_path: Path) -> None:
    key_file = tmp_path / "absent" / "api-key"

    result = launch(f"--api-key-file={key_file}", "--api-header=X-Repo-Key")

    assert_refused(result)
    assert result.stderr.startswith(f"launch: {key_file}: cannot read the repository API key")


@pytest.mark.parametrize("content", ["", " \n\t\n"], ids=["empty", "whitespace"])
def test_empty_api_key_refuses_to_start(launch: LaunchFn, tmp_path: Path, content: str) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(content, encoding="utf-8")

    result = launch(f"--api-key-file={key_file}", "--api-header=X-Repo-Key")

    assert_refused(result)
    assert result.stderr.startswith(f"launch: {key_file}: empty key")


def test_api_key_without_header_refuses_to_start(launch: LaunchFn, tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text("s3cr3t-key", encoding="utf-8")

    result = launch(f"--api-key-file={key_file}")

    assert_refused(result)
    assert "missing --api-header" in result.stderr


# --- command line -----------------------------------------------------------------------------


def test_missing_double_dash_refuses_to_start(launch: LaunchFn) -> None:
    result = launch(separator=False)

    assert_refused(result)
    assert result.stderr.startswith("launch: expected '-- tritonserver ARGS...'")


def test_nothing_after_double_dash_refuses_to_start() -> None:
    result = subprocess.run(
        [sys.executable, str(LAUNCH), "--"], capture_output=True, text=True, timeout=30, check=False
    )

    assert result.returncode != 0
    assert result.stderr.startswith("launch: no server command after '--'")


# --- pinned_versions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("version_policy: { specific: { versions: [1, 3] } }", [1, 3]),
        ("version_policy { specific { versions: [3, 1] } }", [1, 3]),
        ("version_policy: {\n  specific: {\n    versions: [\n      5,\n      2\n    ]\n  }\n}", [2, 5]),
        ("version_policy { specific { versions: 4\n versions: 2 } }", [2, 4]),
        ("version_policy { specific { versions: 7 } }", [7]),
        (
            'name: "m"\n'
            "# version_policy: { specific: { versions: [8] } }\n"
            "version_policy {\n"
            "  specific {\n"
            "    # versions: 9\n"
            "    versions: [3]  # was [2]\n"
            "  }\n"
            "}\n"
            "instance_group [ { count: 2, kind: KIND_GPU } ]\n"
            'parameters { key: "k" value: { string_value: "v" } }\n'
            "dynamic_batching { max_queue_delay_microseconds: 100 }\n",
            [3],
        ),
        (
            'name: "m"\n'
            "dynamic_batching { preferred_batch_size: [4, 8] }\n"
            "version_policy: { specific: { versions: [6] } }\n"
            'model_warmup [ { name: "w" inputs { key: "x" value: { dims: [1] } } } ]\n',
            [6],
        ),
        ("version_policy: { latest: { num_versions: 1 } }", None),
        ("version_policy: { all: { } }", None),
        ('name: "m"\nplatform: "onnxruntime_onnx"\n', None),
        ("# version_policy: { specific: { versions: [3] } }\n", None),
        ("", None),
    ],
    ids=[
        "list",
        "list-unsorted-no-colons",
        "list-multiline",
        "repeated-field",
        "scalar",
        "nested-braces-and-comments",
        "other-blocks-around",
        "latest",
        "all",
        "absent",
        "commented-out",
        "empty-config",
    ],
)
def test_pinned_versions_reads_specific_version_policy(config: str, expected: list[int] | None) -> None:
    assert committed_state.pinned_versions(config) == expected


def test_pinned_versions_counts_a_version_repeated_twice_once() -> None:
    # Triton collects the specific versions into a set, so `versions: 2 versions: 2` pins exactly
    # version 2; check_repository compares against [version], so a duplicate must not count twice.
    assert committed_state.pinned_versions("version_policy { specific { versions: 2\nversions: 2 } }") == [2]


def test_committed_state_without_repository_is_a_usage_error(tmp_path):
    state = tmp_path / "current.json"
    state.write_text('{"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {}}')
    result = subprocess.run(
        [sys.executable, str(LAUNCH), f"--committed-state={state}", "--", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "--committed-state needs --repository" in result.stderr
    assert "Traceback" not in result.stderr
