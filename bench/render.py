"""Benchmark: render + every static gate except checkov, for all environments; and checkov alone.

Target (issue 2): the first under 3 s on the 2-core CI machine. Prints the figures and writes
them to bench/results/render.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tritonops.chart import environments, gates, render

RESULTS = Path(__file__).resolve().parent / "results" / "render.json"
TARGET_SECONDS = 3.0
ENVIRONMENTS = list(environments.ENVIRONMENTS)


def _time(function, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return samples


def _cold_cli() -> None:
    command = [sys.executable, "-m", "tritonops.cli", "lint", "--no-policy"]
    subprocess.run(command, check=True, capture_output=True)


def main() -> int:
    def gates_without_policy() -> None:
        report = gates.run_gates(ENVIRONMENTS, policy=False)
        assert report.passed, report.findings

    renderings = [render.render(name) for name in ENVIRONMENTS]

    def checkov_alone() -> None:
        findings, _, _ = gates.checkov(renderings)
        assert not findings, findings

    figures = {
        "environments": ENVIRONMENTS,
        "gates_without_checkov_in_process_s": _time(gates_without_policy, 5),
        "gates_without_checkov_cold_cli_s": _time(_cold_cli, 3),
        "checkov_alone_s": _time(checkov_alone, 3),
    }
    summary = {key: statistics.median(values) for key, values in figures.items() if key.endswith("_s")}
    worst = max(figures["gates_without_checkov_cold_cli_s"])
    result = {
        "benchmark": "render",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "target_s": TARGET_SECONDS,
        "median_s": summary,
        "samples_s": {k: v for k, v in figures.items() if k.endswith("_s")},
        "meets_target": worst < TARGET_SECONDS,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"render + gates except checkov, {len(ENVIRONMENTS)} environments (target < {TARGET_SECONDS:.0f} s):"
    )
    print(f"  in process, median of 5   {summary['gates_without_checkov_in_process_s']:.2f} s")
    print(
        f"  cold CLI, median of 3     {summary['gates_without_checkov_cold_cli_s']:.2f} s (worst {worst:.2f} s)"
    )
    print(f"checkov alone, median of 3  {summary['checkov_alone_s']:.2f} s")
    print(f"{'meets' if result['meets_target'] else 'MISSES'} the target; figures in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
