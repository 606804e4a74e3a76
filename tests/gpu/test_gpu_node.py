"""`make test-gpu`: the prod render's Triton container on a real NVIDIA GPU.

The prepared bundle (tests/gpu/bundle.py: values/base.yaml + values/prod.yaml, planned the way
`tritonops up` plans a pod) starts as the pod would: the launcher verifies the committed model and
adds the restricted-API flags with the rendered key, the wheel's Triton 2.51 serves with the prod
metric arguments, the startup probe and then the rendered readiness script pass. A Python-backend
model runs torch on the GPU (tensors moved with DLPack) and answers correctly, naming the CUDA
device it computed on; /metrics carries nv_gpu_* series at idle and under load; the GPU-memory
alert and the GPU dashboard panels evaluate on those series (tests/observability/gpu_series, the
functions the normal suite replays the committed captures with).

Evidence goes to $TRITONOPS_GPU_EVIDENCE (default tests/resources/gpu/): gpu-node-metrics-idle.txt,
gpu-node-metrics-busy.txt, gpu-node-verdicts.json and gpu-node-triton.log. Where no NVIDIA GPU is
visible the module is one skip with the reason. Standard library, PyYAML, prometheus_client and the
torch Python only: it runs where the project's package cannot be imported.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.gpu import node
from tests.observability import gpu_series

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = Path(os.environ.get("TRITONOPS_GPU_BUNDLE") or ROOT / ".gpu-bundle")
EVIDENCE = Path(os.environ.get("TRITONOPS_GPU_EVIDENCE") or gpu_series.CAPTURES)
# The interpreter with torch: it runs the launcher and readiness script (python3 in the pod) and the
# model's stub takes its prefix and site-packages.
PYTHON = os.environ.get("TRITONOPS_GPU_PYTHON") or sys.executable
PREFIX = "gpu-node"
MODEL = "torch_gpu"
MODEL_FILE = Path(__file__).parent / "models" / MODEL / "1" / "model.py"
CLIENTS = 8
BUSY_S = 12.0
METRICS_LIMIT_S = 30.0


def _skip_reason() -> str | None:
    reason = node.no_gpu_reason()
    if reason is None and not (BUNDLE / "plan.json").is_file():
        reason = (
            f"no GPU bundle at {BUNDLE}: `scripts/test-gpu.sh` prepares one (`scripts/test-gpu.sh prepare` "
            "where the project's venv is, for a GPU machine without it)"
        )
    return reason


REASON = _skip_reason()
if REASON is not None:
    pytest.skip(REASON, allow_module_level=True)
FACTS = node.python_facts(PYTHON)
if not FACTS.get("cuda"):
    pytest.skip(
        f"torch with CUDA is not available to {PYTHON} (torch {FACTS.get('torch')}; {FACTS.get('error', 'no CUDA device')}); "
        "set TRITONOPS_GPU_PYTHON to an interpreter that has it",
        allow_module_level=True,
    )

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def verdicts(request):
    """What the run found; written as gpu-node-verdicts.json when the module ends, pass or fail."""
    found: dict[str, Any] = {
        "started": _now(),
        "gpus": node.gpus(),
        "python": {key: FACTS.get(key) for key in ("version", "torch", "cuda_version")},
        "bundle": json.loads((BUNDLE / "bundle.json").read_text(encoding="utf-8")),
        "command": json.loads((BUNDLE / "plan.json").read_text(encoding="utf-8"))["command"],
        "checks": {},
    }
    yield found
    tests = [item.name for item in request.session.items if item.path == request.path]
    found["checks"] = {name: found["checks"].get(name, "failed or not run") for name in tests}
    found["finished"] = _now()
    EVIDENCE.mkdir(parents=True, exist_ok=True)
    (EVIDENCE / f"{PREFIX}-verdicts.json").write_text(json.dumps(found, indent=2) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gpu-node")


@pytest.fixture(scope="module")
def gpu_node(work, verdicts):
    tokens = {**node.unpack(BUNDLE, work, FACTS["version"]), node.TOKENS["python"]: PYTHON}
    plan = node.fill(json.loads((BUNDLE / "plan.json").read_text(encoding="utf-8")), tokens)
    verdicts["started_command"] = node.command(plan)
    try:
        started = node.start(plan, FACTS, work)  # stops what it started when it fails
        yield started
        started.stop()
    finally:
        if (work / node.LOG).is_file():
            EVIDENCE.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(work / node.LOG, EVIDENCE / f"{PREFIX}-triton.log")


@pytest.fixture(scope="module")
def captured() -> dict[str, str]:
    """The /metrics pages test_triton_exports_gpu_metrics_at_idle_and_under_load scraped."""
    return {}


def test_the_prod_command_starts_on_the_gpu_and_its_readiness_script_passes(gpu_node, verdicts, request):
    words = gpu_node.plan["command"]
    launcher = next(n for n, word in enumerate(words) if word.endswith("/launch.py"))
    server = words.index("--") + 1
    assert launcher < server and words[server].endswith("/bin/tritonserver")
    assert "--allow-gpu-metrics=true" in words and "--allow-metrics=true" in words
    assert gpu_node.plan["readiness"]["command"][1].endswith("/ready.py")
    log = gpu_node.log()
    # The launcher checked the committed model's files before it started Triton.
    assert f"launch: committed model {MODEL} version 1: files match sha256:" in log, log[-3000:]
    status, body = node.get(f"{gpu_node.http}/v2")
    assert status == 200
    verdicts["triton"] = json.loads(body)["version"]
    verdicts["readiness"] = gpu_node.readiness_output
    verdicts["checks"][request.node.name] = "passed"


def test_the_repository_api_needs_the_rendered_key(gpu_node, verdicts, request):
    header = gpu_node.option("api-header")
    key = Path(gpu_node.option("api-key-file")).read_text(encoding="utf-8").strip()
    index = f"{gpu_node.http}/v2/repository/index"
    assert node.request("POST", index, {})[0] == 403
    assert node.request("POST", index, {}, {header: "not-the-key"})[0] == 403
    status, body = node.request("POST", index, {}, {header: key})
    assert status == 200
    assert {"name": MODEL, "version": "1", "state": "READY"}.items() <= json.loads(body)[0].items()
    verdicts["checks"][request.node.name] = "passed"


def test_torch_computes_the_model_on_the_gpu(gpu_node, verdicts, request):
    rows = [[1.0, 2.0, 3.0, 4.0], [-1.5, 0.5, 0.0, 2.0]]
    outputs = node.infer(gpu_node, MODEL, rows)
    assert outputs["OUTPUT0"]["shape"] == [2, 4]
    assert outputs["OUTPUT0"]["data"] == pytest.approx([v for row in _expected(rows) for v in row], abs=1e-5)
    device = outputs["COMPUTED_ON"]
    width = device["shape"][1]
    names = {bytes(device["data"][n * width : (n + 1) * width]).decode() for n in range(device["shape"][0])}
    (computed_on,) = names
    where, name = computed_on.split("|", 1)
    assert where.startswith("cuda:"), computed_on
    assert name in {gpu["name"] for gpu in node.gpus()}, (name, node.gpus())
    verdicts["computed_on"] = computed_on
    verdicts["checks"][request.node.name] = "passed"


def test_triton_exports_gpu_metrics_at_idle_and_under_load(gpu_node, verdicts, captured, request):
    captured["idle"] = _scrape_until_gpu_series(gpu_node)
    stop = threading.Event()
    errors: list[str] = []
    done = [0] * CLIENTS

    def client(n: int) -> None:
        rows = [[float(n), 1.0, -1.0, 0.5]]
        while not stop.is_set():
            try:
                got = node.infer(gpu_node, MODEL, rows)["OUTPUT0"]["data"]
                assert got == pytest.approx(_expected(rows)[0], abs=1e-5), got
                done[n] += 1
            except Exception as error:
                errors.append(repr(error))
                return

    with ThreadPoolExecutor(CLIENTS) as pool:
        for n in range(CLIENTS):
            pool.submit(client, n)
        try:
            # Scraped while the load runs, after several metrics intervals (2 s in prod) of it.
            time.sleep(BUSY_S * 0.75)
            captured["busy"] = node.get(gpu_node.metrics)[1].decode()
            time.sleep(BUSY_S * 0.25)
        finally:
            stop.set()
    assert errors == [], errors[:3]
    EVIDENCE.mkdir(parents=True, exist_ok=True)
    summary = {}
    for phase, text in captured.items():
        (EVIDENCE / f"{PREFIX}-metrics-{phase}.txt").write_text(text, encoding="utf-8")
        samples = gpu_series.read(text)
        assert gpu_series.problems(samples) == [], phase
        summary[phase] = {s.name: s.value for s in gpu_series.gpu(samples)}
    busy = gpu_series.read(captured["busy"])
    served = [
        s.value for s in busy if s.name == "nv_inference_request_success" and s.labels["model"] == MODEL
    ]
    assert served and served[0] > 0
    assert summary["busy"]["nv_gpu_utilization"] > 0, summary
    verdicts["metrics"] = {"requests": sum(done), "seconds": BUSY_S, "clients": CLIENTS, **summary}
    verdicts["checks"][request.node.name] = "passed"


def test_the_gpu_alert_and_panels_evaluate_on_the_series_just_captured(
    gpu_node, work, verdicts, captured, request
):
    assert set(captured) == {"idle", "busy"}, "the metrics test did not capture both pages"
    promtool = node.unpack_promtool(BUNDLE, work)
    if promtool is None:
        pytest.skip("promtool is neither in the bundle nor on PATH: the normal suite replays the capture")
    inputs = gpu_series.Inputs.from_json((BUNDLE / "observability.json").read_text(encoding="utf-8"))
    for phase, text in captured.items():
        samples = gpu_series.read(text)
        scratch = work / f"promtool-{phase}"
        scratch.mkdir()
        verdicts.setdefault("alert", {})[phase] = gpu_series.check_alert(promtool, inputs, samples, scratch)
        verdicts.setdefault("panels", {})[phase] = gpu_series.check_panels(promtool, inputs, samples, scratch)
    verdicts["checks"][request.node.name] = "passed"


def _expected(rows: list[list[float]]) -> list[list[float]]:
    """rows @ WEIGHT + BIAS, with the model file's own constants."""
    constants = {
        target.id: ast.literal_eval(statement.value)
        for statement in ast.parse(MODEL_FILE.read_text(encoding="utf-8")).body
        if isinstance(statement, ast.Assign)
        for target in statement.targets
        if isinstance(target, ast.Name) and target.id in ("WEIGHT", "BIAS")
    }
    weight, bias = constants["WEIGHT"], constants["BIAS"]
    return [
        [sum(x * weight[i][j] for i, x in enumerate(row)) + bias[j] for j in range(len(bias))] for row in rows
    ]


def _scrape_until_gpu_series(gpu_node: node.Node) -> str:
    """The metrics page once every required nv_gpu_* family is on it (Triton fills them after its
    first metrics interval)."""
    deadline = time.monotonic() + METRICS_LIMIT_S
    text = ""
    while time.monotonic() < deadline:
        text = node.get(gpu_node.metrics)[1].decode()
        names = {sample.name for sample in gpu_series.gpu(gpu_series.read(text))}
        if set(gpu_series.REQUIRED) <= names:
            return text
        time.sleep(1.0)
    raise AssertionError(f"no {gpu_series.REQUIRED} within {METRICS_LIMIT_S:.0f} s:\n{text[-2000:]}")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
