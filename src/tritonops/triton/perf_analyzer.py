"""Load generation: Triton's own perf_analyzer (installed by the bootstrap from tritonclient 2.41's
wheel) against a Triton endpoint, for the benchmarks and `tritonops tune`, and onnxruntime
in-process as the physical reference for the same model and batch sizes.

`TRITONOPS_PERF_ANALYZER` names another perf_analyzer binary (one installed elsewhere)."""

from __future__ import annotations

import csv
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
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
BINARY_ENV = "TRITONOPS_PERF_ANALYZER"
# Two cores shared by client and server: a 25 % stability band instead of perf_analyzer's 10 %.
DEFAULT_STABILITY_PERCENTAGE = 25


@dataclass(frozen=True)
class Measurement:
    """Throughput (items per second) and latency percentiles (microseconds)."""

    label: str
    concurrency: int
    throughput: float
    p50_us: float
    p99_us: float


def perf_analyzer_binary() -> Path:
    """The perf_analyzer to run: $TRITONOPS_PERF_ANALYZER, else the one the bootstrap installed."""
    given = os.environ.get(BINARY_ENV, "").strip()
    binary = Path(given) if given else PERF_ANALYZER
    if not binary.is_file() or not os.access(binary, os.X_OK):
        where = f"${BINARY_ENV}={given}" if given else str(binary)
        raise errors.ToolError(
            f"{where}: perf_analyzer is not installed there; run `make setup` (it installs it from "
            f"tritonclient 2.41's wheel) or point ${BINARY_ENV} at a perf_analyzer binary"
        )
    return binary


def perf_analyzer_env() -> dict[str, str]:
    """perf_analyzer links libcudart.so.12, which the nvidia-cuda-runtime-cu12 wheel ships."""
    try:
        import nvidia.cuda_runtime
    except ImportError as error:
        raise errors.ToolError(
            f"perf_analyzer needs libcudart.so.12 from the nvidia-cuda-runtime-cu12 package ({error}); "
            "run `make setup`"
        ) from error

    library = Path(next(iter(nvidia.cuda_runtime.__path__))) / "lib"
    existing = os.environ.get("LD_LIBRARY_PATH", "")
    return {**os.environ, "LD_LIBRARY_PATH": f"{library}:{existing}" if existing else str(library)}


def perf_analyzer(
    address: str,
    model: str,
    *,
    concurrency: int,
    shape: str | Sequence[str] | None = None,
    label: str,
    interval_ms: int = 2000,
    stability_percentage: int = DEFAULT_STABILITY_PERCENTAGE,
    max_trials: int | None = None,
    percentile: int | None = None,
) -> Measurement:
    """One perf_analyzer run at a fixed concurrency over HTTP: stable windows, p50 and p99.

    `percentile` (99 for `tune`) makes that latency percentile the one the windows must agree on,
    instead of the average; `max_trials` bounds the windows it may take to get there. A run that
    does not get stable windows is a ToolError that says so."""
    with tempfile.TemporaryDirectory(prefix="tritonops-perf-") as scratch:
        report = Path(scratch) / "report.csv"
        command = [
            str(perf_analyzer_binary()),
            *perf_analyzer_args(
                address,
                model,
                concurrency=concurrency,
                shape=shape,
                interval_ms=interval_ms,
                stability_percentage=stability_percentage,
                max_trials=max_trials,
                percentile=percentile,
            ),
            "-f", str(report),
        ]  # fmt: skip
        trials = max_trials or 10  # perf_analyzer's default
        # Every window it may take, twice over, plus its start: a hung run must not hang the caller.
        timeout_s = 60 + 2 * trials * interval_ms / 1000
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env=perf_analyzer_env(),
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise errors.ToolError(f"perf_analyzer did not finish within {timeout_s:g} s") from None
        if result.returncode != 0 or not report.exists():
            output = (result.stdout + result.stderr).strip()
            if "Failed to obtain stable measurement" in output:
                raise errors.ToolError(
                    f"perf_analyzer: no stable measurement within {trials} windows of {interval_ms} ms "
                    f"at concurrency {concurrency} (the {_stability_subject(percentile)} varied by more "
                    f"than {stability_percentage} %); a longer window or a quieter machine helps"
                )
            raise errors.ToolError(f"perf_analyzer failed (exit {result.returncode}): {output[-800:]}")
        with report.open(encoding="utf-8") as handle:
            row = next(csv.DictReader(handle))
    return Measurement(
        label,
        concurrency,
        float(row["Inferences/Second"]),
        float(row["p50 latency"]),
        float(row["p99 latency"]),
    )


def perf_analyzer_args(
    address: str,
    model: str,
    *,
    concurrency: int,
    shape: str | Sequence[str] | None = None,
    interval_ms: int = 2000,
    stability_percentage: int = DEFAULT_STABILITY_PERCENTAGE,
    max_trials: int | None = None,
    percentile: int | None = None,
) -> list[str]:
    """perf_analyzer's arguments for one run (without the binary and the report file)."""
    args = [
        "-m", model,
        "-u", address,
        "-i", "http",
        "--concurrency-range", str(concurrency),
        "--measurement-interval", str(interval_ms),
        "--stability-percentage", str(stability_percentage),
    ]  # fmt: skip
    for each in [shape] if isinstance(shape, str) else shape or ():
        args += ["--shape", each]
    if max_trials is not None:
        args += ["--max-trials", str(max_trials)]
    if percentile is not None:
        args += ["--percentile", str(percentile)]
    return args


def _stability_subject(percentile: int | None) -> str:
    return f"p{percentile} latency or throughput" if percentile else "average latency or throughput"


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
