"""The launcher's restricted-API flags (charts/triton/files/launch.py), run for real: which Triton
API groups need the key, and the lists it refuses before Triton would.

The "server" after `--` records the argv it was exec'd with; see tests/chart/test_launcher.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parents[2] / "charts" / "triton" / "files" / "launch.py"


@pytest.fixture
def run(tmp_path: Path):
    argv_file = tmp_path / "argv.json"
    server = tmp_path / "tritonserver"
    server.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"with open({str(argv_file)!r}, 'w') as handle:\n    json.dump(sys.argv[1:], handle)\n",
        encoding="utf-8",
    )
    server.chmod(0o755)
    key_file = tmp_path / "api-key"
    key_file.write_text("s3cr3t\n", encoding="utf-8")

    def launch(*options: str) -> tuple[subprocess.CompletedProcess[str], list[str] | None]:
        command = [sys.executable, str(LAUNCH), f"--api-key-file={key_file}", "--api-header=admin-key"]
        result = subprocess.run(
            [*command, *options, "--", str(server)], capture_output=True, text=True, timeout=30, check=False
        )
        argv = json.loads(argv_file.read_text(encoding="utf-8")) if argv_file.exists() else None
        return result, argv

    return launch


def test_chart_protocols_become_one_http_and_one_grpc_grant(run):
    result, argv = run("--api-protocols=model-repository,logging,shared-memory,trace")
    assert result.returncode == 0, result.stderr
    grant = "model-repository,logging,shared-memory,trace:admin-key=s3cr3t"
    assert argv == [f"--http-restricted-api={grant}", f"--grpc-restricted-protocol={grant}"]


def test_without_a_list_the_four_dangerous_protocols_are_restricted(run):
    _, argv = run()
    assert argv == [
        "--http-restricted-api=model-repository,logging,shared-memory,trace:admin-key=s3cr3t",
        "--grpc-restricted-protocol=model-repository,logging,shared-memory,trace:admin-key=s3cr3t",
    ]


@pytest.mark.parametrize(
    "protocols",
    ["health", "model-repository,health", "", "model-repo"],
    ids=["health", "health-among-others", "empty", "unknown"],
)
def test_health_empty_or_unknown_protocols_are_refused_before_triton_starts(run, protocols):
    result, argv = run(f"--api-protocols={protocols}")
    assert result.returncode != 0 and argv is None
    assert result.stderr.startswith(f"launch: --api-protocols={protocols}: name one or more of metadata")
    assert "'health' stays open for the probes" in result.stderr
