"""`tritonops up/status/logs/down` and `demo` as a user runs them (real processes)."""

from __future__ import annotations

from tests.runtime.conftest import free_port_offset


def test_up_status_logs_down(run_cli, tmp_path):
    work = str(tmp_path / "work")
    offset = str(free_port_offset(1))
    try:
        up = run_cli("up", "--env", "local", "--work-dir", work, "--port-offset", offset)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "replica 0: Ready" in up.stderr and "all replicas Ready" in up.stdout
        status = run_cli("status", "--work-dir", work, "--json")
        assert status.returncode == 0 and '"state": "Ready"' in status.stdout
        logs = run_cli("logs", "0", "--work-dir", work, "-n", "200")
        assert "successfully loaded 'linear'" in logs.stdout
        bad = run_cli("logs", "7", "--work-dir", work)
        assert bad.returncode == 2 and "no such replica" in bad.stderr
    finally:
        down = run_cli("down", "--work-dir", work)
    assert down.returncode == 0 and down.stdout.startswith("stopped")
    after = run_cli("status", "--work-dir", work)
    assert after.returncode == 3 and "stopped" in after.stdout


def test_up_refuses_zero_replicas(run_cli, tmp_path):
    result = run_cli("up", "--replicas", "0", "--work-dir", str(tmp_path / "w"))
    assert result.returncode == 2 and "--replicas 0: run at least one replica" in result.stderr


def test_commands_before_up_say_what_to_do(run_cli, tmp_path):
    result = run_cli("status", "--work-dir", str(tmp_path / "never"))
    assert result.returncode == 2
    assert "nothing was started here; run `tritonops up` first" in result.stderr
    assert run_cli("down", "--work-dir", str(tmp_path / "never")).returncode == 0


def test_demo_runs_end_to_end_and_leaves_the_server_running(run_cli, tmp_path):
    work = str(tmp_path / "demo")
    try:
        # The demo uses the rendered ports (8000-8002); skip cleanly if something else holds them.
        import socket

        for port in (8000, 8001, 8002):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    import pytest

                    pytest.skip(f"port {port} is in use on this machine")
        demo = run_cli("demo", "--work-dir", work)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "matches onnxruntime" in demo.stdout
        assert "nv_inference_request_success{model=linear}: 0 -> 1" in demo.stdout
        assert "stop it with `tritonops down`" in demo.stdout
        assert run_cli("status", "--work-dir", work).returncode == 0
    finally:
        run_cli("down", "--work-dir", work)


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
