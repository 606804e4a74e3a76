"""`repo gen-config --warmup` and the model_warmup checks of `repo validate`, against the real Triton
(2.51 from the nvidia-pytriton wheel, with our Python-based onnxruntime backend).

Triton runs a config's warmup samples while it loads a version and marks the version ready only
after they ran; a sample that fails fails the load (ARCHITECTURE.md behaviour 15). The generated
sample loads; every bad sample below is reported by `repo validate` and refused by Triton."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper

from tests.conftest import ROOT
from tritonops.repository import config_generator, validator
from tritonops.triton import client as triton_client
from tritonops.triton import onnx_models
from tritonops.triton import server as triton_server

SAMPLE_MLP = ROOT / "examples" / "model-repository" / "mlp" / "1" / "model.onnx"
WARMUP = config_generator.GenerateOptions(warmup=True)


def _config(text: str) -> triton_client.ModelConfig:
    return text_format.Parse(text, triton_client.ModelConfig())


def _samples(
    config: triton_client.ModelConfig,
) -> list[tuple[str, int, dict[str, tuple[str, list[int], str]]]]:
    """Each sample as (name, batch_size, {input: (data type, dims, data source)})."""
    return [
        (
            sample.name,
            sample.batch_size,
            {
                name: (triton_client.data_type_name(entry.data_type), list(entry.dims), str(entry.WhichOneof("input_data_type")))
                for name, entry in sample.inputs.items()
            },
        )
        for sample in config.model_warmup
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("builder", "inputs"),
    [
        ("mlp", {"input": ("TYPE_FP32", [8], "zero_data")}),
        # [batch, seq, 8]: the variable seq dim gets a size.
        ("sequence", {"tokens": ("TYPE_FP32", [1, 8], "zero_data")}),
        ("two_inputs", {"a": ("TYPE_FP32", [3], "zero_data"), "b": ("TYPE_FP32", [3], "zero_data")}),
        ("int64_bool", {"ids": ("TYPE_INT64", [5], "zero_data")}),
    ],
    ids=["one-input", "variable-dim", "two-inputs", "int64"],
)
def test_warmup_has_one_zero_sample_of_batch_1_per_graph_input(repo, builder, inputs):
    model_file = onnx_models.BUILDERS[builder](repo / builder / "1" / "model.onnx")
    config = _config(config_generator.generate(model_file, WARMUP))
    assert _samples(config) == [("zeros_batch_1", 1, inputs)]


def test_warmup_of_a_model_that_cannot_batch_gives_full_concrete_dims(repo):
    model_file = onnx_models.linear(repo / "fixed" / "1" / "model.onnx", in_shape=("rows", 4))
    text = config_generator.generate(
        model_file, config_generator.GenerateOptions(max_batch_size=0, warmup=True)
    )
    assert _samples(_config(text)) == [("zeros_batch_1", 1, {"input": ("TYPE_FP32", [1, 4], "zero_data")})]
    assert "Variable dims are set to 1" in text


def test_no_warmup_unless_asked(repo):
    model_file = onnx_models.mlp(repo / "mlp" / "1" / "model.onnx")
    assert not _config(config_generator.generate(model_file, config_generator.GenerateOptions())).model_warmup


@pytest.mark.parametrize("name", list(onnx_models.BUILDERS))
def test_generated_warmup_validates_clean(repo, name):
    model_file = onnx_models.BUILDERS[name](repo / name / "1" / "model.onnx")
    options = config_generator.GenerateOptions(max_batch_size=8, dynamic_batching=True, warmup=True)
    (repo / name / "config.pbtxt").write_text(config_generator.generate(model_file, options))
    report = validator.validate(repo)
    assert report.findings == (), [str(f) for f in report.findings]


def test_cli_writes_the_warmup(run_cli, tmp_path):
    model = tmp_path / "mlp" / "1" / "model.onnx"
    model.parent.mkdir(parents=True)
    shutil.copy(SAMPLE_MLP, model)
    result = run_cli("repo", "gen-config", str(model), "--warmup")
    assert result.returncode == 0, result.stderr
    written = _config((tmp_path / "mlp" / "config.pbtxt").read_text())
    assert _samples(written) == [("zeros_batch_1", 1, {"input": ("TYPE_FP32", [8], "zero_data")})]
    assert run_cli("repo", "validate", str(tmp_path)).returncode == 0


# --- against the real Triton ------------------------------------------------------------------


def _two_variable_inputs(path: Path) -> Path:
    """s = a + b with a [batch, n] and b [batch, m]: any sizes pass Triton's checks, but ONNX
    Runtime fails unless n and m broadcast. A warmup that fails inside the backend."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["s"])],
        "variable_add",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", "n"]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", "m"]),
        ],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, ["batch", "k"])],
    )
    return onnx_models._save(graph, path)


def _mlp_warmup(edit: str = "") -> str:
    """The generated config of the sample mlp, with `old=>new` replaced in its warmup sample."""
    text = config_generator.generate(SAMPLE_MLP, WARMUP)
    if edit:
        old, new = edit.split("=>")
        warmup_at = text.index("\nmodel_warmup {")
        assert old in text[warmup_at:], old
        text = text[:warmup_at] + text[warmup_at:].replace(old, new, 1)
    return text


# (id, config text, Triton's words, validate's words): refused by Triton's core before any backend code runs
BAD_WARMUPS = [
    ("wrong-dims", _mlp_warmup("dims: 8=>dims: 9"), "unexpected shape for input 'input'", "dims [9] do not fit"),
    ("wrong-type", _mlp_warmup("data_type: TYPE_FP32=>data_type: TYPE_INT32"), "data-type is 'INT32'", "data_type TYPE_INT32"),
    ("input-missing", _mlp_warmup('key: "input"=>key: "inputs"'), "missing required input(s) ['input']", "no data for input(s) input"),
    ("variable-dim", _mlp_warmup("dims: 8=>dims: -1"), "expects all variable-size dimensions are specified", "hold a variable size"),
    ("no-data", _mlp_warmup("zero_data: true=>"), "expects input 'input' to have input_data_type set", "no data; the load fails"),
    ("data-file-missing", _mlp_warmup('zero_data: true=>input_data_file: "input.bin"'), "input.bin", "input_data_file 'input.bin' is not in"),
]  # fmt: skip


def _post(url: str, timeout_s: float = 120.0) -> tuple[int, str]:
    """POST {} to Triton: (status, its error), or (0, why) when no answer came."""
    request = urllib.request.Request(url, data=b"{}", method="POST")
    try:
        with triton_server.LOOPBACK_OPENER.open(request, timeout=timeout_s) as response:
            return int(response.status), ""
    except urllib.error.HTTPError as error:
        return error.code, str(json.loads(error.read() or b"{}").get("error", ""))
    except OSError as error:  # URLError, a reset or a timeout: the server did not answer
        return 0, str(error)


def _crashed(server: triton_server.Server) -> bool:
    return "Signal (11) received" in server.log_path.read_text(encoding="utf-8", errors="replace")


def _ready(server: triton_server.Server, name: str) -> bool:
    try:
        with triton_server.LOOPBACK_OPENER.open(
            f"{server.url}/v2/models/{name}/ready", timeout=5
        ) as response:
            return int(response.status) == 200
    except urllib.error.HTTPError:
        return False


@pytest.fixture(scope="module")
def warmup_repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("warmup") / "models"
    for case, config, _, _ in [("good", _mlp_warmup(), "", ""), *BAD_WARMUPS]:
        model = root / case / "1" / "model.onnx"
        model.parent.mkdir(parents=True)
        shutil.copy(SAMPLE_MLP, model)
        (root / case / "config.pbtxt").write_text(config.replace('name: "mlp"', f'name: "{case}"'))
    return root


@pytest.fixture(scope="module")
def server(warmup_repo: Path, backends: Path, tmp_path_factory) -> Iterator[triton_server.Server]:
    log = tmp_path_factory.mktemp("warmup-server") / "triton.log"
    # Verbose: the log says when each instance runs its warmup sample.
    with triton_server.start(
        warmup_repo, log_path=log, backend_directory=backends, extra_args=["--log-verbose=1"]
    ) as running:
        yield running


def test_generated_warmup_runs_before_the_version_is_ready(server, warmup_repo):
    assert validator.validate(warmup_repo, model="good").errors == []
    status, error = _post(f"{server.url}/v2/repository/models/good/load")
    assert status == 200, error
    assert _ready(server, "good")
    log = server.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    warmed = [i for i, line in enumerate(log) if "model 'good' instance" in line and "running warmup sample 'zeros_batch_1'" in line]  # fmt: skip
    loaded = [i for i, line in enumerate(log) if "successfully loaded 'good'" in line]
    assert warmed and loaded and max(warmed) < loaded[0], "the warmup must run before the load completes"
    assert not [line for line in log if "failed to run warmup sample" in line and "'good'" in line]
    # And it serves: the warmup left the model as an ordinary inference would.
    with triton_client.Client(f"{server.address}:{server.http_port}") as client:
        outputs = client.infer("good", {"input": np.ones((2, 8), dtype=np.float32)})
    assert outputs["output"].shape == (2, 3) and np.isfinite(outputs["output"]).all()


@pytest.mark.parametrize(
    ("case", "config", "triton_says", "validate_says"), BAD_WARMUPS, ids=[c[0] for c in BAD_WARMUPS]
)
def test_a_warmup_that_fails_is_a_failed_load(server, warmup_repo, case, config, triton_says, validate_says):
    found = [str(f) for f in validator.validate(warmup_repo, model=case).errors]
    if validate_says is None:
        assert found == [], found  # only running the sample can tell
    else:
        assert any("model_warmup" in f and validate_says in f for f in found), found
    status, error = _post(f"{server.url}/v2/repository/models/{case}/load")
    assert status == 400, (status, error)
    assert triton_says in error
    assert not _ready(server, case)
    assert server.running  # a failed warmup fails that load only


def test_a_warmup_batch_larger_than_the_model_takes_is_reported(repo):
    # Triton 2.51 fails that load ("batch size 9 ..., max allowed is 4"); in one run of two here it
    # crashed with SIGSEGV instead, so this case is not loaded in the shared server above.
    model = repo / "mlp" / "1" / "model.onnx"
    model.parent.mkdir(parents=True)
    shutil.copy(SAMPLE_MLP, model)
    (repo / "mlp" / "config.pbtxt").write_text(_mlp_warmup("batch_size: 1=>batch_size: 9"))
    (found,) = [str(f) for f in validator.validate(repo).errors]
    assert (
        "batch_size 9 is more than the model takes (max_batch_size 4)" in found
        and "use batch_size 1 to 4" in found
    )


def test_a_warmup_that_fails_in_the_backend_never_reports_ready(tmp_path, backends):
    """Shapes Triton accepts (a gets 2 columns, b 3) that ONNX Runtime cannot add: the sample runs
    in our backend, whose error must fail the load rather than leave the version ready.

    On this tier (the 2.51 wheel's Python backend hosting our ONNX Runtime backend) such a failure
    usually crashes tritonserver with SIGSEGV right after "failed to run warmup sample"; a failure
    that Triton's core finds in the sample (the cases above) never did in 20 tries here. Either
    way the version is never reported loaded; the test accepts both and checks each."""
    model = _two_variable_inputs(tmp_path / "models" / "variable_add" / "1" / "model.onnx")
    text = config_generator.generate(model, WARMUP)
    for name, size in (("a", 2), ("b", 3)):
        entry = f'key: "{name}"\n    value {{\n      data_type: TYPE_FP32\n      dims: '
        assert entry + "1\n" in text
        text = text.replace(entry + "1\n", f"{entry}{size}\n")
    (model.parent.parent / "config.pbtxt").write_text(text)
    assert validator.validate(tmp_path / "models").errors == []  # only running the sample can tell
    # A server of its own: a crash must not take the other cases down.
    with triton_server.start(
        tmp_path / "models", log_path=tmp_path / "triton.log", backend_directory=backends
    ) as server:
        answer: list[tuple[int, str]] = []
        load = threading.Thread(
            target=lambda: answer.append(_post(f"{server.url}/v2/repository/models/variable_add/load", 20)),
            daemon=True,
        )
        load.start()
        # A crashed server may leave the request hanging until its timeout: the log says it sooner.
        deadline = time.monotonic() + 20
        while load.is_alive() and not _crashed(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        crashed = _crashed(server)
        status, error = answer[0] if answer else (0, "no answer: the server crashed")
        if crashed:
            assert status != 200, "it crashed, and must not have answered that the load succeeded"
        else:
            assert status == 400, (status, error)
            assert "failed to run warmup sample 'zeros_batch_1': [ONNXRuntimeError]" in error
            assert not _ready(server, "variable_add")
