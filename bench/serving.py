"""Benchmark: serving throughput and latency through the local runtime with perf_analyzer.

A compute-bound MLP (512-2048-2048-2048-16) served by the real Triton through the embedded runtime,
at concurrency 1, 8 and 16, with the model's default config and with dynamic batching; and
onnxruntime called in-process at batch sizes 1, 8 and 16 as the physical reference. Prints a table,
writes bench/results/serving.json and a plot of throughput against p99 (serving.png).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from tritonops.repository import config_generator  # noqa: E402
from tritonops.runtime import control  # noqa: E402
from tritonops.triton import onnx_models, perf_analyzer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SIZES = (512, 2048, 2048, 2048, 16)
CONCURRENCY = (1, 8, 16)
VARIANTS = {
    "mlp_default": config_generator.GenerateOptions(name="mlp_default", max_batch_size=16, instances=1),
    "mlp_dynamic": config_generator.GenerateOptions(
        name="mlp_dynamic", max_batch_size=16, dynamic_batching=True, instances=1
    ),
}


def build_repository(root: Path) -> Path:
    model_file = onnx_models.mlp(root / "mlp_default" / "1" / "model.onnx", sizes=SIZES)
    for name, options in VARIANTS.items():
        target = root / name / "1" / "model.onnx"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(model_file, target)
        (root / name / "config.pbtxt").write_text(config_generator.generate(target, options))
    return model_file


def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="tritonops-bench-serving-"))
    work_dir = scratch / "work"
    try:
        model_file = build_repository(scratch / "models")
        loads = "{" + ",".join(VARIANTS) + "}"
        current = control.up(
            "local",
            work_dir=work_dir,
            repository=scratch / "models",
            port_offset=int(os.environ.get("TRITONOPS_PORT_OFFSET", "31000")),
            set_values=(f"server.loadModels={loads}", "server.committedState.enabled=false"),
        )
        if not current.all_ready:
            print(control.logs(work_dir, None, 30))
            return 1
        address = current.replicas[0].url.removeprefix("http://")
        served = []
        for name in VARIANTS:
            label = "dynamic batching" if name.endswith("dynamic") else "default config"
            for concurrency in CONCURRENCY:
                served.append(
                    perf_analyzer.perf_analyzer(
                        address, name, concurrency=concurrency, shape=f"input:{SIZES[0]}", label=label
                    )
                )
        raw = {
            c: perf_analyzer.onnxruntime_reference(model_file, batch=c, features=SIZES[0])
            for c in CONCURRENCY
        }
    finally:
        control.down(work_dir)
        shutil.rmtree(scratch, ignore_errors=True)
    rows = [(m, m.throughput / raw[m.concurrency].throughput) for m in served]
    print(
        f"MLP {'-'.join(map(str, SIZES))}, local runtime (1 replica, CPU, {os.cpu_count()} cores), perf_analyzer over HTTP"
    )
    print(f"{'config':<18}{'conc':>5}{'infer/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'served/raw':>12}")
    for measurement, ratio in rows:
        print(
            f"{measurement.label:<18}{measurement.concurrency:>5}{measurement.throughput:>11.1f}{measurement.p50_us / 1000:>9.2f}{measurement.p99_us / 1000:>9.2f}{ratio:>12.2f}"
        )
    for concurrency, measurement in raw.items():
        print(
            f"{'onnxruntime batch':<18}{concurrency:>5}{measurement.throughput:>11.1f}{measurement.p50_us / 1000:>9.2f}{measurement.p99_us / 1000:>9.2f}{1.0:>12.2f}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "serving",
        "model": "mlp " + "-".join(map(str, SIZES)),
        "cpus": os.cpu_count(),
        "served": [{**perf_analyzer.as_dict(m), "served_over_raw": ratio} for m, ratio in rows],
        "onnxruntime_in_process": [perf_analyzer.as_dict(m) for m in raw.values()],
    }
    (RESULTS / "serving.json").write_text(json.dumps(document, indent=2) + "\n")
    _plot(rows, raw, RESULTS / "serving.png")
    print(f"figures in {RESULTS / 'serving.json'} and {RESULTS / 'serving.png'}")
    return 0


def _plot(rows, raw, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label in ("default config", "dynamic batching"):
        points = [m for m, _ in rows if m.label == label]
        axes.plot(
            [m.p99_us / 1000 for m in points],
            [m.throughput for m in points],
            marker="o",
            label=f"Triton, {label}",
        )
        for m in points:
            axes.annotate(
                f"c={m.concurrency}",
                (m.p99_us / 1000, m.throughput),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
    axes.plot(
        [m.p99_us / 1000 for m in raw.values()],
        [m.throughput for m in raw.values()],
        marker="s",
        linestyle="--",
        label="onnxruntime in-process (batch = c)",
    )
    axes.set_xlabel("p99 latency (ms)")
    axes.set_ylabel("throughput (inferences/s)")
    axes.set_title("MLP 512-2048-2048-2048-16 on the local runtime")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(target, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
