"""Benchmark: serving throughput and latency through the local runtime with perf_analyzer.

A compute-bound MLP (512-2048-2048-2048-16) served by the real Triton through the embedded runtime,
at concurrency 1, 8 and 16, with the model's default config and with dynamic batching; and
onnxruntime called in-process at batch sizes 1, 8 and 16 as the physical reference. Prints a table,
writes bench/results/serving.json and a plot of throughput against p99 (serving.png).

served/raw at concurrency C = the throughput (inferences/s) perf_analyzer measures against the
dynamic-batching config at concurrency C, divided by the throughput of onnxruntime called in-process
on the same model at batch size C (same session defaults as the backend; the mean of a 2 s run
right before and one right after the served runs at C).
It is the share of the model's physical speed that serving keeps: the backend's per-request overhead,
Triton's queueing and HTTP, the load generator sharing the CPU, and the batches the scheduler forms.

served/raw at equal batch divides by onnxruntime at the batch Triton actually executed instead: inference_count / execution_count from
its statistics over the run. One instance at concurrency C executes batches of about C/2 (half the
requests are on their way back while a batch runs), and this MLP reads its 36 MB of weights once per
batch, so its throughput follows the batch: at batch C the figure mixes batch formation in with the
backend's overhead.

`--baseline REV` also serves the dynamic-batching model through the local ONNX Runtime backend
(src/tritonops/triton/backends/onnxruntime/model.py) as it was at git revision REV, on the same
server, measured right before the current backend at each concurrency, so that the JSON's
`backend_overhead` section compares both under the same load. This machine's load average at each
measurement is recorded too: on a shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

from tritonops import errors  # noqa: E402
from tritonops.repository import config_generator  # noqa: E402
from tritonops.runtime import control  # noqa: E402
from tritonops.triton import client as triton_client  # noqa: E402
from tritonops.triton import onnx_models, perf_analyzer  # noqa: E402
from tritonops.triton import server as triton_server  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SIZES = (512, 2048, 2048, 2048, 16)
CONCURRENCY = (1, 8, 16)
TARGET_RATIO = 0.5
BACKEND_FILE = "src/tritonops/triton/backends/onnxruntime/model.py"
BASELINE_BACKEND = "onnxruntime_baseline"
BASELINE_MODEL = "mlp_dynamic_baseline"
# The 2-core machine is shared: wide stability band, a longer window if the first run is unstable.
STABILITY_PERCENTAGE = 50
VARIANTS = {
    "mlp_default": config_generator.GenerateOptions(name="mlp_default", max_batch_size=16, instances=1),
    "mlp_dynamic": config_generator.GenerateOptions(
        name="mlp_dynamic", max_batch_size=16, dynamic_batching=True, instances=1
    ),
}
LABELS = {"mlp_default": "default config", "mlp_dynamic": "dynamic batching", BASELINE_MODEL: "dyn. baseline"}


def build_repository(root: Path, baseline: bool) -> Path:
    model_file = onnx_models.mlp(root / "mlp_default" / "1" / "model.onnx", sizes=SIZES)
    variants = dict(VARIANTS)
    if baseline:
        variants[BASELINE_MODEL] = config_generator.GenerateOptions(
            name=BASELINE_MODEL, max_batch_size=16, dynamic_batching=True, instances=1
        )
    for name, options in variants.items():
        target = root / name / "1" / "model.onnx"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(model_file, target)
        text = config_generator.generate(target, options)
        if name == BASELINE_MODEL:
            text = text.replace('platform: "onnxruntime_onnx"', f'backend: "{BASELINE_BACKEND}"')
        (root / name / "config.pbtxt").write_text(text)
    return model_file


def install_baseline_backend(work_dir: Path, revision: str) -> None:
    """`<work>/backends/onnxruntime_baseline/`: the backend's model.py at `revision`, as a
    Python-based backend next to the current one (up() assembles only its own folders)."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:{BACKEND_FILE}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if source.returncode != 0:
        raise errors.InputError(f"--baseline {revision}: {source.stderr.strip()}")
    folder = work_dir / "backends" / BASELINE_BACKEND
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(source.stdout)
    utils = triton_server.wheel_root() / "backends" / "python" / triton_server.UTILS_NAME
    for link, target in (
        (triton_server.STUB_NAME, triton_server.python_stub()),
        (triton_server.UTILS_NAME, utils),
    ):
        (folder / link).unlink(missing_ok=True)
        (folder / link).symlink_to(target)


def served(address: str, model: str, concurrency: int) -> perf_analyzer.Measurement:
    """One perf_analyzer run; an unstable one is retried once with a window twice as long."""
    run = functools.partial(
        perf_analyzer.perf_analyzer,
        address,
        model,
        concurrency=concurrency,
        shape=f"input:{SIZES[0]}",
        label=LABELS[model],
        stability_percentage=STABILITY_PERCENTAGE,
    )
    try:
        return run()
    except errors.ToolError:
        return run(interval_ms=4000)


def measure(
    address: str, model_file: Path, baseline: bool
) -> tuple[
    list[perf_analyzer.Measurement],
    dict[int, perf_analyzer.Measurement],
    dict[tuple[str, int], float],
    dict[int, dict[str, float]],
]:
    """Per concurrency, back to back: onnxruntime in-process at that batch, the served models, it
    again, and it at the batch the server executed the dynamic-batching model with."""
    rows: list[perf_analyzer.Measurement] = []
    raw: dict[int, perf_analyzer.Measurement] = {}
    load: dict[tuple[str, int], float] = {}
    equal: dict[int, dict[str, float]] = {}
    models = [*VARIANTS, *([BASELINE_MODEL] if baseline else [])]
    with triton_client.Client(address) as client:
        for concurrency in CONCURRENCY:
            first = reference(model_file, concurrency)
            for model in models:
                before = _counts(client, model)
                rows.append(served(address, model, concurrency))
                load[(model, concurrency)] = os.getloadavg()[0]
                if model == "mlp_dynamic":
                    batch = _executed_batch(before, _counts(client, model))
            # Right before and right after the served runs: the machine's load moves between them.
            last = reference(model_file, concurrency)
            raw[concurrency] = perf_analyzer.Measurement(
                first.label,
                concurrency,
                (first.throughput + last.throughput) / 2,
                (first.p50_us + last.p50_us) / 2,
                (first.p99_us + last.p99_us) / 2,
            )
            equal[concurrency] = {
                "executed_batch": batch,
                "raw_at_executed_batch": _raw_at(model_file, batch),
            }
    return rows, raw, load, equal


def _counts(client: triton_client.Client, model: str) -> tuple[int, int]:
    """Items inferred and executions run, over every loaded version of `model`."""
    counts = client.request_counts(model).values()
    return sum(c.inferences for c in counts), sum(c.executions for c in counts)


def _executed_batch(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The batch the scheduler formed on average between two reads of the statistics (the whole
    perf_analyzer run: its warm-up and every window, not only the stable ones it reports)."""
    executions = after[1] - before[1]
    if executions <= 0:
        raise errors.ToolError("Triton's statistics count no execution of mlp_dynamic during its run")
    return (after[0] - before[0]) / executions


def _raw_at(model_file: Path, batch: float) -> float:
    """onnxruntime's throughput at a fractional batch: linear between the two whole batches around
    it, each a 4 s run (twice the batch-C references' 2 s, as those are the mean of two)."""
    low = max(1, int(batch))
    at_low = reference(model_file, low, seconds=4.0).throughput
    if batch <= low:
        return at_low
    at_high = reference(model_file, low + 1, seconds=4.0).throughput
    return at_low + (at_high - at_low) * (batch - low)


def reference(model_file: Path, batch: int, seconds: float = 2.0) -> perf_analyzer.Measurement:
    return perf_analyzer.onnxruntime_reference(model_file, batch=batch, features=SIZES[0], seconds=seconds)


def ratios(
    rows: list[perf_analyzer.Measurement], raw: dict[int, perf_analyzer.Measurement], label: str
) -> dict[str, float]:
    """served/raw per concurrency for the rows with `label` (see the module docstring)."""
    return {
        str(m.concurrency): m.throughput / raw[m.concurrency].throughput for m in rows if m.label == label
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline", metavar="REV", help="also measure the local backend as of this git revision"
    )
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="tritonops-bench-serving-"))
    work_dir = scratch / "work"
    baseline = args.baseline is not None
    load_before = os.getloadavg()
    try:
        model_file = build_repository(scratch / "models", baseline)
        if baseline:
            install_baseline_backend(work_dir, args.baseline)
        loads = "{" + ",".join([*VARIANTS, *([BASELINE_MODEL] if baseline else [])]) + "}"
        current = control.up(
            "local",
            work_dir=work_dir,
            repository=scratch / "models",
            port_offset=int(os.environ.get("TRITONOPS_PORT_OFFSET", "31000")),
            set_values=(
                f"server.loadModels={loads}",
                # No committed state, so no agent: the chart refuses an agent without one.
                "server.committedState.enabled=false",
                "agent.enabled=false",
            ),
        )
        if not current.all_ready:
            print(control.logs(work_dir, None, 30))
            return 1
        address = current.replicas[0].url.removeprefix("http://")
        rows, raw, load, equal = measure(address, model_file, baseline)
    finally:
        control.down(work_dir)
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"MLP {'-'.join(map(str, SIZES))}, local runtime (1 replica, CPU, {os.cpu_count()} cores), perf_analyzer over HTTP"
    )
    print(f"load average (1/5/15 min) at the start: {' '.join(f'{x:.2f}' for x in load_before)}")
    print(f"{'config':<18}{'conc':>5}{'infer/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'served/raw':>12}{'load':>7}")
    by_label = {m.label: next(k for k, v in LABELS.items() if v == m.label) for m in rows}
    for m in rows:
        ratio = m.throughput / raw[m.concurrency].throughput
        print(
            f"{m.label:<18}{m.concurrency:>5}{m.throughput:>11.1f}{m.p50_us / 1000:>9.2f}{m.p99_us / 1000:>9.2f}{ratio:>12.2f}{load[(by_label[m.label], m.concurrency)]:>7.2f}"
        )
    for concurrency, m in raw.items():
        print(
            f"{'onnxruntime batch':<18}{concurrency:>5}{m.throughput:>11.1f}{m.p50_us / 1000:>9.2f}{m.p99_us / 1000:>9.2f}{1.0:>12.2f}"
        )
    served_over_raw = ratios(rows, raw, LABELS["mlp_dynamic"])
    print(
        "served/raw (dynamic batching at concurrency C / onnxruntime in-process at batch C): "
        + ", ".join(f"c={c} {r:.2f}" for c, r in served_over_raw.items())
        + f" (target >= {TARGET_RATIO} at c=16)"
    )
    at_equal_batch = {
        str(m.concurrency): m.throughput / equal[m.concurrency]["raw_at_executed_batch"]
        for m in rows
        if m.label == LABELS["mlp_dynamic"]
    }
    print(
        "served/raw at equal batch (dynamic batching at concurrency C / onnxruntime in-process at the "
        "batch Triton executed, inference_count/execution_count): "
        + ", ".join(
            f"c={c} {r:.2f} (batch {equal[int(c)]['executed_batch']:.1f})" for c, r in at_equal_batch.items()
        )
        + f" (target >= {TARGET_RATIO} at c=16)"
    )
    document: dict[str, Any] = {
        "benchmark": "serving",
        "model": "mlp " + "-".join(map(str, SIZES)),
        "cpus": os.cpu_count(),
        "load_average_at_start": list(load_before),
        "served": [
            {
                **perf_analyzer.as_dict(m),
                "served_over_raw": m.throughput / raw[m.concurrency].throughput,
                "load_average_1m": load[(by_label[m.label], m.concurrency)],
            }
            for m in rows
        ],
        "onnxruntime_in_process": [perf_analyzer.as_dict(m) for m in raw.values()],
        "served_over_raw": {
            "definition": "dynamic-batching throughput at concurrency C / onnxruntime in-process throughput at batch C",
            "by_concurrency": served_over_raw,
            "target_at_16": TARGET_RATIO,
        },
        "served_over_raw_at_equal_batch": {
            "definition": (
                "dynamic-batching throughput at concurrency C / onnxruntime in-process throughput at the "
                "batch Triton executed (inference_count / execution_count over the run; linear between "
                "the whole batches around it)"
            ),
            "by_concurrency": at_equal_batch,
            "executed_batch": {str(c): e["executed_batch"] for c, e in equal.items()},
            "raw_at_executed_batch": {str(c): e["raw_at_executed_batch"] for c, e in equal.items()},
            "target_at_16": TARGET_RATIO,
        },
    }
    if baseline:
        before = ratios(rows, raw, LABELS[BASELINE_MODEL])
        print(
            f"backend at {args.baseline} (before) served/raw: "
            + ", ".join(f"c={c} {r:.2f}" for c, r in before.items())
        )
        document["backend_overhead"] = {
            "baseline_revision": args.baseline,
            "note": f"both backends on one server, measured back to back on this {os.cpu_count()}-core shared machine",
            "before": {"served_over_raw": before, "throughput": _throughputs(rows, LABELS[BASELINE_MODEL])},
            "after": {
                "served_over_raw": served_over_raw,
                "throughput": _throughputs(rows, LABELS["mlp_dynamic"]),
            },
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(document, indent=2) + "\n")
    _plot(rows, raw, RESULTS / "serving.png")
    print(f"figures in {RESULTS / 'serving.json'} and {RESULTS / 'serving.png'}")
    return 0


def _throughputs(rows: list[perf_analyzer.Measurement], label: str) -> dict[str, float]:
    return {str(m.concurrency): m.throughput for m in rows if m.label == label}


def _plot(rows, raw, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label in sorted({m.label for m in rows}):
        points = [m for m in rows if m.label == label]
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
    try:
        sys.exit(main())
    except errors.TritonOpsError as error:  # a bad --baseline, perf_analyzer missing or unstable
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
