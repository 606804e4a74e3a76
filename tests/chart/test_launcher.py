"""The Triton container entrypoint (charts/triton/files/launch.py), run for real.

The "server" after `--` is a small script that records the argv it was exec'd with, so each test
sees exactly what tritonserver would receive, or that it never started.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from tests.chart.helpers import launcher_args, pod_spec, triton_container
from tritonops import errors
from tritonops.chart import render
from tritonops.repository import checksums
from tritonops.runtime import podspec

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
        (model / str(folder) / "model.onnx").write_bytes(f"weights of {name} version {folder}".encode())
    if config is not None:
        (model / "config.pbtxt").write_text(f'name: "{name}"\n{config}', encoding="utf-8")
    return model


def write_state(path: Path, models: dict[str, object]) -> Path:
    document = {"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": models}
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


ZERO_DIGEST = "sha256:" + "0" * 64


def record(version: object, digest: object = ZERO_DIGEST) -> dict[str, object]:
    """A record as the promotion tool writes it; the default digest matches no folder."""
    entry = {"version": version, "committedAt": "2026-11-25T22:00:00Z"}
    if digest is not None:
        entry["digest"] = digest
    return entry


def committed(model: Path, version: int) -> dict[str, object]:
    """A record whose digest is the version folder's real one (computed by the Python package)."""
    return record(version, checksums.version_digest(model / str(version)))


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
    zeta = add_model(repo, "zeta", [2, 3], pin(3))
    alpha = add_model(repo, "alpha", [1], pin(1))
    state = write_state(repo / "current.json", {"zeta": committed(zeta, 3), "alpha": committed(alpha, 1)})

    result = launch(*state_options(state, repo))

    assert result.returncode == 0, result.stderr
    assert result.server_argv == [*SERVER_ARGS, "--load-model=alpha", "--load-model=zeta"]
    assert (
        f"committed model alpha version 1: files match {checksums.version_digest(alpha / '1')}"
        in result.stderr
    )
    assert (
        f"committed model zeta version 3: files match {checksums.version_digest(zeta / '3')}" in result.stderr
    )


def test_committed_model_already_on_command_line_is_not_loaded_twice(launch: LaunchFn, repo: Path) -> None:
    zeta = add_model(repo, "zeta", [3], pin(3))
    alpha = add_model(repo, "alpha", [1], pin(1))
    state = write_state(repo / "current.json", {"zeta": committed(zeta, 3), "alpha": committed(alpha, 1)})
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
        json.dumps(
            {
                "apiVersion": "tritonops/v1",
                "kind": "CommittedState",
                "models": {"m": record(3, "sha256:test")},
            }
        ),
        json.dumps(
            {
                "apiVersion": "tritonops/v1",
                "kind": "CommittedState",
                "models": {"m": record(3, "md5:" + "0" * 32)},
            }
        ),
        json.dumps({"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {"m": record(3, 42)}}),
        '{"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {"m": {"vers',
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
        "digest-not-hex",
        "digest-other-algorithm",
        "digest-not-string",
        "partially-written",
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


# --- what the record promises: the committed files ---------------------------------------------


def test_files_that_do_not_match_the_recorded_digest_refuse_naming_both_digests(
    launch: LaunchFn, repo: Path
) -> None:
    model = add_model(repo, "resnet", [3], pin(3))
    recorded = checksums.version_digest(model / "3")
    state = write_state(repo / "current.json", {"resnet": record(3, recorded)})
    (model / "3" / "model.onnx").write_bytes(b"weights that nobody committed")
    actual = checksums.version_digest(model / "3")

    result = launch(*state_options(state, repo))

    assert_refused(result)
    assert result.stderr.startswith(f"launch: refusing to start: {model / '3'}: model resnet version 3:")
    assert f"hash to {actual} but {state} records {recorded}" in result.stderr
    assert "Restore the committed files" in result.stderr
    assert f'if these files are the ones to serve, set models.resnet.digest to "{actual}"' in result.stderr


def test_a_file_added_to_the_committed_version_refuses_to_start(launch: LaunchFn, repo: Path) -> None:
    model = add_model(repo, "resnet", [3], pin(3))
    state = write_state(repo / "current.json", {"resnet": committed(model, 3)})
    (model / "3" / "extra").mkdir()
    (model / "3" / "extra" / "weights.bin").write_bytes(b"\0")

    assert_refused(launch(*state_options(state, repo)))


def test_no_verify_digest_starts_despite_a_mismatch_and_says_so(launch: LaunchFn, repo: Path) -> None:
    add_model(repo, "resnet", [3], pin(3))
    state = write_state(repo / "current.json", {"resnet": record(3, ZERO_DIGEST)})

    result = launch(*state_options(state, repo), "--no-verify-digest")

    assert result.returncode == 0, result.stderr
    assert result.server_argv == [*SERVER_ARGS, "--load-model=resnet"]
    assert "committed model resnet version 3: files not verified (--no-verify-digest)" in result.stderr


def test_record_without_digest_starts_with_a_warning_naming_the_digest_to_record(
    launch: LaunchFn, repo: Path
) -> None:
    # The promotion tool always records a digest; a hand-written record that lacks one starts
    # (its pin already selects the version) but says that the files are not verified.
    model = add_model(repo, "resnet", [3], pin(3))
    state = write_state(repo / "current.json", {"resnet": record(3, digest=None)})

    result = launch(*state_options(state, repo))

    assert result.returncode == 0, result.stderr
    assert result.server_argv == [*SERVER_ARGS, "--load-model=resnet"]
    assert f"launch: warning: {state}: models.resnet has no digest" in result.stderr
    assert f'"digest": "{checksums.version_digest(model / "3")}"' in result.stderr
    assert "committed model resnet version 3: files not verified (no digest in the record)" in result.stderr


def test_wrong_pin_refuses_before_reading_any_model_file(launch: LaunchFn, repo: Path) -> None:
    # A FIFO that nobody writes blocks whoever opens it: the launcher must refuse on the cheap
    # checks without hashing the committed files first (a crash-looping pod reads no gigabytes).
    model = add_model(repo, "resnet", [3], pin(4))
    os.mkfifo(model / "3" / "weights.fifo")
    state = write_state(repo / "current.json", {"resnet": record(3)})

    result = launch(*state_options(state, repo))

    assert_refused(result)
    assert "pins [4]" in result.stderr


def test_every_problem_is_named_in_one_refusal(launch: LaunchFn, repo: Path) -> None:
    add_model(repo, "a", [1], pin(2))
    add_model(repo, "b", [1], pin(1))
    state = write_state(repo / "current.json", {"a": record(1), "b": record(2)})

    result = launch(*state_options(state, repo))

    assert_refused(result)
    assert "pins [2] but the committed state says version 1" in result.stderr
    assert f"{repo / 'b'}/2: committed version folder is missing" in result.stderr
    assert "pins [1] but the committed state says version 2" in result.stderr


def test_committed_model_folder_missing_refuses_naming_it(launch: LaunchFn, repo: Path) -> None:
    state = write_state(repo / "current.json", {"gone": record(1)})

    result = launch(*state_options(state, repo))

    assert_refused(result)
    assert f"{repo / 'gone'}: committed model folder is missing" in result.stderr


# --- the pod's local copy of the record ---------------------------------------------------------


def test_started_pod_keeps_the_checked_record_as_its_local_copy(
    launch: LaunchFn, repo: Path, tmp_path: Path
) -> None:
    model = add_model(repo, "resnet", [3], pin(3))
    state = write_state(repo / "current.json", {"resnet": committed(model, 3)})
    cache = tmp_path / "pod-tmp" / "tritonops" / "committed-state.json"

    result = launch(*state_options(state, repo), f"--state-cache={cache}")

    assert result.returncode == 0, result.stderr
    assert cache.read_bytes() == state.read_bytes()
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # no temporary file left


def test_absent_record_keeps_an_empty_local_copy(launch: LaunchFn, repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "committed-state.json"
    cache.write_text("a copy from the container's previous start", encoding="utf-8")

    result = launch(*state_options(repo / "current.json", repo), f"--state-cache={cache}")

    assert result.returncode == 0, result.stderr
    assert committed_state.parse(cache.read_bytes(), str(cache)) == {}


def test_refused_start_leaves_the_local_copy_alone(launch: LaunchFn, repo: Path, tmp_path: Path) -> None:
    add_model(repo, "resnet", [3], pin(4))
    state = write_state(repo / "current.json", {"resnet": record(3)})
    cache = tmp_path / "committed-state.json"

    assert_refused(launch(*state_options(state, repo), f"--state-cache={cache}"))
    assert not cache.exists()


def test_unwritable_local_copy_is_a_warning_not_a_refusal(
    launch: LaunchFn, repo: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    cache = blocker / "committed-state.json"

    result = launch(*state_options(repo / "current.json", repo), f"--state-cache={cache}")

    assert result.returncode == 0, result.stderr
    assert f"launch: warning: {cache}: cannot keep the local copy" in result.stderr


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
    resnet = add_model(repo, "resnet", [3], pin(3))
    state = write_state(repo / "current.json", {"resnet": committed(resnet, 3)})
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
        ('name: "team#7" version_policy { specific { versions: [3] } }', [3]),
        ("name: 'it\\'s #1' version_policy { specific { versions: 2 } }  # comment", [2]),
        (
            'parameters { key: "note" value: { string_value: "version_policy { specific { versions: [9] } }" } }\n'
            "version_policy { specific { versions: [4] } }\n",
            [4],
        ),
        (
            'parameters { key: "note" value: { string_value: "version_policy { specific { versions: [9] } }" } }\n'
            "version_policy { latest { num_versions: 1 } }\n",
            None,
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
        "hash-inside-a-string",
        "single-quoted-string-with-escape",
        "policy-text-inside-a-string-value",
        "policy-text-inside-a-string-value-then-latest",
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


# --- the chart passes the launcher what it needs --------------------------------------------------


def test_chart_verifies_digests_and_keeps_the_local_copy_on_the_pods_own_tmp(rendered) -> None:
    item = rendered["prod"]
    args = launcher_args(item)
    assert "--verify-digest" in args
    assert "--state-cache=/tmp/tritonops/committed-state.json" in args
    # The copy must be pod-local (an emptyDir at /tmp), never on the shared repository.
    (tmp_mount,) = [m for m in triton_container(item)["volumeMounts"] if m["mountPath"] == "/tmp"]
    (tmp_volume,) = [v for v in pod_spec(item)["volumes"] if v["name"] == tmp_mount["name"]]
    assert "emptyDir" in tmp_volume


def test_chart_verify_digest_false_passes_no_verify_digest(render_with) -> None:
    args = launcher_args(render_with("dev", {"server": {"committedState": {"verifyDigest": False}}}))
    assert "--no-verify-digest" in args
    assert "--verify-digest" not in args


def test_chart_verify_digest_must_be_a_boolean(render_with) -> None:
    with pytest.raises(
        errors.ValuesError, match=r"server\.committedState\.verifyDigest: .yes. is not of type boolean"
    ):
        render_with("dev", {"server": {"committedState": {"verifyDigest": "yes"}}})


# --- what an earlier run of the container left in the pod's emptyDir volumes ----------------------
# emptyDir volumes live as long as the pod, not the container: after a crash or an OOM kill the
# restarted container finds the previous run's files there.


def _tree(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*")}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the cleaned ones that links point at: it must survive."""
    folder = tmp_path / "outside"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "precious.bin").write_bytes(b"not ours")
    return folder


def test_stale_python_backend_environments_are_removed_but_nothing_else_in_tmp(
    launch: LaunchFn, tmp_path: Path, outside: Path
) -> None:
    tmp = tmp_path / "tmp"
    (tmp / "python_env_AbC123" / "lib" / "python3.12").mkdir(parents=True)
    (tmp / "python_env_AbC123" / "lib" / "python3.12" / "torch.so").write_bytes(b"x" * 1024)
    (tmp / "python_env_file").write_bytes(b"stray")
    (tmp / "python_env_link").symlink_to(outside)
    (tmp / "tritonops").mkdir()
    (tmp / "tritonops" / "committed-state.json").write_text(committed_state.EMPTY_RECORD, encoding="utf-8")
    (tmp / "cache").mkdir()
    (tmp / "cache" / "python_env_not_top_level").mkdir()

    result = launch(f"--tmp-dir={tmp}", f"--state-cache={tmp / 'tritonops' / 'committed-state.json'}")

    assert result.returncode == 0, result.stderr
    assert result.server_argv == SERVER_ARGS
    assert _tree(tmp) == {
        "tritonops",
        "tritonops/committed-state.json",
        "cache",
        "cache/python_env_not_top_level",
    }
    assert _tree(outside) == {"sub", "sub/precious.bin"}, "a link is removed, never what it points at"
    assert f"removed 3 stale Python-backend environment(s) {tmp}/python_env_* left by an earlier run" in (
        result.stderr
    )


def test_a_clean_tmp_starts_without_a_word(launch: LaunchFn, tmp_path: Path) -> None:
    result = launch(f"--tmp-dir={tmp_path / 'tmp-never-created'}")

    assert result.returncode == 0 and result.server_argv == SERVER_ARGS
    assert "python_env" not in result.stderr


def test_object_store_download_folder_is_emptied_before_the_server_starts(
    launch: LaunchFn, tmp_path: Path, outside: Path
) -> None:
    # Triton wants TRITON_*_MOUNT_DIRECTORY empty; a model deleted from the bucket must not linger.
    cache = tmp_path / "object-store"
    (cache / "resnet50" / "1").mkdir(parents=True)
    (cache / "resnet50" / "1" / "model.onnx").write_bytes(b"old weights")
    (cache / "config.pbtxt").write_text("stale", encoding="utf-8")
    (cache / "linked").symlink_to(outside)

    result = launch(f"--object-store-cache={cache}")

    assert result.returncode == 0, result.stderr
    assert result.server_argv == SERVER_ARGS
    assert cache.is_dir() and _tree(cache) == set(), "emptied, the mount point itself kept"
    assert _tree(outside) == {"sub", "sub/precious.bin"}
    assert f"emptied the object-store download folder {cache} (3 entries left by an earlier run)" in (
        result.stderr
    )


@pytest.mark.parametrize("target", ["state-cache-folder", "its-parent"])
def test_object_store_folder_holding_the_readiness_copy_is_refused(
    launch: LaunchFn, tmp_path: Path, target: str
) -> None:
    copy = tmp_path / "tmp" / "tritonops" / "committed-state.json"
    copy.parent.mkdir(parents=True)
    copy.write_text(committed_state.EMPTY_RECORD, encoding="utf-8")
    folder = copy.parent if target == "state-cache-folder" else copy.parent.parent

    result = launch(f"--object-store-cache={folder}", f"--state-cache={copy}")

    assert_refused(result)
    assert f"--object-store-cache={folder}: refusing to empty a folder that holds" in result.stderr
    assert copy.read_text(encoding="utf-8") == committed_state.EMPTY_RECORD


def test_chart_clears_the_pods_own_tmp_and_object_store_folder(render_with) -> None:
    item = render_with(
        "dev",
        {
            "modelRepository": {
                "pvc": {"enabled": False},
                "objectStore": {"enabled": True, "uri": "s3://models/triton"},
            },
            "server": {"committedState": {"enabled": False}},
            "agent": {"enabled": False},
        },
    )
    args = launcher_args(item)
    container = triton_container(item)
    volumes = {v["name"]: v for v in pod_spec(item)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    (cache,) = [arg.split("=", 1)[1] for arg in args if arg.startswith("--object-store-cache=")]
    # The folder emptied is the one Triton downloads into, and both are the pod's own emptyDirs.
    assert cache == env["TRITON_AWS_MOUNT_DIRECTORY"] == env["TRITON_GCS_MOUNT_DIRECTORY"]
    assert "emptyDir" in volumes[mounts[cache]] and "emptyDir" in volumes[mounts["/tmp"]]
    assert "--tmp-dir=/tmp" in args


def test_chart_passes_no_object_store_folder_for_a_filesystem_repository(rendered) -> None:
    args = launcher_args(rendered["prod"])
    assert "--tmp-dir=/tmp" in args
    assert not [arg for arg in args if arg.startswith("--object-store-cache")]


def test_local_runtime_clears_the_replicas_own_tmp_never_the_machines(tmp_path: Path) -> None:
    # `tritonops up` runs the rendered launcher on a developer's machine: /tmp must map to the
    # replica's own folder, or the launcher would remove other programs' python_env_* folders.
    item = render.render("local")
    (plan,) = podspec.plan_replicas(
        item, replicas=1, repository=tmp_path / "models", work_dir=tmp_path, port_offset=0, backends=tmp_path
    )
    (tmp_dir,) = [arg.split("=", 1)[1] for arg in plan.command if arg.startswith("--tmp-dir=")]
    assert Path(tmp_dir) == Path(plan.work_dir) / "volumes" / "tmp"
