"""Load generation for the benchmarks: Triton's own perf_analyzer (installed by the bootstrap from
tritonclient 2.41's wheel) against a local replica, and onnxruntime in-process as the physical
reference for the same model and batch sizes."""

from __future__ import annotations

import csv
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from tritonops import errors

PERF_ANALYZER = (
    Path(os.environ.get("VIRTUAL_ENV", Path(__file__).resolve().parents[3] / ".venv"))
    / "libexec"
    / "perf_analyzer"
)


@dataclass(frozen=True)
class Measurement:
    """Throughput (items per second) and latency percentiles (microseconds)."""

    label: str
    concurrency: int
    throughput: float
    p50_us: float
    p99_us: float


def perf_analyzer_binary() -> Path:
    if not PERF_ANALYZER.exists():
        raise errors.ToolError(f"{PERF_ANALYZER}: perf_analyzer is not installed; run `make setup`")
    return PERF_ANALYZER


def perf_analyzer_env() -> dict[str, str]:
    """perf_analyzer links libcudart.so.12, which the nvidia-cuda-runtime-cu12 wheel ships."""
    import nvidia.cuda_runtime

    library = Path(next(iter(nvidia.cuda_runtime.__path__))) / "lib"
    existing = os.environ.get("LD_LIBRARY_PATH", "")
    return {**os.environ, "LD_LIBRARY_PATH": f"{library}:{existing}" if existing else str(library)}


def perf_analyzer(
    address: str, model: str, *, concurrency: int, shape: str, label: str, interval_ms: int = 2000
) -> Measurement:
    """One perf_analyzer run at a fixed concurrency over HTTP; stable windows, p50 and p99."""
    with tempfile.TemporaryDirectory(prefix="tritonops-perf-") as scratch:
        report = Path(scratch) / "report.csv"
        command = [
            str(perf_analyzer_binary()),
            "-m", model,
            "-u", address,
            "-i", "http",
            "--concurrency-range", str(concurrency),
            "--shape", shape,
            "--measurement-interval", str(interval_ms),
            # Two cores shared by client and server: a 25 % stability band instead of 10 %.
            "--stability-percentage", "25",
            "-f", str(report),
        ]  # fmt: skip
        result = subprocess.run(
            command, capture_output=True, text=True, env=perf_analyzer_env(), timeout=300, check=False
        )
        if result.returncode != 0 or not report.exists():
            raise errors.ToolError(
                f"perf_analyzer failed (exit {result.returncode}): {(result.stdout + result.stderr)[-800:]}"
            )
        row = next(csv.DictReader(report.open()))
    return Measurement(
        label,
        concurrency,
        float(row["Inferences/Second"]),
        float(row["p50 latency"]),
        float(row["p99 latency"]),
    )


def onnxruntime_reference(
    model_file: Path, *, batch: int, features: int, seconds: float = 2.0
) -> Measurement:
    """The same model called directly in-process at one batch size: items per second and latency."""
    options = onnxruntime.SessionOptions()
    session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    feed = {name: np.random.default_rng(0).standard_normal((batch, features)).astype(np.float32)}
    session.run(None, feed)  # warm up
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        session.run(None, feed)
        latencies.append((time.perf_counter() - start) * 1e6)
    total_s = sum(latencies) / 1e6
    return Measurement(
        "onnxruntime in-process",
        batch,
        throughput=len(latencies) * batch / total_s,
        p50_us=float(np.percentile(latencies, 50)),
        p99_us=float(np.percentile(latencies, 99)),
    )


def as_dict(measurement: Measurement) -> dict[str, Any]:
    return {
        "label": measurement.label,
        "concurrency": measurement.concurrency,
        "throughput": measurement.throughput,
        "p50_us": measurement.p50_us,
        "p99_us": measurement.p99_us,
    }
