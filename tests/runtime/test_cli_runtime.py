"""`tritonops up/status/logs/down` and `demo` as a user runs them (real processes)."""

from __future__ import annotations

import json
import os
import re
import socket
import sysconfig
from pathlib import Path

import pytest

from tests.runtime.conftest import free_port_offset
from tritonops.chart import render
from tritonops.triton import server as triton_server

SECRET = "s3cret-value-that-must-not-reach-disk"


def _process_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode(errors="replace").split("=", 1) for entry in raw if b"=" in entry)


def test_up_status_logs_down(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TRITONOPS_TEST_API_TOKEN", SECRET)  # what a shell may hold: never on disk
    work = str(tmp_path / "work")
    offset = str(free_port_offset(1))
    try:
        up = run_cli("up", "--env", "local", "--work-dir", work, "--port-offset", offset)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "replica 0: Ready" in up.stderr
        assert "not applied" not in up.stderr  # local's pod asks for nothing the runtime leaves out
        http, grpc, metrics = (port + int(offset) for port in (8000, 8001, 8002))
        loopback = triton_server.LOOPBACK
        assert (
            f"  replica 0: HTTP http://{loopback}:{http}  gRPC {loopback}:{grpc}  "
            f"metrics http://{loopback}:{metrics}/metrics"
        ) in up.stdout
        key_file = Path(work).resolve() / "volumes" / "repository-api-key" / "key"
        assert f"  repository API key: {key_file} (send it in the admin-key header)" in up.stdout
        assert key_file.is_file()
        assert f"all replicas Ready; stop them with `tritonops down --work-dir {work}`" in up.stdout
        status = run_cli("status", "--work-dir", work, "--json")
        assert status.returncode == 0 and '"state": "Ready"' in status.stdout

        plan_text = (Path(work) / "plan.json").read_text()
        assert SECRET not in plan_text and "TRITONOPS_TEST_API_TOKEN" not in plan_text
        plan = json.loads(plan_text)
        assert "env" not in plan
        assert plan["search_path_prepend"] == triton_server.search_path_additions()
        pod_env = render.render("local").one("Deployment")["spec"]["template"]["spec"]["containers"][0]
        assert set(plan["replicas"][0]["env"]) == {e["name"] for e in pod_env.get("env", [])}
        # The supervisor builds the server's env at start: its own, the recorded paths, the pod's env.
        (replica,) = json.loads(status.stdout)["replicas"]
        server_env = _process_env(replica["pid"])
        assert server_env["PATH"].split(os.pathsep)[0] == sysconfig.get_path("scripts")
        assert {k: server_env[k] for k in plan["replicas"][0]["env"]} == plan["replicas"][0]["env"]

        logs = run_cli("logs", "0", "--work-dir", work, "-n", "200")
        assert "successfully loaded 'linear'" in logs.stdout
        bad = run_cli("logs", "7", "--work-dir", work)
        assert bad.returncode == 2 and "no such replica" in bad.stderr
    finally:
        down = run_cli("down", "--work-dir", work)
    assert down.returncode == 0 and down.stdout == f"stopped 1 replica(s) in {Path(work).resolve()}\n"
    after = run_cli("status", "--work-dir", work)
    assert after.returncode == 3 and "stopped" in after.stdout
    # The hint starts this runtime again as it ran (its folder and ports), and nothing running is
    # not called in sync with the committed state.
    assert f"(`tritonops up --work-dir {work} --port-offset {offset}` to start)" in after.stdout
    assert "the replicas are not running" in after.stdout and "in sync" not in after.stdout
    for command in (["reconcile"], ["tune", "linear", "--p99-budget", "10"]):
        refused = run_cli(*command, "--work-dir", work)
        assert refused.returncode == 2 and refused.stderr == (
            f"tritonops: the local runtime in {Path(work).resolve()} is not running; start it with "
            f"`tritonops up --work-dir {work} --port-offset {offset}`\n"
        ), refused.stderr
    again = run_cli("down", "--work-dir", work)
    assert again.returncode == 3, again.stdout + again.stderr
    assert again.stdout == f"nothing was running in {Path(work).resolve()} (it was already stopped)\n"


def test_failed_up_shows_the_log_line_that_says_why_and_status_exits_1(run_cli, tmp_path):
    work = str(tmp_path / "failing")
    offset = str(free_port_offset(1))
    try:
        up = run_cli(
            "up", "--work-dir", work, "--port-offset", offset, "--set", "server.extraArgs={--bogus-flag=1}"
        )
        assert up.returncode == 1, up.stdout + up.stderr
        why = "unrecognized option '--bogus-flag=1'"
        assert "replica 0 failed: exited with code 1, 3 failed starts in a row\n" in up.stdout
        assert f"  its log says: {triton_server.binary()}: {why}\n" in up.stdout
        # The line that says why is shown once: not in the status row, the progress or the reason.
        assert (up.stdout + up.stderr).count(why) == 1, up.stdout + up.stderr
        log = Path(work).resolve() / "replicas" / "0" / "triton.log"
        assert f"full log: {log} (`tritonops logs 0 --work-dir {work}`)" in up.stdout
        assert f"stop what is left with `tritonops down --work-dir {work}`" in up.stdout
        assert "Print usage" not in up.stdout  # Triton's option list stays in the log
        status = run_cli("status", "--work-dir", work)
        assert status.returncode == 1 and "Failed" in status.stdout, status.stdout + status.stderr
        assert (
            status.stdout.count(why) == 1
            and f"its log says: {triton_server.binary()}: {why}" in status.stdout
        )
    finally:
        run_cli("down", "--work-dir", work)


def test_up_prod_runs_on_the_cpu_and_says_what_of_its_pod_spec_is_not_applied(run_cli, tmp_path):
    work = str(tmp_path / "prod")
    offset = str(free_port_offset(1))
    try:
        # --replicas wins over the HPA's minReplicas (prod renders no Deployment replicas). Prod's
        # 10 s probe periods and 15 s preStop sleep are shortened: the test is about what `up` says.
        fast = [
            f"--set={value}"
            for value in ("probes.startup.periodSeconds=1", "probes.readiness.periodSeconds=1")
        ]
        fast.append("--set=rollout.preStopSleepSeconds=0")
        up = run_cli(
            "up", "--env", "prod", "--replicas", "1", "--work-dir", work, "--port-offset", offset, *fast
        )
        assert up.returncode == 0, up.stdout + up.stderr
        lines = up.stderr.splitlines()
        assert (
            "resources nvidia.com/gpu: 1 (gpu.enabled: true in values/prod.yaml) not applied: the replicas "
            "run on this machine's CPU (the local ONNX Runtime backend is CPU-only)"
        ) in lines
        assert any(
            line.startswith("tolerations (nvidia.com/gpu Exists:NoSchedule) not applied") for line in lines
        )
        assert "replica 0: Ready (all readiness checks pass)" in lines
        assert "replica 1" not in up.stdout + up.stderr
    finally:
        run_cli("down", "--work-dir", work)


def test_up_on_ports_in_use_refuses_before_starting_naming_port_and_replica(run_cli, tmp_path):
    work = tmp_path / "busy"
    offset = free_port_offset(2)
    with socket.socket() as holder:
        holder.bind((triton_server.LOOPBACK, 8012 + offset))  # replica 1's metrics port
        holder.listen()
        up = run_cli("up", "--work-dir", str(work), "--port-offset", str(offset), "--replicas", "2")
    assert up.returncode == 2, up.stdout + up.stderr
    assert up.stderr == (
        f"tritonops: replica 1's port {8012 + offset} (metrics) is in use by another process: "
        "pick other ports with --port-offset N (env TRITONOPS_PORT_OFFSET)\n"
    )
    assert not (work / "state.json").exists() and not (work / "replicas").exists()


def test_up_on_the_ports_of_another_runtime_names_its_work_folder(run_cli, start_runtime, tmp_path):
    # Before: the second runtime's probes reached the first one's Triton and it reported Ready.
    first = start_runtime()
    offset = first.replicas[0].ports["http"] - 8000
    second = tmp_path / "second"
    up = run_cli("up", "--work-dir", str(second), "--port-offset", str(offset))
    assert up.returncode == 2, up.stdout + up.stderr
    names = ("http", "grpc", "metrics", "agent-metrics")
    ports = ", ".join(f"{8000 + offset + i} ({name})" for i, name in enumerate(names))
    assert up.stderr == (
        f"tritonops: replica 0's ports {ports} are in use by the tritonops runtime in {first.work_dir}: "
        f"stop it with `tritonops down --work-dir {first.work_dir}`, or pick other ports with "
        "--port-offset N (env TRITONOPS_PORT_OFFSET)\n"
    )
    assert not (second / "state.json").exists()


@pytest.mark.parametrize(
    ("offset", "outside"),
    [(60000, "replica 0's http port 68000"), (-7900, "replica 0's http port 100")],
    ids=["past-65535", "privileged"],
)
def test_port_offsets_that_leave_1024_65535_are_refused(run_cli, tmp_path, offset, outside):
    work = tmp_path / "w"
    up = run_cli("up", "--work-dir", str(work), "--port-offset", str(offset))
    assert up.returncode == 2, up.stdout + up.stderr
    assert up.stderr.startswith(f"tritonops: --port-offset {offset}: {outside}, ")
    assert "outside 1024-65535" in up.stderr and "use an offset between -6976 and 57532" in up.stderr
    assert not work.exists()


def test_up_refuses_zero_replicas(run_cli, tmp_path):
    result = run_cli("up", "--replicas", "0", "--work-dir", str(tmp_path / "w"))
    assert result.returncode == 2 and "--replicas 0: run at least one replica" in result.stderr


def test_commands_before_up_say_what_to_do(run_cli, tmp_path):
    never = tmp_path / "never"
    result = run_cli("status", "--work-dir", str(never))
    assert result.returncode == 2
    assert f"nothing was started here; run `tritonops up --work-dir {never}` first" in result.stderr
    down = run_cli("down", "--work-dir", str(never))
    assert down.returncode == 2 and down.stdout == ""
    assert down.stderr == (
        f"tritonops: {never}: nothing was started here, so nothing to stop; give the --work-dir that "
        "`tritonops up` used\n"
    )
    status_json = run_cli("status", "--work-dir", str(never), "--json")
    assert status_json.returncode == 2
    assert json.loads(status_json.stdout) == {
        "error": result.stderr.strip().removeprefix("tritonops: "),
        "exit_code": 2,
    }


def test_demo_runs_end_to_end_on_shifted_ports_and_leaves_the_server_running(run_cli, tmp_path, monkeypatch):
    work = str(tmp_path / "demo")
    offset = free_port_offset(1)
    monkeypatch.setenv("TRITONOPS_PORT_OFFSET", str(offset))  # the demo's only way off 8000-8002 before
    try:
        demo = run_cli("demo", "--work-dir", work)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        http, grpc, metrics = (port + offset for port in (8000, 8001, 8002))
        url = f"http://{triton_server.LOOPBACK}:{http}"
        assert (
            f"serving on HTTP {url}, gRPC {triton_server.LOOPBACK}:{grpc}, "
            f"metrics http://{triton_server.LOOPBACK}:{metrics}/metrics"
        ) in demo.stdout
        assert f"curl {url}/v2/health/ready" in demo.stdout
        assert "matches onnxruntime" in demo.stdout
        assert "nv_inference_request_success{model=linear}: 0 -> 1" in demo.stdout
        key_file = Path(work).resolve() / "volumes" / "repository-api-key" / "key"
        assert f"the repository API's key: {key_file} (header admin-key)" in demo.stdout
        for hint in ("status", "logs 0", "down"):
            assert re.search(rf"^    tritonops {hint} --work-dir {re.escape(work)} +# ", demo.stdout, re.M)
        assert " | logs | " not in demo.stdout
        assert run_cli("status", "--work-dir", work).returncode == 0
    finally:
        run_cli("down", "--work-dir", work)


def test_a_bad_port_offset_variable_is_an_input_error(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TRITONOPS_PORT_OFFSET", "eight")
    for command in ("up", "demo"):
        result = run_cli(command, "--work-dir", str(tmp_path / command))
        assert result.returncode == 2, result.stdout + result.stderr
        assert "TRITONOPS_PORT_OFFSET='eight': not a whole number" in result.stderr
        assert not (tmp_path / command).exists()


def test_port_offset_flag_wins_over_the_variable(monkeypatch):
    from tritonops import cli

    monkeypatch.setenv("TRITONOPS_PORT_OFFSET", "300")
    for command in ("up", "demo"):
        parsed = cli.build_parser().parse_args([command, "--port-offset", "500"])
        assert cli._port_offset(parsed.port_offset) == 500
        assert cli._port_offset(cli.build_parser().parse_args([command]).port_offset) == 300


def _processes_mentioning(text: str) -> list[int]:
    from pathlib import Path

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in command_line and state != "Z":
            found.append(int(entry.name))
    return found


def test_ctrl_c_during_up_leaves_no_process_behind(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    work = tmp_path / "interrupted"
    command = [
        sys.executable,
        "-m",
        "tritonops.cli",
        "up",
        "--env",
        "local",
        "--work-dir",
        str(work),
        "--port-offset",
        str(free_port_offset(1)),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (work / "state.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the supervisor is running and has started the replica
    assert (work / "state.json").exists(), "up started no supervisor within 30 s"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    deadline = time.monotonic() + 10  # killed processes may take a moment to be torn down
    while (left := _processes_mentioning(str(work))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == []


def _triton_log(tmp_path: Path, name: str, *args: str) -> Path:
    """What the real tritonserver writes when started with `args` (it exits at once)."""
    import subprocess

    log = tmp_path / f"{name}.log"
    with log.open("wb") as sink:
        subprocess.run(
            [str(triton_server.binary()), *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=triton_server.environment(),
            timeout=60,
            check=False,
        )
    return log


@pytest.mark.parametrize("log_format", ["default", "ISO8601"])
def test_first_error_line_skips_the_option_table_and_the_no_gpu_noise(tmp_path, log_format):
    from tritonops.runtime import replica_logs

    unknown = _triton_log(tmp_path, "unknown-flag", "--bogus-flag=1", f"--log-format={log_format}")
    assert "Print usage" in unknown.read_text()
    assert replica_logs.first_error_line(unknown).endswith(
        "tritonserver: unrecognized option '--bogus-flag=1'"
    )
    absent = tmp_path / "absent"
    missing = _triton_log(
        tmp_path, "missing-repository", f"--model-repository={absent}", f"--log-format={log_format}"
    )
    text = missing.read_text()
    assert "CudaDriverHelper has not been initialized" in text  # an E line to skip on this machine
    assert "| server_version" in text  # the option table, before the line that says why
    assert replica_logs.first_error_line(missing) == (
        f"error: creating server: Internal - failed to stat file {absent}"
    )


def test_first_error_line_reads_triton_errors_in_either_log_format(tmp_path):
    from tritonops.runtime import replica_logs

    log = tmp_path / "busy.log"
    for line in (
        '2026-11-26T10:31:08Z E 4902 main.cc:257] "failed to start HTTP service: in use "',
        'E1126 10:31:08.260090 4902 main.cc:257] "failed to start HTTP service: in use "',
    ):
        log.write_text(
            '2026-11-26T10:31:08Z E 4902 server.cc:241] "CudaDriverHelper has not been initialized."\n'
            'E1126 10:31:08.198287 4902 server.cc:241] "CudaDriverHelper has not been initialized."\n'
            "Error: Failed to initialize NVML\n"
            '2026-11-26T10:31:08Z I 4902 http_server.cc:4713] "Started HTTPService at 127.0.0.1:8000"\n'
            f"{line}\n"
            "I1126 10:31:09.546355 4966 pb_stub.cc:2145]  Non-graceful termination detected.\n"
        )
        assert replica_logs.first_error_line(log) == line


def test_first_error_line_reads_only_the_latest_start(tmp_path):
    from tritonops.runtime import replica_logs

    log = tmp_path / "triton.log"
    log.write_text(
        f"{replica_logs.START_MARKER} 2026-01-01T00:00:00 ---\n"
        "error: creating server: the first start's reason\n"
        f"{replica_logs.START_MARKER} 2026-01-01T00:00:05 ---\n"
        "launch: committed model linear version 1\n"
        "launch: refusing to start: linear/config.pbtxt does not pin version 1\n"
    )
    assert replica_logs.first_error_line(log) == (
        "launch: refusing to start: linear/config.pbtxt does not pin version 1"
    )
    log.write_text('I1126 10:26:55.412950 26210 server.cc:302] "Started"\n')
    assert replica_logs.first_error_line(log) is None
    assert replica_logs.first_error_line(tmp_path / "absent.log") is None


def test_first_error_line_is_tritons_own_line_when_the_grpc_port_is_taken(tmp_path):
    # gRPC core logs `chttp2_server.cc ... UNKNOWN:No address added ...` first: noise, not the reason.
    from tritonops.runtime import replica_logs

    http, grpc, metrics = triton_server.free_ports(3)
    empty = tmp_path / "empty-repository"
    empty.mkdir()
    with socket.socket() as holder:
        holder.bind((triton_server.LOOPBACK, grpc))
        holder.listen()
        log = _triton_log(
            tmp_path,
            "grpc-busy",
            f"--model-repository={empty}",
            "--model-control-mode=explicit",
            *(f"--{kind}-address={triton_server.LOOPBACK}" for kind in ("http", "grpc", "metrics")),
            f"--http-port={http}",
            f"--grpc-port={grpc}",
            f"--metrics-port={metrics}",
        )
    text = log.read_text()
    assert "chttp2_server.cc" in text and "UNKNOWN:No address added" in text  # what is skipped
    line = replica_logs.first_error_line(log)
    assert line is not None and "main.cc" in line, line
    assert line.endswith(
        f"failed to start GRPC service: Unavailable - Socket '{triton_server.LOOPBACK}:{grpc}' already in use \""
    )


def test_first_error_line_stops_at_a_backend_traceback(tmp_path, backends):
    from tritonops.runtime import replica_logs
    from tritonops.triton import onnx_models

    repository = tmp_path / "repository"
    onnx_models.linear(repository / "linear" / "1" / "model.onnx")
    (repository / "linear" / "config.pbtxt").write_text(
        'platform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        'input [ { name: "input" data_type: TYPE_FP32 dims: [ 5 ] } ]\n'
        'output [ { name: "output" data_type: TYPE_FP32 dims: [ 2 ] } ]\n'
    )
    http, grpc, metrics = triton_server.free_ports(3)
    log = _triton_log(
        tmp_path,
        "bad-dims",
        f"--backend-directory={backends}",
        f"--model-repository={repository}",
        "--model-control-mode=explicit",
        "--load-model=linear",
        *(f"--{kind}-address={triton_server.LOOPBACK}" for kind in ("http", "grpc", "metrics")),
        f"--http-port={http}",
        f"--grpc-port={grpc}",
        f"--metrics-port={metrics}",
    )
    assert "\\n\\nAt:\\n" in log.read_text()  # the backend's traceback, escaped in Triton's line
    line = replica_logs.first_error_line(log)
    assert line is not None and "At:" not in line and "model.py(" not in line, line
    assert line.endswith("making complete shape [-1,5])"), line
