"""Benchmark: the embedded runtime's start and stop (target: `up` to all replicas Ready under 15 s
for the sample repository). Prints the figures and writes bench/results/runtime.json."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tritonops.runtime import control

RESULTS = Path(__file__).resolve().parent / "results" / "runtime.json"
TARGET_SECONDS = 15.0
RUNS = 3


def measure(replicas: int) -> tuple[list[float], list[float]]:
    ups, downs = [], []
    for run in range(RUNS):
        work_dir = Path(tempfile.mkdtemp(prefix="tritonops-bench-runtime-")) / "work"
        try:
            start = time.perf_counter()
            current = control.up("local", work_dir=work_dir, replicas=replicas, port_offset=32000 + 100 * run)
            ups.append(time.perf_counter() - start)
            assert current.all_ready, control.describe(current)
            start = time.perf_counter()
            control.down(work_dir)
            downs.append(time.perf_counter() - start)
        finally:
            control.down(work_dir)
            shutil.rmtree(work_dir.parent, ignore_errors=True)
    return ups, downs


def main() -> int:
    result: dict[str, object] = {"benchmark": "runtime", "target_s": TARGET_SECONDS, "cpus": os.cpu_count()}
    print(
        f"local runtime on the sample repository (target: up to all Ready < {TARGET_SECONDS:.0f} s), {RUNS} runs each"
    )
    for replicas in (1, 2):
        ups, downs = measure(replicas)
        result[f"replicas_{replicas}"] = {
            "up_s": ups,
            "down_s": downs,
            "median_up_s": statistics.median(ups),
            "median_down_s": statistics.median(downs),
        }
        print(
            f"  {replicas} replica(s): up median {statistics.median(ups):.2f} s (worst {max(ups):.2f}), down median {statistics.median(downs):.2f} s"
        )
        result["meets_target"] = result.get("meets_target", True) and max(ups) < TARGET_SECONDS
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'meets' if result['meets_target'] else 'MISSES'} the target; figures in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
