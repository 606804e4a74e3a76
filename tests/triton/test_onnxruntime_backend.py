"""The Python-based onnxruntime backend on the real tritonserver: serves ONNX repositories, strict at load.

The load refusals here come from our own backend (src/tritonops/triton/backends/onnxruntime/model.py), not
from Triton's core: the wheel's server has no ONNX Runtime backend. They stand for what a production
pod's NVIDIA backend refuses only as far as ours mirrors triton-inference-server/onnxruntime_backend
src/onnxruntime.cc (`ModelInstanceState::ValidateInputs`, `ModelInstanceState::ValidateOutputs`, with
`CompareDimsSupported` in src/onnxruntime_utils.cc) and `CheckAllowedModelInput`/`CheckAllowedModelOutput`
in triton-inference-server/backend src/backend_common.cc; the error words checked below are theirs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.triton.helpers import (
    infer,
    infer_inputs,
    linear_model,
    run_in_process,
    scalar_sum_model,
    two_input_model,
    typed_model,
    write_model,
)
from tritonops.triton import server as triton_server

LINEAR_CONFIG = """
platform: "onnxruntime_onnx"
max_batch_size: 8
input [{ name: "X" data_type: TYPE_FP32 dims: [4] }]
output [{ name: "Y" data_type: TYPE_FP32 dims: [2] }]
dynamic_batching { max_queue_delay_microseconds: 50000 }
instance_group [{ kind: KIND_CPU count: 1 }]
parameters [
  { key: "intra_op_thread_count" value: { string_value: "1" } },
  { key: "inter_op_thread_count" value: { string_value: "1" } }
]
"""

TWO_INPUTS_CONFIG = """
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "A" data_type: TYPE_FP32 dims: [4] },
  { name: "B" data_type: TYPE_FP32 dims: [4] }
]
output [{ name: "Y" data_type: TYPE_FP32 dims: [4] }]
dynamic_batching { max_queue_delay_microseconds: 50000 }
instance_group [{ kind: KIND_CPU count: 1 }]
"""

# A scalar graph output in a model that does not batch is answered with the config's dims.
SCALAR_SUM_CONFIG = """
platform: "onnxruntime_onnx"
max_batch_size: 0
input [{ name: "X" data_type: TYPE_FP32 dims: [4] }]
output [{ name: "S" data_type: TYPE_FP32 dims: [1, 1] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""

TYPED_CONFIG = """
backend: "onnxruntime"
max_batch_size: 8
input [
  { name: "FLAGS" data_type: TYPE_BOOL dims: [3] },
  { name: "COUNTS" data_type: TYPE_INT64 dims: [3] },
  { name: "HALVES" data_type: TYPE_FP16 dims: [3] },
  { name: "WORDS" data_type: TYPE_STRING dims: [3] }
]
output [
  { name: "NOT_FLAGS" data_type: TYPE_BOOL dims: [3] },
  { name: "NEXT_COUNTS" data_type: TYPE_INT64 dims: [3] },
  { name: "DOUBLED" data_type: TYPE_FP16 dims: [3] },
  { name: "SAME_WORDS" data_type: TYPE_STRING dims: [3] }
]
instance_group [{ kind: KIND_CPU count: 1 }]
"""


def config(
    max_batch_size: int,
    input_dims: str,
    output_dims: str,
    *,
    x: str = "X",
    y: str = "Y",
    dtype: str = "TYPE_FP32",
) -> str:
    """A one-input, one-output ONNX config, one instance."""
    return f"""
platform: "onnxruntime_onnx"
max_batch_size: {max_batch_size}
input [{{ name: "{x}" data_type: {dtype} dims: {input_dims} }}]
output [{{ name: "{y}" data_type: TYPE_FP32 dims: {output_dims} }}]
instance_group [{{ kind: KIND_CPU count: 1 }}]
"""


# name -> (graph, config, the words the load error must contain); refused by our backend (see above)
MISMATCHES = {
    "wrong_input_name": (
        linear_model(),
        config(8, "[4]", "[2]", x="INPUT0"),
        ["'INPUT0'", "allowed inputs are: X"],
    ),
    "wrong_output_name": (
        linear_model(),
        config(8, "[4]", "[2]", y="OUTPUT0"),
        ["'OUTPUT0'", "allowed outputs are: Y"],
    ),
    "wrong_dtype": (
        linear_model(),
        config(8, "[4]", "[2]", dtype="TYPE_FP64"),
        ["'X'", "TYPE_FP64", "TYPE_FP32"],
    ),
    "batch_dim_missing_from_dims": (
        linear_model([1, 4], [1, 2]),
        config(0, "[4]", "[2]"),
        ["'X'", "[1,4]", "[4]"],
    ),
    "batch_dim_spelled_in_dims": (linear_model(), config(0, "[1,4]", "[1,2]"), ["'Y'", "[-1,2]", "[1,2]"]),
    "batching_on_fixed_first_dim": (
        linear_model([1, 4], [1, 2]),
        config(8, "[4]", "[2]"),
        ["'X'", "first dimension must be -1", "[1,4]"],
    ),
    "wrong_output_dims": (linear_model(), config(8, "[4]", "[3]"), ["'Y'", "[-1,2]", "[-1,3]"]),
    "graph_input_missing_from_config": (
        two_input_model(),
        config(8, "[4]", "[4]", x="A"),
        ["expects 1 inputs", "provides 2", "B"],
    ),
}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every model the module loads: good ones, config-less ones, and each mismatch."""
    root = tmp_path_factory.mktemp("repository")
    write_model(root, "linear", linear_model(), LINEAR_CONFIG)
    write_model(root, "typed", typed_model(), TYPED_CONFIG)
    write_model(root, "two_inputs", two_input_model(), TWO_INPUTS_CONFIG)
    write_model(root, "scalar_sum", scalar_sum_model(), SCALAR_SUM_CONFIG)
    write_model(root, "configless", linear_model([None, 4], [None, 2]), None)
    write_model(root, "configless_fixed", linear_model([1, 4], [1, 2]), None)
    write_model(root, "partial", linear_model(), 'platform: "onnxruntime_onnx"\nmax_batch_size: 2\n')
    write_model(root, "loose_input", linear_model(), config(0, "[1,4]", "[-1,2]"))
    bad_threads = 'parameters [{ key: "intra_op_thread_count" value: { string_value: "many" } }]\n'
    write_model(root, "bad_threads", linear_model(), LINEAR_CONFIG.split("parameters")[0] + bad_threads)
    for name, (graph, text, _) in MISMATCHES.items():
        write_model(root, name, graph, text)
    return root


@pytest.fixture(scope="module")
def server(
    repository: Path, backends: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[triton_server.Server]:
    """One real tritonserver for the module, explicit mode, with the servable models loaded at start."""
    log_path = tmp_path_factory.mktemp("server") / "tritonserver.log"
    with triton_server.start(
        repository,
        log_path=log_path,
        backend_directory=backends,
        load_models=["linear", "typed", "two_inputs", "scalar_sum"],
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: triton_server.Server) -> Iterator[httpclient.InferenceServerClient]:
    """An HTTP client with room for the concurrency test."""
    with httpclient.InferenceServerClient(server.url.removeprefix("http://"), concurrency=16) as http:
        yield http


def test_good_model_serves_what_onnxruntime_computes(client: httpclient.InferenceServerClient) -> None:
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    served = infer(client, "linear", X=x).as_numpy("Y")
    (expected,) = run_in_process(linear_model(), {"X": x})
    assert served.shape == (3, 2)
    assert np.allclose(served, expected)


def test_metadata_reports_onnxruntime_platform(client: httpclient.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("linear")
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert metadata["outputs"] == [{"name": "Y", "datatype": "FP32", "shape": [-1, 2]}]


def test_configless_model_is_autocompleted_like_the_real_backend(
    client: httpclient.InferenceServerClient,
) -> None:
    client.load_model("configless")
    config = client.get_model_config("configless")
    assert config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == 4  # Triton's default-max-batch-size, as the real backend fills it
    assert "dynamic_batching" in config
    assert [(io["name"], io["data_type"], io["dims"]) for io in config["input"]] == [("X", "TYPE_FP32", [4])]
    assert [(io["name"], io["data_type"], io["dims"]) for io in config["output"]] == [("Y", "TYPE_FP32", [2])]
    x = np.ones((2, 4), dtype=np.float32)
    assert np.allclose(
        infer(client, "configless", X=x).as_numpy("Y"), run_in_process(linear_model(), {"X": x})[0]
    )


def test_autocomplete_of_fixed_shape_graph_does_not_invent_batching(
    client: httpclient.InferenceServerClient,
) -> None:
    client.load_model("configless_fixed")
    config = client.get_model_config("configless_fixed")
    assert config["max_batch_size"] == 0
    assert [io["dims"] for io in config["input"]] == [[1, 4]]
    assert "dynamic_batching" not in config


def test_autocomplete_keeps_what_the_config_states(client: httpclient.InferenceServerClient) -> None:
    client.load_model("partial")
    config = client.get_model_config("partial")
    assert config["max_batch_size"] == 2
    assert [io["name"] for io in config["input"]] == ["X"]
    assert [io["name"] for io in config["output"]] == ["Y"]


def test_dynamic_graph_dim_accepts_a_fixed_input_dim_like_the_real_backend(
    client: httpclient.InferenceServerClient,
) -> None:
    # CompareDimsSupported compares inputs loosely (a -1 in the graph takes any config dim), outputs exactly.
    client.load_model("loose_input")
    x = np.ones((1, 4), dtype=np.float32)
    assert infer(client, "loose_input", X=x).as_numpy("Y").shape == (1, 2)


@pytest.mark.parametrize("name", list(MISMATCHES), ids=list(MISMATCHES))
def test_config_that_disagrees_with_the_graph_fails_to_load(
    client: httpclient.InferenceServerClient, name: str
) -> None:
    """The refusal is our local backend's (TritonModelException), mirroring NVIDIA's checks."""
    with pytest.raises(InferenceServerException) as failure:
        client.load_model(name)
    message = str(failure.value)
    assert "TritonModelException" in message
    for words in MISMATCHES[name][2]:
        assert words in message
    assert not client.is_model_ready(name)


def test_session_parameters_reach_the_backend(client: httpclient.InferenceServerClient) -> None:
    # `linear` loaded with intra_op_thread_count 1; the same key with a bad value must fail the load.
    with pytest.raises(InferenceServerException, match="'intra_op_thread_count' value 'many'"):
        client.load_model("bad_threads")


def test_bool_int64_fp16_and_string_round_trip(client: httpclient.InferenceServerClient) -> None:
    arrays = {
        "FLAGS": np.array([[True, False, True], [False, False, True]]),
        "COUNTS": np.array([[1, -2, 2**40], [0, 7, -9]], dtype=np.int64),
        "HALVES": np.array([[0.5, 1.25, -3.0], [2.0, 0.0, 65.5]], dtype=np.float16),
        "WORDS": np.array([[b"a", b"bc", "é".encode()], [b"", b"x y", b"z"]], dtype=np.object_),
    }
    result = infer(client, "typed", **arrays)
    assert result.as_numpy("NOT_FLAGS").dtype == np.bool_
    assert np.array_equal(result.as_numpy("NOT_FLAGS"), ~arrays["FLAGS"])
    assert result.as_numpy("NEXT_COUNTS").dtype == np.int64
    assert np.array_equal(result.as_numpy("NEXT_COUNTS"), arrays["COUNTS"] + 1)
    assert result.as_numpy("DOUBLED").dtype == np.float16
    assert np.array_equal(result.as_numpy("DOUBLED"), arrays["HALVES"] * 2)
    assert result.as_numpy("SAME_WORDS").tolist() == arrays["WORDS"].tolist()


def test_concurrent_requests_are_batched_and_answered_each_with_its_own_result(
    client: httpclient.InferenceServerClient,
) -> None:
    before = client.get_inference_statistics("linear")["model_stats"][0]
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((1 + index % 2, 4)).astype(np.float32) for index in range(16)]
    # The client is not thread-safe: async_infer sends them concurrently on its own connection pool.
    pending = [client.async_infer("linear", infer_inputs(X=x)) for x in batches]
    served = [request.get_result().as_numpy("Y") for request in pending]
    for x, y in zip(batches, served, strict=True):
        assert np.allclose(y, run_in_process(linear_model(), {"X": x})[0])
    after = client.get_inference_statistics("linear")["model_stats"][0]
    requests = after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    executions = after["execution_count"] - before["execution_count"]
    assert requests == 16
    assert executions < requests  # the dynamic batcher handed execute() several requests at once


def test_batched_requests_with_two_inputs_get_each_their_own_sum(
    client: httpclient.InferenceServerClient,
) -> None:
    before = client.get_inference_statistics("two_inputs")["model_stats"][0]["execution_count"]
    rng = np.random.default_rng(2)
    pairs = [rng.standard_normal((2, 1 + index % 3, 4)).astype(np.float32) for index in range(12)]
    # Half the requests name B first: inputs are matched by name, not by position.
    pending = [
        client.async_infer("two_inputs", infer_inputs(A=a, B=b) if index % 2 else infer_inputs(B=b, A=a))
        for index, (a, b) in enumerate(pairs)
    ]
    for (a, b), request in zip(pairs, pending, strict=True):
        assert np.array_equal(request.get_result().as_numpy("Y"), a + b)
    after = client.get_inference_statistics("two_inputs")["model_stats"][0]["execution_count"]
    assert after - before < len(pairs)  # some of them went through execute() together


def test_scalar_output_of_an_unbatched_model_takes_the_config_dims(
    client: httpclient.InferenceServerClient,
) -> None:
    x = np.array([0.5, 1.0, 2.0, -4.0], dtype=np.float32)
    served = infer(client, "scalar_sum", X=x).as_numpy("S")
    assert served.shape == (1, 1)
    assert served.tolist() == [[-0.5]]
