"""Benchmark: `repo validate` on a generated repository of 50 ONNX models (target: under 5 s).

Prints the figures and writes them to bench/results/validate.json.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tritonops.repository import config_generator, validator  # noqa: E402
from tritonops.triton import onnx_models  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "validate.json"
MODELS = 50
TARGET_SECONDS = 5.0
BUILDERS = list(onnx_models.BUILDERS.values())


def build_repository(root: Path) -> None:
    for index in range(MODELS):
        name = f"model_{index:02d}"
        builder = BUILDERS[index % len(BUILDERS)]
        for version in (1, 2):
            model_file = builder(root / name / str(version) / "model.onnx")
        options = config_generator.GenerateOptions(max_batch_size=8, dynamic_batching=True, instances=1)
        (root / name / "config.pbtxt").write_text(config_generator.generate(model_file, options))


def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="tritonops-bench-validate-"))
    try:
        build_repository(scratch)
        in_process = []
        for _ in range(5):
            start = time.perf_counter()
            report = validator.validate(scratch)
            in_process.append(time.perf_counter() - start)
            assert report.passed and len(report.models) == MODELS, [str(f) for f in report.findings[:5]]
        cold = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "tritonops.cli", "repo", "validate", str(scratch)],
                check=True,
                capture_output=True,
            )
            cold.append(time.perf_counter() - start)
    finally:
        shutil.rmtree(scratch)
    result = {
        "benchmark": "validate",
        "models": MODELS,
        "versions_per_model": 2,
        "machine": {"cpus": os.cpu_count()},
        "target_s": TARGET_SECONDS,
        "in_process_s": in_process,
        "cold_cli_s": cold,
        "median_in_process_s": statistics.median(in_process),
        "median_cold_cli_s": statistics.median(cold),
        "meets_target": max(cold) < TARGET_SECONDS,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"repo validate, {MODELS} models x 2 versions (target < {TARGET_SECONDS:.0f} s):")
    print(f"  in process, median of 5  {result['median_in_process_s']:.2f} s")
    print(f"  cold CLI, median of 3    {result['median_cold_cli_s']:.2f} s (worst {max(cold):.2f} s)")
    print(f"{'meets' if result['meets_target'] else 'MISSES'} the target; figures in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
