"""The verdicts agree with the real Triton (2.51 from the nvidia-pytriton wheel, with our
Python-based onnxruntime backend): every bad case that Triton rejects at load time is reported by
`repo validate` and fails to load, for the reason the case names; every good case validates clean,
loads and infers correctly.

Who refuses a bad case matters: the wheel has no ONNX Runtime backend, so the cases marked
`LOCAL_BACKEND` are refused by our own backend (src/tritonops/triton/backends/onnxruntime/model.py, which
raises `TritonModelException`), not by Triton's core. Those verdicts hold for a production pod only
as far as our backend mirrors NVIDIA's, whose checks are in triton-inference-server/onnxruntime_backend
src/onnxruntime.cc (`ModelInstanceState::ValidateInputs`, `ModelInstanceState::ValidateOutputs`: input
count and data types, dims via `CompareDimsSupported` in src/onnxruntime_utils.cc, exact for outputs)
and, for unknown tensor names, `CheckAllowedModelInput`/`CheckAllowedModelOutput` in
triton-inference-server/backend src/backend_common.cc (read at onnxruntime_backend 00fd3e8 and
backend 3f57fb9). The error texts below are theirs. Cases marked
`CORE` are refused by tritonserver itself (config parsing, the repository poll, the version policy,
instance groups) before any backend code runs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from tritonops.repository import config_generator, validator
from tritonops.triton import onnx_models
from tritonops.triton import server as triton_server

TENSORS = 'input [{{ name: "input" data_type: {dtype} dims: {i} }}]\noutput [{{ name: "output" data_type: TYPE_FP32 dims: {o} }}]\n'


def _linear_config(
    max_batch_size=8,
    in_dims="[4]",
    out_dims="[2]",
    dtype="TYPE_FP32",
    extra="",
    head='platform: "onnxruntime_onnx"\n',
):
    return (
        head
        + f"max_batch_size: {max_batch_size}\n"
        + TENSORS.format(dtype=dtype, i=in_dims, o=out_dims)
        + extra
    )


CORE = "core"
LOCAL_BACKEND = "local-ort-backend"

# (id, who refuses it, in_shape of the linear graph, config text, words of the refusal)
BAD_CASES = [
    (
        "classic-1x4-as-4",
        LOCAL_BACKEND,
        (1, 4),
        _linear_config(0, "[4]", "[1, 2]"),
        "tensor 'input': the model expects 2 dimensions (shape [1,4]) but the model configuration "
        "specifies 1 dimensions (shape [4])",
    ),
    (
        "batch-dim-written-out",
        LOCAL_BACKEND,
        ("batch", 4),
        _linear_config(8, "[1, 4]", "[1, 2]"),
        "tensor 'input': the model expects 2 dimensions (shape [-1,4])",
    ),
    (
        "fixed-first-dim-with-batching",
        LOCAL_BACKEND,
        (1, 4),
        _linear_config(8, "[4]", "[2]"),
        "the first dimension must be -1; but shape expected by the model is [1,4]",
    ),
    (
        "wrong-input-name",
        LOCAL_BACKEND,
        ("batch", 4),
        _linear_config().replace('name: "input"', 'name: "x"'),
        "unexpected inference input 'x', allowed inputs are: input",
    ),
    (
        "wrong-input-type",
        LOCAL_BACKEND,
        ("batch", 4),
        _linear_config(dtype="TYPE_INT32"),
        "configuration expects datatype TYPE_INT32 for input 'input', model provides TYPE_FP32",
    ),
    (
        "wrong-size",
        LOCAL_BACKEND,
        ("batch", 4),
        _linear_config(in_dims="[5]"),
        "making complete shape [-1,5]",
    ),
    (
        "fixed-output-dim-of-a-variable-graph-dim",
        LOCAL_BACKEND,
        ("batch", 4),
        _linear_config(0, "[1, 4]", "[1, 2]"),
        "tensor 'output': the model expects 2 dimensions (shape [-1,2]) but the model configuration "
        "specifies 2 dimensions (shape [1,2])",
    ),
    (
        "unknown-field",
        CORE,
        ("batch", 4),
        _linear_config(extra="bogus_field: 1\n"),
        "failed to read text proto",
    ),
    ("bad-enum", CORE, ("batch", 4), _linear_config(dtype="TYPE_FP33"), "failed to read text proto"),
    (
        "name-mismatch",
        CORE,
        ("batch", 4),
        'name: "someone_else"\n' + _linear_config(),
        "directory name must equal model name",
    ),
    (
        "preferred-above-max",
        CORE,
        ("batch", 4),
        _linear_config(extra="dynamic_batching { preferred_batch_size: [16] }\n"),
        "dynamic batching preferred size must be <= max batch size",
    ),
    (
        "missing-data-type",
        CORE,
        ("batch", 4),
        _linear_config().replace(" data_type: TYPE_FP32 dims: [4]", " dims: [4]"),
        "model input 'input' must specify 'data_type'",
    ),
    (
        "policy-pins-absent-version",
        CORE,
        ("batch", 4),
        _linear_config(extra="version_policy { specific { versions: [3] } }\n"),
        "at least one version must be available under the version policy",
    ),
    (
        "kind-gpu-without-gpu",
        CORE,
        ("batch", 4),
        _linear_config(extra="instance_group [{ kind: KIND_GPU count: 1 }]\n"),
        "has kind KIND_GPU but no GPUs are available",
    ),
]


def _post(url: str, body: dict | None = None, timeout: float = 60.0) -> tuple[int, dict]:
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with triton_server.LOOPBACK_OPENER.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def triton_repo(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fidelity") / "models"


@pytest.fixture(scope="module")
def server(triton_repo: Path, tmp_path_factory) -> Iterator[triton_server.Server]:
    triton_repo.mkdir(parents=True, exist_ok=True)
    http, grpc, metrics = triton_server.free_ports(3)
    work = tmp_path_factory.mktemp("fidelity-server")
    with triton_server.start(
        triton_repo, http_port=http, grpc_port=grpc, metrics_port=metrics, log_path=work / "triton.log"
    ) as running:
        yield running


def _load(server: triton_server.Server, name: str) -> tuple[int, str]:
    status, body = _post(f"{server.url}/v2/repository/models/{name}/load")
    return status, str(body.get("error", ""))


def _refusal(server: triton_server.Server, name: str, error: str) -> str:
    """Why Triton refused `name`: its answer, or for a repository poll failure (500, which only says
    "failed to poll") the poll's own line in the server log."""
    if "failed to poll from model repository" not in error:
        return error
    lines = server.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(line for line in lines if f"Poll failed for model directory '{name}'" in line)


@pytest.mark.parametrize(
    ("case", "refused_by", "in_shape", "config", "reason"),
    BAD_CASES,
    ids=[f"{case[0]}-by-{case[1]}" for case in BAD_CASES],
)
def test_bad_case_is_reported_and_triton_refuses_it(
    server, triton_repo, case, refused_by, in_shape, config, reason
):
    name = case.replace("-", "_")
    onnx_models.linear(triton_repo / name / "1" / "model.onnx", in_shape=in_shape)
    (triton_repo / name / "config.pbtxt").write_text(config)
    report = validator.validate(triton_repo, model=name, gpu_available=False)
    status, error = _load(server, name)
    assert not report.passed, f"validate missed a case Triton rejects ({status}: {error})"
    # Triton answers 400 for a failed load and 500 for a config it cannot parse; never 200.
    assert status in (400, 500), (
        f"Triton loaded {case}, which validate rejects: {[str(f) for f in report.errors]}"
    )
    refusal = _refusal(server, name, error)
    assert reason in refusal, refusal
    # Our Python-based backend raises TritonModelException; Triton's core never does.
    assert ("TritonModelException" in refusal) == (refused_by == LOCAL_BACKEND), refusal


def test_warning_cases_load_in_triton(server, triton_repo):
    """What validate only warns about, Triton accepts: the warning must not claim a load failure."""
    onnx_models.linear(triton_repo / "batching_unused" / "1" / "model.onnx")
    config = _linear_config(0, "[-1, 4]", "[-1, 2]", extra="dynamic_batching { }\n")
    (triton_repo / "batching_unused" / "config.pbtxt").write_text(config)
    report = validator.validate(triton_repo, model="batching_unused")
    assert report.passed and report.findings
    assert _load(server, "batching_unused")[0] == 200


def test_truncated_model_is_reported_and_triton_refuses_it(server, triton_repo):
    model_file = onnx_models.linear(triton_repo / "truncated" / "1" / "model.onnx")
    model_file.write_bytes(model_file.read_bytes()[:60])
    (triton_repo / "truncated" / "config.pbtxt").write_text(_linear_config())
    assert not validator.validate(triton_repo, model="truncated").passed
    assert _load(server, "truncated")[0] in (400, 500)


def test_empty_version_folder_is_reported_and_triton_refuses_it(server, triton_repo):
    (triton_repo / "hollow" / "1").mkdir(parents=True)
    (triton_repo / "hollow" / "config.pbtxt").write_text(_linear_config())
    assert not validator.validate(triton_repo, model="hollow").passed
    assert _load(server, "hollow")[0] in (400, 500)


GOOD_MODELS = onnx_models.BUILDERS

DTYPES = {
    "TYPE_FP32": ("FP32", np.float32),
    "TYPE_INT64": ("INT64", np.int64),
    "TYPE_BOOL": ("BOOL", np.bool_),
}


def _example(name: str, dims: tuple[int, ...], rng: np.random.Generator, dtype) -> np.ndarray:
    shape = [2 if d == -1 else d for d in dims]
    shape[0] = 3  # batch
    if dtype is np.int64:
        return rng.integers(-5, 5, size=shape).astype(np.int64)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dynamic_batching", [False, True], ids=["plain", "dynamic-batching"])
@pytest.mark.parametrize("model", list(GOOD_MODELS))
def test_good_case_validates_loads_and_infers_like_onnxruntime(server, triton_repo, model, dynamic_batching):
    name = f"{model}_{'db' if dynamic_batching else 'plain'}"
    model_file = GOOD_MODELS[model](triton_repo / name / "1" / "model.onnx")
    options = config_generator.GenerateOptions(
        name=name, max_batch_size=8, dynamic_batching=dynamic_batching, instances=1
    )
    (triton_repo / name / "config.pbtxt").write_text(config_generator.generate(model_file, options))
    report = validator.validate(triton_repo, model=name, gpu_available=False)
    assert report.findings == (), [str(f) for f in report.findings]
    status, error = _load(server, name)
    assert status == 200, error

    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    feeds = {}
    for graph_input in session.get_inputs():
        dims = tuple(d if isinstance(d, int) else -1 for d in graph_input.shape)
        dtype = np.int64 if "int64" in graph_input.type else np.float32
        feeds[graph_input.name] = _example(graph_input.name, dims, rng, dtype)
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    request = {
        "inputs": [
            {
                "name": k,
                "shape": list(v.shape),
                "datatype": "INT64" if v.dtype == np.int64 else "FP32",
                "data": v.flatten().tolist(),
            }
            for k, v in feeds.items()
        ]
    }
    status, body = _post(f"{server.url}/v2/models/{name}/infer", request)
    assert status == 200, body
    # Every graph output comes back (the loop below would pass on an empty list).
    assert sorted(output["name"] for output in body["outputs"]) == sorted(expected), body
    for output in body["outputs"]:
        want = expected[output["name"]]
        got = np.array(output["data"]).reshape(output["shape"])
        assert list(want.shape) == output["shape"]
        assert np.allclose(got, want, rtol=1e-5, atol=1e-5), output["name"]
