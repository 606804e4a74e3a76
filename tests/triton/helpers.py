"""ONNX models built with onnx's helper API, model repository folders, and KServe v2 calls, for the Triton tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import tritonclient.http as httpclient
from onnx import TensorProto, helper, numpy_helper

WEIGHTS = np.arange(8, dtype=np.float32).reshape(4, 2) / 4.0
BIAS = np.array([0.5, -1.0], dtype=np.float32)
Dims = Sequence[int | str | None]


def linear_model(
    input_shape: Dims = ("batch", 4),
    output_shape: Dims = ("batch", 2),
    *,
    input_name: str = "X",
    output_name: str = "Y",
) -> onnx.ModelProto:
    """Y = X·W + b with W 4x2 and b 2, as FP32; a str or None in a shape is a dynamic dim."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", [input_name, "W"], ["XW"]),
            helper.make_node("Add", ["XW", "B"], [output_name]),
        ],
        "linear",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, list(output_shape))],
        [numpy_helper.from_array(WEIGHTS, "W"), numpy_helper.from_array(BIAS, "B")],
    )
    return _finish(graph)


def two_input_model() -> onnx.ModelProto:
    """Y = A + B over [batch, 4]: a graph with two required inputs."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["A", "B"], ["Y"])],
        "two_inputs",
        [
            helper.make_tensor_value_info("A", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("B", TensorProto.FLOAT, ["batch", 4]),
        ],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 4])],
    )
    return _finish(graph)


def scalar_sum_model() -> onnx.ModelProto:
    """S = sum(X) over X [4]: a graph whose output is a scalar (no dims at all)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["X"], ["S"], keepdims=0)],
        "scalar_sum",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("S", TensorProto.FLOAT, [])],
    )
    return _finish(graph)


def typed_model() -> onnx.ModelProto:
    """One path per data type over [batch, 3]: BOOL -> Not, INT64 -> +1, FP16 -> x2, STRING -> Identity."""
    one = numpy_helper.from_array(np.array(1, dtype=np.int64), "ONE")
    two = numpy_helper.from_array(np.array(2, dtype=np.float16), "TWO")
    graph = helper.make_graph(
        [
            helper.make_node("Not", ["FLAGS"], ["NOT_FLAGS"]),
            helper.make_node("Add", ["COUNTS", "ONE"], ["NEXT_COUNTS"]),
            helper.make_node("Mul", ["HALVES", "TWO"], ["DOUBLED"]),
            helper.make_node("Identity", ["WORDS"], ["SAME_WORDS"]),
        ],
        "typed",
        [
            helper.make_tensor_value_info("FLAGS", TensorProto.BOOL, ["batch", 3]),
            helper.make_tensor_value_info("COUNTS", TensorProto.INT64, ["batch", 3]),
            helper.make_tensor_value_info("HALVES", TensorProto.FLOAT16, ["batch", 3]),
            helper.make_tensor_value_info("WORDS", TensorProto.STRING, ["batch", 3]),
        ],
        [
            helper.make_tensor_value_info("NOT_FLAGS", TensorProto.BOOL, ["batch", 3]),
            helper.make_tensor_value_info("NEXT_COUNTS", TensorProto.INT64, ["batch", 3]),
            helper.make_tensor_value_info("DOUBLED", TensorProto.FLOAT16, ["batch", 3]),
            helper.make_tensor_value_info("SAME_WORDS", TensorProto.STRING, ["batch", 3]),
        ],
        [one, two],
    )
    return _finish(graph)


def _finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # loadable by any onnxruntime >= 1.10
    onnx.checker.check_model(model)
    return model


def write_model(repository: Path, name: str, model: onnx.ModelProto, config: str | None) -> Path:
    """`<repository>/<name>/1/model.onnx`, plus config.pbtxt unless `config` is None."""
    folder = repository / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "1" / "model.onnx")
    if config is not None:
        (folder / "config.pbtxt").write_text(config)
    return folder


def run_in_process(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """What onnxruntime computes for `feeds` without Triton, for comparison."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(session.run(None, feeds))


def infer_inputs(**arrays: np.ndarray) -> list[httpclient.InferInput]:
    """KServe v2 inputs with binary tensor data, named by keyword."""
    inputs = []
    for name, array in arrays.items():
        datatype = "BYTES" if array.dtype == np.object_ else httpclient.np_to_triton_dtype(array.dtype)
        tensor = httpclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    return inputs


def infer(
    client: httpclient.InferenceServerClient, model: str, **arrays: np.ndarray
) -> httpclient.InferResult:
    """One KServe v2 request over HTTP."""
    return client.infer(model, infer_inputs(**arrays))
