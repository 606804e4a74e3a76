"""Shared test helpers: the project root, runners for the `tritonops` CLI, one assembled backends
folder for every tritonserver the tests start (tests/triton and tests/runtime), and the summary of
the figures tests reported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tritonops import cli
from tritonops.triton import server as triton_server

ROOT = Path(__file__).resolve().parents[1]
# The user property a test's reported figures travel in (the `figures` fixture of tests/promotion).
FIGURES = "figures"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List every figure line tests reported, by test; user properties reach the main process
    under pytest-xdist too."""
    lines = [
        f"{report.nodeid}: {value}"
        for category in ("passed", "failed")
        for report in terminalreporter.stats.get(category, [])
        if report.when == "call"
        for name, value in report.user_properties
        if name == FIGURES
    ]
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run `tritonops ARGS` through cli.main in this process (the same parsing, error handling and
    exit codes as the `tritonops` command, without an interpreter start and imports per call);
    returns a CompletedProcess with what it printed. `run_cli_process` runs a real process."""

    def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()  # what the test printed before is not the command's
        with monkeypatch.context() as scoped:
            scoped.chdir(cwd)
            try:
                code = cli.main(list(args))
            except SystemExit as exit:  # argparse's --help and --version
                code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(["tritonops", *args], code, captured.out, captured.err)

    return run


@pytest.fixture
def run_cli_process():
    """Run `tritonops ARGS` as a real process (signals, process exit, the real entry point)."""

    def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tritonops.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=120, check=False)

    return run


@pytest.fixture(scope="session")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One assembled backends folder shared by every server the tests start."""
    return triton_server.assemble_backends(tmp_path_factory.mktemp("triton-work"))
