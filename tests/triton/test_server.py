"""Running the wheel's tritonserver: the backends layout, the environment, start failures, and clean stops."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.triton.helpers import infer, linear_model, write_model
from tritonops import errors
from tritonops.triton import server as triton_server

PLAIN_PYTHON_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() + 1)])
            for r in requests
        ]
"""

PLAIN_PYTHON_CONFIG = """
backend: "python"
max_batch_size: 0
input [{ name: "IN" data_type: TYPE_FP32 dims: [2] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [2] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""

SLEEPY_MODEL = """
import time


class TritonPythonModel:
    def initialize(self, args):
        time.sleep(120)
"""

ONNX_CONFIG = """
platform: "onnxruntime_onnx"
max_batch_size: 4
input [{ name: "X" data_type: TYPE_FP32 dims: [4] }]
output [{ name: "Y" data_type: TYPE_FP32 dims: [2] }]
instance_group [{ kind: KIND_CPU count: 2 }]
"""


def group_members(pgid: int, settle_s: float = 5.0) -> list[int]:
    """Live (non-zombie) processes in group `pgid`, once SIGKILLed ones had `settle_s` to die."""
    deadline = time.monotonic() + settle_s
    while (members := _live_in_group(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return members


def _live_in_group(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def start(repository: Path, backends: Path, log_path: Path, **kwargs: object) -> triton_server.Server:
    return triton_server.start(repository, log_path=log_path, backend_directory=backends, **kwargs)  # type: ignore[arg-type]


def test_help_lists_every_option_we_pass() -> None:
    # tritonserver prints its usage on stderr and exits 1.
    result = subprocess.run(
        [triton_server.binary(), "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert "Usage: tritonserver" in result.stderr
    args = triton_server.command(
        Path("/repo"),
        backend_directory=Path("/b"),
        http_port=1,
        grpc_port=2,
        metrics_port=3,
        load_models=["m"],
    )
    for option in args[1:]:
        assert option.split("=")[0] in result.stderr


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = triton_server.free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_environment_puts_this_interpreter_first() -> None:
    env = triton_server.environment({"PATH": "/usr/bin", "PYTHONPATH": "/extra"})
    assert env["PATH"].split(os.pathsep)[-1] == "/usr/bin"
    assert (Path(env["PATH"].split(os.pathsep)[0]) / "python3").exists()
    assert env["PYTHONPATH"].split(os.pathsep)[-1] == "/extra"
    assert any((Path(entry) / "onnxruntime").is_dir() for entry in env["PYTHONPATH"].split(os.pathsep))


def test_assembled_backends_link_the_wheel_and_carry_our_backend(backends: Path) -> None:
    assert (backends / "python").is_symlink()
    assert (backends / "python").resolve() == (triton_server.wheel_root() / "backends" / "python").resolve()
    assert (backends / "onnxruntime" / "model.py").read_bytes() == triton_server.backend_source().read_bytes()
    stub = backends / "onnxruntime" / triton_server.STUB_NAME
    assert stub.is_symlink() and os.access(stub, os.X_OK)
    assert (backends / "onnxruntime" / triton_server.UTILS_NAME).is_file()


def test_assembling_twice_is_harmless(backends: Path) -> None:
    assert triton_server.assemble_backends(backends.parent) == backends
    assert (backends / "python").is_symlink()


def test_server_that_exits_early_raises_server_error_with_its_log(backends: Path, tmp_path: Path) -> None:
    with pytest.raises(errors.ServerError, match="exited with code") as failure:
        start(tmp_path / "no-such-repository", backends, tmp_path / "server.log")
    assert "no-such-repository" in str(failure.value)  # the log tail says what Triton disliked


def test_missed_deadline_kills_the_server_and_its_stubs(backends: Path, tmp_path: Path) -> None:
    # In explicit mode HTTP opens only after --load-model models load; this one never finishes loading.
    repository = tmp_path / "repository"
    (repository / "sleepy" / "1").mkdir(parents=True)
    (repository / "sleepy" / "1" / "model.py").write_text(SLEEPY_MODEL)
    (repository / "sleepy" / "config.pbtxt").write_text(PLAIN_PYTHON_CONFIG)
    with pytest.raises(errors.ServerError, match="not live") as failure:
        start(repository, backends, tmp_path / "server.log", load_models=["sleepy"], timeout_s=2.0)
    assert "server.log" in str(failure.value)
    server_pid = _server_pid(tmp_path / "server.log")
    assert group_members(server_pid) == []


def test_plain_python_and_onnx_models_serve_and_stop_leaves_no_stub(backends: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    write_model(repository, "linear", linear_model(), ONNX_CONFIG)
    (repository / "plain" / "1").mkdir(parents=True)
    (repository / "plain" / "1" / "model.py").write_text(PLAIN_PYTHON_MODEL)
    (repository / "plain" / "config.pbtxt").write_text(PLAIN_PYTHON_CONFIG)
    server = start(repository, backends, tmp_path / "server.log", load_models=["linear", "plain"])
    with server:
        pgid = server.process.pid
        with httpclient.InferenceServerClient(server.url.removeprefix("http://")) as client:
            out = infer(client, "plain", IN=np.array([1.0, 2.0], dtype=np.float32)).as_numpy("OUT")
            assert out.tolist() == [2.0, 3.0]
            assert infer(client, "linear", X=np.ones((2, 4), dtype=np.float32)).as_numpy("Y").shape == (2, 2)
        assert len(_live_in_group(pgid)) >= 4  # the server, one stub for plain, two for linear
    assert server.process.returncode == 0
    assert group_members(pgid) == []


def _server_pid(log: Path) -> int:
    """The server's process id, from its first log line (`I1125 22:37:13.188522 11587 file.cc:12] ...`)."""
    first = log.read_text(errors="replace").split(maxsplit=3)
    return int(first[2])
