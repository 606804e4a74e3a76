"""The only module that imports tritonclient: Triton's ModelConfig protobuf (and, as the runtime
grows, the client calls). Everything else reaches Triton through here."""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2

ModelConfig = model_config_pb2.ModelConfig
DataType = model_config_pb2.DataType
ModelInstanceGroup = model_config_pb2.ModelInstanceGroup


def data_type_name(value: int) -> str:
    """`TYPE_FP32` for the enum value."""
    return str(model_config_pb2.DataType.Name(value))


def data_type_value(name: str) -> int:
    """The enum value for `TYPE_FP32`."""
    return int(model_config_pb2.DataType.Value(name))
