"""Small ONNX models built with the `onnx` package, deterministically (fixed seeds): the sample
repository, the benchmarks and the tests use them."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # readable by every onnxruntime we pin
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _weights(shape: Sequence[int], seed: int) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def linear(
    path: Path,
    *,
    in_shape: Sequence[int | str] = ("batch", 4),
    out_features: int = 2,
    names: tuple[str, str] = ("input", "output"),
) -> Path:
    """Y = X @ W + b; the first dim is symbolic (`batch`) unless in_shape fixes it."""
    in_features = int(in_shape[-1])
    out_shape = [*in_shape[:-1], out_features]
    weight = numpy_helper.from_array(_weights((in_features, out_features), 1), "W")
    bias = numpy_helper.from_array(_weights((out_features,), 2), "b")
    nodes = [
        helper.make_node("MatMul", [names[0], "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], [names[1]]),
    ]
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info(names[0], TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info(names[1], TensorProto.FLOAT, out_shape)],
        [weight, bias],
    )
    return _save(graph, path)


def mlp(path: Path, sizes: Sequence[int] = (8, 16, 3)) -> Path:
    """Dense -> ReLU layers; input [batch, sizes[0]], output [batch, sizes[-1]]."""
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    current = "input"
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        inits += [numpy_helper.from_array(_weights((fan_in, fan_out), 10 + index), f"W{index}")]
        out = "output" if index == len(sizes) - 2 else f"h{index}"
        nodes.append(
            helper.make_node(
                "MatMul", [current, f"W{index}"], [out if index == len(sizes) - 2 else f"m{index}"]
            )
        )
        if index != len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [f"m{index}"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", sizes[-1]])],
        inits,
    )
    return _save(graph, path)


def conv(path: Path, image: int = 224) -> Path:
    """A small conv net on NCHW images: input [batch, 3, H, W] -> output [batch, 4] (global pooled)."""
    weight = numpy_helper.from_array(_weights((4, 3, 3, 3), 20), "K")
    nodes = [
        helper.make_node("Conv", ["image", "K"], ["features"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["features"], ["activated"]),
        helper.make_node("GlobalAveragePool", ["activated"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, image, image])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 4])],
        [weight],
    )
    return _save(graph, path)


def resnet_like(path: Path, image: int = 32, channels: int = 16, blocks: int = 2, classes: int = 10) -> Path:
    """A small ResNet-style classifier on NCHW images: a 3x3 conv stem, `blocks` residual blocks
    (conv-relu-conv, plus the block's input, relu), global average pooling and a dense layer.
    Input `image` [batch, 3, image, image] -> output `logits` [batch, classes]. With the defaults
    (CIFAR-sized) about 24 MFLOP per image, comparable to the serving bench's MLP."""
    inits = [numpy_helper.from_array(_weights((channels, 3, 3, 3), 30) * 0.2, "stem_w")]
    nodes = [
        helper.make_node("Conv", ["image", "stem_w"], ["stem"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["stem"], ["x0"]),
    ]
    for block in range(blocks):
        first, second = f"b{block}_w1", f"b{block}_w2"
        inits += [
            numpy_helper.from_array(_weights((channels, channels, 3, 3), 31 + 2 * block) * 0.1, first),
            numpy_helper.from_array(_weights((channels, channels, 3, 3), 32 + 2 * block) * 0.1, second),
        ]
        source = f"x{block}"
        nodes += [
            helper.make_node("Conv", [source, first], [f"b{block}_c1"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"b{block}_c1"], [f"b{block}_r1"]),
            helper.make_node("Conv", [f"b{block}_r1", second], [f"b{block}_c2"], pads=[1, 1, 1, 1]),
            helper.make_node("Add", [f"b{block}_c2", source], [f"b{block}_sum"]),
            helper.make_node("Relu", [f"b{block}_sum"], [f"x{block + 1}"]),
        ]
    inits.append(numpy_helper.from_array(_weights((channels, classes), 40), "fc_w"))
    nodes += [
        helper.make_node("GlobalAveragePool", [f"x{blocks}"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"]),
        helper.make_node("MatMul", ["features", "fc_w"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "resnet_like",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, image, image])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    return _save(graph, path)


def dynamic_sequence(path: Path) -> Path:
    """Dynamic non-batch dims: tokens [batch, seq, 8] -> summed [batch, 8] (reduce over seq)."""
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    nodes = [helper.make_node("ReduceSum", ["tokens", "axes"], ["summed"], keepdims=0)]
    graph = helper.make_graph(
        nodes,
        "sequence",
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", "seq", 8])],
        [helper.make_tensor_value_info("summed", TensorProto.FLOAT, ["batch", 8])],
        [axes],
    )
    return _save(graph, path)


def two_inputs(path: Path) -> Path:
    """sum = a + b, diff = a - b over [batch, 3]."""
    nodes = [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Sub", ["a", "b"], ["diff"])]
    graph = helper.make_graph(
        nodes,
        "two_inputs",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 3]) for n in ("a", "b")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 3]) for n in ("sum", "diff")],
    )
    return _save(graph, path)


def int64_bool(path: Path) -> Path:
    """ids INT64 [batch, 5] -> doubled INT64 [batch, 5], positive BOOL [batch, 5]."""
    two = numpy_helper.from_array(np.array(2, dtype=np.int64), "two")
    zero = numpy_helper.from_array(np.array(0, dtype=np.int64), "zero")
    nodes = [
        helper.make_node("Mul", ["ids", "two"], ["doubled"]),
        helper.make_node("Greater", ["ids", "zero"], ["positive"]),
    ]
    graph = helper.make_graph(
        nodes,
        "int64_bool",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 5])],
        [
            helper.make_tensor_value_info("doubled", TensorProto.INT64, ["batch", 5]),
            helper.make_tensor_value_info("positive", TensorProto.BOOL, ["batch", 5]),
        ],
        [two, zero],
    )
    return _save(graph, path)


def compute_heavy(path: Path, size: int = 1024) -> Path:
    """Tiny tensors, real work: x [batch, 1] is expanded to [batch, size, size], multiplied by itself
    (size^3 multiply-adds per item) and averaged to [batch, 1]. Server time dominates latency."""
    shape = numpy_helper.from_array(np.array([-1, 1, 1], dtype=np.int64), "to_cube")
    target = numpy_helper.from_array(np.array([1, size, size], dtype=np.int64), "cube")
    nodes = [
        helper.make_node("Reshape", ["input", "to_cube"], ["point"]),
        helper.make_node("Expand", ["point", "cube"], ["matrix"]),
        helper.make_node("MatMul", ["matrix", "matrix"], ["product"]),
        helper.make_node("ReduceMean", ["product"], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("Unsqueeze", ["mean", "axes_one"], ["output"]),
    ]
    axes_one = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes_one")
    graph = helper.make_graph(
        nodes,
        "compute_heavy",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1])],
        [shape, target, axes_one],
    )
    return _save(graph, path)


# Every builder by name, each called with just a path (the tests' and benchmarks' model zoo).
BUILDERS: dict[str, Callable[[Path], Path]] = {
    "linear": linear,
    "mlp": mlp,
    "conv": conv,
    "sequence": dynamic_sequence,
    "two_inputs": two_inputs,
    "int64_bool": int64_bool,
}
