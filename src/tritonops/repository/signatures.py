"""The real signature of a model file: for ONNX, the graph's inputs and outputs (names, element
types, static and dynamic dims), read without loading weights into a runtime."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

# Protobuf cannot hold more than 2 GiB; larger models keep their weights in external data files.
MAX_ONNX_BYTES = 2**31 - 1

ONNX_TO_TRITON: dict[int, str] = {
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.BFLOAT16: "TYPE_BF16",
    onnx.TensorProto.DOUBLE: "TYPE_FP64",
    onnx.TensorProto.INT8: "TYPE_INT8",
    onnx.TensorProto.INT16: "TYPE_INT16",
    onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.UINT8: "TYPE_UINT8",
    onnx.TensorProto.UINT16: "TYPE_UINT16",
    onnx.TensorProto.UINT32: "TYPE_UINT32",
    onnx.TensorProto.UINT64: "TYPE_UINT64",
    onnx.TensorProto.BOOL: "TYPE_BOOL",
    onnx.TensorProto.STRING: "TYPE_STRING",
}


class SignatureError(Exception):
    """The model file cannot be read as the model its platform expects."""


@dataclass(frozen=True)
class Tensor:
    """A graph tensor: -1 marks a dynamic dimension (symbolic or unknown)."""

    name: str
    data_type: str
    dims: tuple[int, ...]

    def shape_text(self) -> str:
        return "[" + ", ".join(str(d) for d in self.dims) + "]"


@dataclass(frozen=True)
class Signature:
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    def input(self, name: str) -> Tensor | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> Tensor | None:
        return next((t for t in self.outputs if t.name == name), None)


def onnx_signature(path: Path) -> Signature:
    """Read an ONNX file's graph inputs (initializers excluded) and outputs."""
    model_file = path / "model.onnx" if path.is_dir() else path
    try:
        size = model_file.stat().st_size
    except OSError as error:
        raise SignatureError(f"cannot read: {error.strerror or error}") from None
    if size > MAX_ONNX_BYTES:
        raise SignatureError(
            f"{size} bytes exceeds protobuf's 2 GiB limit; export the model with external data "
            "(onnx.save(..., save_as_external_data=True))"
        )
    if size == 0:
        raise SignatureError("empty file; re-export the model")
    try:
        # Always binary protobuf, as Triton's ONNX Runtime backend reads it: onnx would otherwise
        # pick a text parser from the suffix (.pbtxt, .json, .txt) and raise its own errors.
        model = onnx.load(str(model_file), format="protobuf", load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as error:
        raise SignatureError(
            f"not a readable ONNX model ({type(error).__name__}: {error}); re-export it"
        ) from None
    graph = model.graph
    if not graph.output:
        raise SignatureError("not an ONNX model: no graph outputs (truncated or another format?)")
    initializers = {init.name for init in graph.initializer}
    inputs = tuple(_tensor(value) for value in graph.input if value.name not in initializers)
    return Signature(inputs, tuple(_tensor(value) for value in graph.output))


def _tensor(value: onnx.ValueInfoProto) -> Tensor:
    tensor_type = value.type.tensor_type
    data_type = ONNX_TO_TRITON.get(tensor_type.elem_type, f"ONNX type {tensor_type.elem_type}")
    dims = tuple(
        dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else -1
        for dim in tensor_type.shape.dim
    )
    return Tensor(value.name, data_type, dims)
