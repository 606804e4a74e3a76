"""`tritonops demo` (what `make demo` runs): the chart's `local` render run on the real Triton, end to end, left running.

Render `local`, start the runtime, load the second sample model through the restricted repository
API, check readiness, run smoke inferences checked against onnxruntime in-process, show that the
`/metrics` counters moved, and print where to go next.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from tritonops import errors
from tritonops.runtime import control, workspace
from tritonops.triton import client as triton_client

SMOKE_INPUTS = {
    "linear": np.array([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0]], dtype=np.float32),
    "mlp": np.linspace(-1.0, 1.0, 16, dtype=np.float32).reshape(2, 8),
}


def run(work_dir: Path, *, say: Callable[[str], None], port_offset: int = 0) -> int:
    """The demo on the rendered ports + `port_offset`; on any failure the runtime is stopped so
    nothing is left behind."""
    try:
        return _run(work_dir, say, port_offset)
    except BaseException:
        control.down(work_dir)
        raise


def _run(work_dir: Path, say: Callable[[str], None], port_offset: int) -> int:
    started = time.monotonic()
    say("1/5 rendering the chart for `local` and starting the runtime (the rendered pod, real tritonserver)")
    current = control.up(
        "local", work_dir=work_dir, port_offset=port_offset, progress=lambda line: say(f"    {line}")
    )
    if current.failed:
        raise errors.ServerError(control.failure_text(current.failed[0], work_dir))
    replica = current.replicas[0]
    address = replica.url.removeprefix("http://")
    metrics_url = replica.metrics_url
    say(f"    serving on HTTP {replica.url}, gRPC {replica.grpc_address}, metrics {metrics_url}")
    if current.api_key_file:
        say(f"    the repository API's key: {current.api_key_file} (header {current.api_header})")
    repository = Path(workspace.Workspace(current.work_dir).read_plan()["repository"])
    with triton_client.Client(address, api_header=current.api_header, api_key=current.api_key()) as client:
        say(f"2/5 loading `mlp` through the repository API (header {current.api_header})")
        _check_restricted(address)
        client.load("mlp")
        say(f"    /v2/models/mlp/ready: {'200 ready' if client.model_ready('mlp') else 'NOT ready'}")
        before = triton_client.scrape_metrics(metrics_url)
        say("3/5 smoke inferences, checked against onnxruntime in-process")
        for model, batch in SMOKE_INPUTS.items():
            got = client.infer(model, {"input": batch})["output"]
            want = _reference(repository / model / "1" / "model.onnx", batch)
            verdict = "matches" if np.allclose(got, want, rtol=1e-5, atol=1e-6) else "DIFFERS from"
            say(f"    {model}: output {np.round(got.astype(float), 4).tolist()} {verdict} onnxruntime")
            if verdict != "matches":
                raise errors.TritonRequestError(f"{model}: Triton's answer differs from onnxruntime's")
        _wait_for_metrics_refresh()
        after = triton_client.scrape_metrics(metrics_url)
    say("4/5 /metrics moved:")
    for model in SMOKE_INPUTS:
        for counter in ("nv_inference_request_success", "nv_inference_count", "nv_inference_exec_count"):
            old = triton_client.metric_total(before, counter, model=model)
            new = triton_client.metric_total(after, counter, model=model)
            say(f"    {counter}{{model={model}}}: {old:g} -> {new:g}")
    say(f"5/5 done in {time.monotonic() - started:.1f} s. The server keeps running; try:")
    say(f"    curl {replica.url}/v2/health/ready")
    say(f"    curl {replica.url}/v2/models/linear")
    say(f"    curl -s {metrics_url} | grep nv_inference_request_success")
    width = max(len(workspace.command_hint(name, work_dir)) for name in ("status", "logs 0", "down"))
    for name, what in (
        ("status", "each replica's state"),
        ("logs 0", "the server's log"),
        ("down", "stop it"),
    ):
        say(f"    {workspace.command_hint(name, work_dir):<{width}}   # {what}")
    return 0


def _check_restricted(address: str) -> None:
    """The repository API must refuse a caller without the header (the chart's restricted API)."""
    with triton_client.Client(address) as anonymous:
        try:
            anonymous.load("mlp")
        except errors.RepositoryApiForbidden:
            return
    raise errors.PermanentError("the repository API accepted a load without the key: it must be restricted")


def _reference(model_file: Path, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"input": batch})[0])


def _wait_for_metrics_refresh() -> None:
    # Triton refreshes its metrics every --metrics-interval-ms (2 s by default).
    time.sleep(2.2)
