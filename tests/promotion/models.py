"""Model folders for the promotion tests: ONNX versions built with tritonops' own builders, an ONNX
model whose outputs are infinite, and Python-backend models that answer wrongly on purpose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tritonops.triton import onnx_models

LINEAR_CONFIG = """name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ {{ name: "input" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "output" data_type: TYPE_FP32 dims: [ 2 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""

INT_BOOL_CONFIG = """name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ {{ name: "ids" data_type: TYPE_INT64 dims: [ 5 ] }} ]
output [
  {{ name: "doubled" data_type: TYPE_INT64 dims: [ 5 ] }},
  {{ name: "positive" data_type: TYPE_BOOL dims: [ 5 ] }}
]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""

PYTHON_CONFIG = """name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ 2 ] }} ]
output [
  {{ name: "OUT" data_type: TYPE_FP32 dims: [ 2 ] }}{extra}
]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""

PYTHON_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", {expression})]))
        return responses
"""


def linear_version(repository: Path, name: str, version: int, *, scale: float = 1.0) -> Path:
    """`<repository>/<name>/<version>/model.onnx`: Y = X @ W + b, with W and b times `scale` (a
    different `scale` is a version that answers differently); the first version also writes the
    model's config, pinned to itself."""
    path = onnx_models.linear(repository / name / str(version) / "model.onnx")
    if scale != 1.0:
        model = onnx.load(str(path))
        for initializer in model.graph.initializer:
            array = numpy_helper.to_array(initializer) * np.float32(scale)
            initializer.CopyFrom(numpy_helper.from_array(array.astype(np.float32), initializer.name))
        onnx.save(model, str(path))
    config = repository / name / "config.pbtxt"
    if not config.exists():
        config.write_text(LINEAR_CONFIG.format(name=name) + pin(version))
    return path.parent


def pin(*versions: int) -> str:
    return f"version_policy {{ specific {{ versions: [ {', '.join(map(str, versions))} ] }} }}\n"


def infinite_version(repository: Path, name: str, version: int) -> Path:
    """Y = X / 0 over [batch, 4] -> [batch, 2]: shaped like `linear`, every output infinite or NaN."""
    zero = numpy_helper.from_array(np.zeros((4, 2), dtype=np.float32), "Z")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "Z"], ["xz"]),
            helper.make_node("Div", ["xz", "Z2"], ["output"]),
        ],
        "infinite",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 2])],
        [zero, numpy_helper.from_array(np.zeros(2, dtype=np.float32), "Z2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_models.OPSET)])
    model.ir_version = 8
    path = repository / name / str(version) / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    config = repository / name / "config.pbtxt"
    if not config.exists():
        config.write_text(LINEAR_CONFIG.format(name=name))
    return path.parent


def int_bool_model(repository: Path, name: str) -> Path:
    onnx_models.int64_bool(repository / name / "1" / "model.onnx")
    (repository / name / "config.pbtxt").write_text(INT_BOOL_CONFIG.format(name=name))
    return repository / name


def python_model(
    repository: Path, name: str, expression: str, *, extra_output: bool = False, config_tail: str = ""
) -> Path:
    """A Python-backend model IN [2] -> OUT [2] whose OUT is `expression` of x (the input array);
    with `extra_output`, the config also declares an output EXTRA that the model never returns;
    `config_tail` is appended to its config (a transaction policy, a sequence batcher)."""
    (repository / name / "1").mkdir(parents=True, exist_ok=True)
    (repository / name / "1" / "model.py").write_text(PYTHON_MODEL.format(expression=expression))
    extra = ',\n  { name: "EXTRA" data_type: TYPE_FP32 dims: [ 2 ] }' if extra_output else ""
    (repository / name / "config.pbtxt").write_text(
        PYTHON_CONFIG.format(name=name, extra=extra) + config_tail
    )
    return repository / name


def unloadable_version(repository: Path, name: str, version: int) -> Path:
    """A version `repo validate` accepts (its signature matches linear's config) that Triton cannot
    load: its graph uses an operator no runtime implements."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "W"], ["xw"]),
            helper.make_node("Frobnicate", ["xw"], ["output"], domain="com.example"),
        ],
        "unloadable",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(np.ones((4, 2), dtype=np.float32), "W")],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", onnx_models.OPSET), helper.make_opsetid("com.example", 1)],
    )
    model.ir_version = 8
    path = repository / name / str(version) / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path.parent


def mismatched_version(repository: Path, name: str, version: int) -> Path:
    """A version whose graph disagrees with linear's config (5 input features, the config says 4)."""
    return onnx_models.linear(repository / name / str(version) / "model.onnx", in_shape=("batch", 5)).parent
