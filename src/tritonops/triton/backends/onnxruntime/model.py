"""A Triton Python-based backend that serves unmodified ONNX models with ONNX Runtime.

Triton picks this file up for every model whose config says `platform: "onnxruntime_onnx"` or
`backend: "onnxruntime"` when it sits at `<backend-directory>/onnxruntime/model.py`. It stands in for
NVIDIA's C++ ONNX Runtime backend, which the nvidia-pytriton wheel does not ship, and it is as strict:
the load fails when the config disagrees with the ONNX graph. The checks, the auto-complete and the
session options mirror triton-inference-server/onnxruntime_backend (src/onnxruntime.cc:
`ValidateInputs`, `ValidateOutputs`, `AutoCompleteConfig`, `AutoCompleteMaxBatch`, `AutoCompleteIO`,
the `ModelState` constructor; src/onnxruntime_utils.cc: `CompareDimsSupported`, the data type maps),
and the error texts follow theirs so a failure reads the same locally and in production.

It runs inside the Python backend stub, whose embedded interpreter ignores PYTHONPATH: it may import
only the standard library, numpy and onnxruntime, and puts PYTHONPATH on `sys.path` itself.
"""

from __future__ import annotations

import json
import os
import site
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _use_pythonpath() -> None:
    """Put PYTHONPATH (the server's venv site-packages) ahead of the system's dist-packages."""
    entries = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    missing = [entry for entry in dict.fromkeys(entries) if entry not in sys.path]
    sys.path[0:0] = missing
    for entry in missing:
        site.addsitedir(entry)  # runs the .pth files there; the entry itself is already on sys.path


_use_pythonpath()

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

# Triton core fills `default-max-batch-size` (4) into every backend's config; a Python-based backend
# cannot read it, so the value is fixed here.
DEFAULT_MAX_BATCH_SIZE = 4
DEFAULT_MODEL_FILENAME = "model.onnx"

# ONNX Runtime's type strings -> model config data types (OnnxDataTypeToModelConfigDataType).
ONNX_TO_CONFIG_TYPE = {
    "tensor(bool)": "TYPE_BOOL",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(uint16)": "TYPE_UINT16",
    "tensor(uint32)": "TYPE_UINT32",
    "tensor(uint64)": "TYPE_UINT64",
    "tensor(int8)": "TYPE_INT8",
    "tensor(int16)": "TYPE_INT16",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64",
    "tensor(float16)": "TYPE_FP16",
    "tensor(float)": "TYPE_FP32",
    "tensor(double)": "TYPE_FP64",
    "tensor(string)": "TYPE_STRING",
}
CONFIG_TYPES = frozenset(ONNX_TO_CONFIG_TYPE.values())
INVALID_TYPE = "TYPE_INVALID"

Array = npt.NDArray[Any]

GRAPH_LEVELS = {
    -1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    2: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}
TRUE_WORDS = frozenset({"true", "1", "on", "yes"})
FALSE_WORDS = frozenset({"false", "0", "off", "no"})


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output as the backend sees it: -1 marks a dynamic (symbolic or unknown) dim."""

    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class Completion:
    """What auto-complete adds to a config: only what the config left empty."""

    max_batch_size: int | None = None
    dynamic_batching: bool = False
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)


def model_error(message: str) -> Exception:
    """The exception Triton reports as the load failure (a plain ValueError outside the stub)."""
    exception_type: type[Exception] = getattr(pb_utils, "TritonModelException", ValueError)
    return exception_type(message)


def _log(level: str, message: str) -> None:
    """Log through Triton's logger when the stub provides one."""
    logger = getattr(pb_utils, "Logger", None)
    if logger is not None:
        getattr(logger, f"log_{level}")(message)


def shape_text(dims: Iterable[int]) -> str:
    """Triton's ShapeToString: `[-1,4]`."""
    return "[" + ",".join(str(dim) for dim in dims) + "]"


def _dims(values: Iterable[Any]) -> tuple[int, ...]:
    """Config dims arrive as ints or (int64 in protobuf JSON) strings."""
    return tuple(int(value) for value in values)


def tensor_infos(node_args: Sequence[Any]) -> dict[str, TensorInfo]:
    """Name, config data type and dims of ONNX Runtime's NodeArgs, in graph order."""
    infos: dict[str, TensorInfo] = {}
    for arg in node_args:
        if not str(arg.type).startswith("tensor("):
            raise model_error(
                f"Unsupported ONNX Type '{arg.type}' for I/O '{arg.name}', expected 'ONNX_TYPE_TENSOR'."
            )
        dims = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in (arg.shape or ()))
        infos[arg.name] = TensorInfo(arg.name, ONNX_TO_CONFIG_TYPE.get(arg.type, INVALID_TYPE), dims)
    return infos


def compare_dims(
    model: str,
    tensor: str,
    model_shape: Sequence[int],
    dims: Sequence[int],
    max_batch_size: int,
    *,
    exact: bool,
) -> None:
    """CompareDimsSupported: a graph dim of -1 matches any config dim unless `exact` (outputs)."""
    if max_batch_size > 0:
        if not model_shape or model_shape[0] != -1:
            raise model_error(
                f"model '{model}', tensor '{tensor}': for the model to support batching the shape should "
                "have at least 1 dimension and the first dimension must be -1; but shape expected by the "
                f"model is {shape_text(model_shape)}"
            )
        full_dims = [-1, *dims]
        if not _dims_match(model_shape, full_dims, exact=exact):
            raise model_error(
                f"model '{model}', tensor '{tensor}': the model expects {len(model_shape)} dimensions "
                f"(shape {shape_text(model_shape)}) but the model configuration specifies {len(full_dims)} "
                "dimensions (an initial batch dimension because max_batch_size > 0 followed by the "
                f"explicit tensor shape, making complete shape {shape_text(full_dims)})"
            )
    elif not _dims_match(model_shape, dims, exact=exact):
        raise model_error(
            f"model '{model}', tensor '{tensor}': the model expects {len(model_shape)} dimensions "
            f"(shape {shape_text(model_shape)}) but the model configuration specifies {len(dims)} "
            f"dimensions (shape {shape_text(dims)})"
        )


def _dims_match(model_shape: Sequence[int], dims: Sequence[int], *, exact: bool) -> bool:
    if len(model_shape) != len(dims):
        return False
    return all(
        model_dim == dim for model_dim, dim in zip(model_shape, dims, strict=True) if exact or model_dim != -1
    )


def _config_dims(io: Mapping[str, Any]) -> tuple[int, ...]:
    """The dims the model must have: the reshape when the config gives one."""
    reshape = io.get("reshape")
    if reshape is not None:
        return _dims(reshape.get("shape", ()))
    return _dims(io.get("dims", ()))


def _check_scalar(model: str, name: str, dims: Sequence[int]) -> None:
    if any(dim != 1 for dim in dims):
        raise model_error(
            f"unable to load model '{model}', scalar tensor '{name}', should only provide 1 in the model "
            "configuration when the model doesn't support batching. Model configuration provided: "
            f"{shape_text(dims)}."
        )


def _check_data_type(model: str, kind: str, name: str, config_type: str, info: TensorInfo) -> None:
    if config_type not in CONFIG_TYPES:
        raise model_error(f"unsupported datatype {config_type} for {kind} '{name}' for model '{model}'")
    if config_type != info.data_type:
        raise model_error(
            f"unable to load model '{model}', configuration expects datatype {config_type} for {kind} "
            f"'{name}', model provides {info.data_type}"
        )


def _unexpected(kind: str, name: str, allowed: Iterable[str]) -> Exception:
    return model_error(
        f"unexpected inference {kind} '{name}', allowed {kind}s are: {', '.join(sorted(allowed))}"
    )


def sequence_controls(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(tensor name, data type) of each sequence control input the config declares."""
    controls: list[tuple[str, str]] = []
    for control_input in config.get("sequence_batching", {}).get("control_input", []):
        for control in control_input.get("control", []):
            if control.get("kind") == "CONTROL_SEQUENCE_CORRID":
                data_type = str(control.get("data_type", INVALID_TYPE))
            elif control.get("fp32_false_true"):
                data_type = "TYPE_FP32"
            elif control.get("bool_false_true"):
                data_type = "TYPE_BOOL"
            else:
                data_type = "TYPE_INT32"
            controls.append((str(control_input["name"]), data_type))
    return controls


def _validate_controls(model: str, config: Mapping[str, Any], inputs: Mapping[str, TensorInfo]) -> None:
    """ValidateBooleanSequenceControl / ValidateTypedSequenceControl: the graph has it, dims [1]."""
    max_batch_size = int(config.get("max_batch_size", 0))
    for name, data_type in sequence_controls(config):
        info = inputs.get(name)
        if info is None:
            raise model_error(
                f"configuration specified sequence control '{name}', but model does not provide that input"
            )
        debatched = info.dims[1:] if max_batch_size > 0 else info.dims
        if debatched != (1,):
            raise model_error(
                f"unable to load model '{model}', sequence control '{name}' in model has dims "
                f"{shape_text(debatched)} but dims [1] is expected"
            )
        if data_type != info.data_type:
            raise model_error(
                f"unable to load model '{model}', sequence control '{name}', the model expects data-type "
                f"{info.data_type} but the model configuration specifies data-type {data_type}"
            )


def _expected_input_count(config: Mapping[str, Any]) -> int:
    """Required inputs the config accounts for: inputs (less optional ones), batch inputs, controls, states."""
    inputs = [io for io in config.get("input", []) if not io.get("optional", False)]
    states = config.get("sequence_batching", {}).get("state", [])
    return len(inputs) + len(config.get("batch_input", [])) + len(sequence_controls(config)) + len(states)


def validate_inputs(
    model: str,
    config: Mapping[str, Any],
    inputs: Mapping[str, TensorInfo],
    initializers: Mapping[str, TensorInfo],
) -> None:
    """ValidateInputs: the config's inputs against the graph's inputs and overridable initializers."""
    _validate_controls(model, config, inputs)
    expected = _expected_input_count(config)
    if len(inputs) != expected:
        named = {str(io["name"]) for io in config.get("input", [])}
        named |= {name for name, _ in sequence_controls(config)}
        missing = [name for name in inputs if name not in named]
        detail = f" (model inputs missing from the configuration: {', '.join(missing)})" if missing else ""
        raise model_error(
            f"unable to load model '{model}', configuration expects {expected} inputs, "
            f"model provides {len(inputs)}{detail}"
        )
    allowed = {**inputs, **initializers}
    max_batch_size = int(config.get("max_batch_size", 0))
    for io in config.get("input", []):
        name = str(io["name"])
        if io.get("optional", False) and max_batch_size != 0:
            raise model_error(
                f"unable to load model '{model}', optional input '{name}' is not supported for models "
                "that support batching"
            )
        info = allowed.get(name)
        if info is None:
            raise _unexpected("input", name, allowed)
        _check_data_type(model, "input", name, str(io.get("data_type", INVALID_TYPE)), info)
        dims = _config_dims(io)
        if io.get("allow_ragged_batch", False):
            if io.get("optional", False):
                raise model_error(
                    f"unable to load model '{model}', configuration expects model provides input with shape "
                    f"[-1] for ragged input '{name}', which is not supported for optional input"
                )
            if info.dims != (-1,):
                raise model_error(
                    f"unable to load model '{model}', configuration expects model provides input with shape "
                    f"[-1]  for ragged input '{name}', model provides {shape_text(info.dims)}"
                )
        elif info.dims:
            compare_dims(model, name, info.dims, dims, max_batch_size, exact=False)
        else:
            _check_scalar(model, name, dims)


def validate_outputs(model: str, config: Mapping[str, Any], outputs: Mapping[str, TensorInfo]) -> None:
    """ValidateOutputs: every config output exists in the graph with its type and exactly its dims."""
    batch_outputs = {
        str(target)
        for batch_output in config.get("batch_output", [])
        for target in batch_output.get("target_name", [])
    }
    max_batch_size = int(config.get("max_batch_size", 0))
    for io in config.get("output", []):
        name = str(io["name"])
        info = outputs.get(name)
        if info is None:
            raise _unexpected("output", name, outputs)
        _check_data_type(model, "output", name, str(io.get("data_type", INVALID_TYPE)), info)
        if name in batch_outputs:
            continue
        dims = _config_dims(io)
        if info.dims:
            compare_dims(model, name, info.dims, dims, max_batch_size, exact=True)
        else:
            _check_scalar(model, name, dims)


def _parameter(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get("parameters", {}).get(key)
    if value is None:
        return None
    return str(value.get("string_value", "")).strip()


def _int_parameter(config: Mapping[str, Any], key: str, default: int) -> int:
    text = _parameter(config, key)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise model_error(f"failed to convert '{key}' value '{text}' to an integer") from None


def _bool_parameter(config: Mapping[str, Any], key: str) -> bool | None:
    text = _parameter(config, key)
    if text is None:
        return None
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in FALSE_WORDS:
        return False
    raise model_error(f"failed to convert '{key}' value '{text}' to a boolean")


def session_options(config: Mapping[str, Any]) -> ort.SessionOptions:
    """SessionOptions from the config, with the keys and defaults of the real backend's ModelState."""
    options = ort.SessionOptions()
    level = int(config.get("optimization", {}).get("graph", {}).get("level", 0))
    options.graph_optimization_level = GRAPH_LEVELS.get(level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    execution_mode = _int_parameter(config, "execution_mode", 0)
    if execution_mode not in (0, 1):
        raise model_error(
            "Invalid configuration value provided. Expected values for  execution_mode are 0 or 1 but got "
            f"{execution_mode} ."
        )
    options.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if execution_mode else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    intra_op = _int_parameter(config, "intra_op_thread_count", 0)
    if intra_op > 0:
        options.intra_op_num_threads = intra_op
    inter_op = _int_parameter(config, "inter_op_thread_count", 0)
    if inter_op > 0:
        options.inter_op_num_threads = inter_op
    allocator_key = "session.use_device_allocator_for_initializers"
    if (allocator_value := _parameter(config, allocator_key)) is not None:
        options.add_session_config_entry(allocator_key, allocator_value)
    if (arena := _bool_parameter(config, "enable_mem_arena")) is not None:
        options.enable_cpu_mem_arena = arena
    if (pattern := _bool_parameter(config, "enable_mem_pattern")) is not None:
        options.enable_mem_pattern = pattern
    _check_cpu_accelerators(config)
    for library in config.get("model_operations", {}).get("op_library_filename", []):
        options.register_custom_ops_library(str(library))
    return options


def _check_cpu_accelerators(config: Mapping[str, Any]) -> None:
    """Only OpenVINO is a CPU accelerator in the real backend, and it is not available here."""
    accelerators = config.get("optimization", {}).get("execution_accelerators", {})
    for accelerator in accelerators.get("cpu_execution_accelerator", []):
        raise model_error(f"unknown Execution Accelerator '{accelerator.get('name', '')}' is requested")


def model_file(repository: str | Path, version: str | int, filename: str = "") -> Path:
    """`<model dir>/<version>/<default_model_filename or model.onnx>`; a directory holds model.onnx."""
    path = Path(repository) / str(version) / (filename or DEFAULT_MODEL_FILENAME)
    return path / DEFAULT_MODEL_FILENAME if path.is_dir() else path


def _autocomplete_model_file() -> Path:
    """The auto-complete call gets no repository path; the stub's first argument is the model file."""
    argv = Path("/proc/self/cmdline").read_bytes().split(b"\0")
    if len(argv) < 2 or not argv[1]:
        raise model_error("auto-complete cannot find the ONNX file: the stub got no model path")
    path = Path(os.fsdecode(argv[1]))
    return path / DEFAULT_MODEL_FILENAME if path.is_dir() else path


def open_session(path: Path, options: ort.SessionOptions, model: str) -> ort.InferenceSession:
    """Load the ONNX file on the CPU, failing the load the way the real backend does."""
    if not path.is_file():
        raise model_error(f"unable to find '{path}' for model instance '{model}'")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own Fail/InvalidGraph/... types
        raise model_error(f"unable to load model '{model}' from '{path}': {error}") from error


def _io_entry(info: TensorInfo, max_batch_size: int, model: str) -> dict[str, Any]:
    """AutoCompleteIO: drop the batch dim; a scalar gets dims [1] (and an empty reshape when batching)."""
    if info.data_type == INVALID_TYPE:
        raise model_error(
            f"autofill failed for model '{model}': tensor '{info.name}' has a type Triton cannot serve"
        )
    dims = list(info.dims[1:] if max_batch_size > 0 else info.dims)
    entry: dict[str, Any] = {"name": info.name, "data_type": info.data_type, "dims": dims or [1]}
    if not dims and max_batch_size > 0:
        entry["reshape"] = {"shape": []}
    return entry


def plan_completion(
    config: Mapping[str, Any],
    inputs: Mapping[str, TensorInfo],
    outputs: Mapping[str, TensorInfo],
    default_max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
) -> Completion:
    """AutoCompleteConfig + AutoCompleteMaxBatch + AutoCompleteIO, as a plan applied by the caller."""
    model = str(config.get("name", ""))
    max_batch_size = int(config.get("max_batch_size", 0))
    new_max_batch_size: int | None = None
    can_batch = all(info.dims and info.dims[0] == -1 for info in [*inputs.values(), *outputs.values()])
    if can_batch and max_batch_size == 0:
        max_batch_size = new_max_batch_size = max(default_max_batch_size, 0)
    elif not can_batch and max_batch_size != 0:
        raise model_error(
            f"autofill failed for model '{model}': model does not support batching while non-zero "
            "max_batch_size is specified"
        )
    scheduled = "sequence_batching" in config or "dynamic_batching" in config
    has_inputs = bool(config.get("input")) or bool(config.get("batch_input"))
    return Completion(
        max_batch_size=new_max_batch_size,
        dynamic_batching=can_batch and max_batch_size > 1 and not scheduled,
        inputs=[] if has_inputs else [_io_entry(info, max_batch_size, model) for info in inputs.values()],
        outputs=[]
        if config.get("output")
        else [_io_entry(info, max_batch_size, model) for info in outputs.values()],
    )


def _apply_completion(auto_complete_model_config: Any, completion: Completion) -> None:
    config = auto_complete_model_config.as_dict()
    if completion.max_batch_size is not None:
        auto_complete_model_config.set_max_batch_size(completion.max_batch_size)
        _log(
            "warn",
            f"autofilled max_batch_size to {completion.max_batch_size} for model '{config.get('name')}' since "
            "batching is supported but no max_batch_size is specified in model configuration",
        )
    if completion.dynamic_batching:
        auto_complete_model_config.set_dynamic_batching()
    # add_input/add_output reject `reshape`; as_dict() is the live config, so those entries go in directly.
    for key, entries, add in (
        ("input", completion.inputs, auto_complete_model_config.add_input),
        ("output", completion.outputs, auto_complete_model_config.add_output),
    ):
        for entry in entries:
            if "reshape" in entry:
                config.setdefault(key, []).append(entry)
            else:
                add(entry)


def validate_model(
    model: str,
    config: Mapping[str, Any],
    session: ort.InferenceSession,
) -> tuple[dict[str, TensorInfo], dict[str, TensorInfo], dict[str, TensorInfo]]:
    """Check the config against the session's graph; return its inputs, initializers and outputs."""
    inputs = tensor_infos(session.get_inputs())
    initializers = tensor_infos(session.get_overridable_initializers())
    outputs = tensor_infos(session.get_outputs())
    validate_inputs(model, config, inputs, initializers)
    validate_outputs(model, config, outputs)
    return inputs, initializers, outputs


def _to_onnx(array: Array) -> Array:
    """Triton hands BYTES as bytes objects; ONNX Runtime's string tensors want str."""
    if array.dtype != np.object_:
        return array
    decoded = [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in array.reshape(-1)]
    return np.array(decoded, dtype=np.object_).reshape(array.shape)


def _to_triton(array: Array) -> Array:
    if array.dtype != np.object_ and array.dtype.kind not in "US":
        return np.ascontiguousarray(array)
    encoded = [item.encode("utf-8") if isinstance(item, str) else bytes(item) for item in array.reshape(-1)]
    return np.array(encoded, dtype=np.object_).reshape(array.shape)


class RequestError(Exception):
    """A problem with one request: it gets an error response, the others still run."""


# One request's outputs (in config order), or why it failed.
Outcome = list[Array] | Exception


class TritonPythonModel:
    """The model instance Triton creates per `instance_group` entry."""

    @staticmethod
    def auto_complete_config(auto_complete_model_config: Any) -> Any:
        """Fill inputs, outputs and max_batch_size from the graph where the config left them empty."""
        config = auto_complete_model_config.as_dict()
        model = str(config.get("name", ""))
        has_inputs = bool(config.get("input")) or bool(config.get("batch_input"))
        if has_inputs and config.get("output"):
            _log(
                "info",
                f"skipping model configuration auto-complete for '{model}': inputs and outputs already specified",
            )
            return auto_complete_model_config
        quick = ort.SessionOptions()
        quick.intra_op_num_threads = 1
        session = open_session(_autocomplete_model_file(), quick, model)
        completion = plan_completion(
            config, tensor_infos(session.get_inputs()), tensor_infos(session.get_outputs())
        )
        _apply_completion(auto_complete_model_config, completion)
        return auto_complete_model_config

    def initialize(self, args: dict[str, str]) -> None:
        """Open the session and refuse a config that disagrees with the graph."""
        config = json.loads(args["model_config"])
        self.model = args["model_name"]
        path = model_file(
            args["model_repository"], args["model_version"], config.get("default_model_filename", "")
        )
        self.session = open_session(path, session_options(config), self.model)
        inputs, initializers, _ = validate_model(self.model, config, self.session)
        self.max_batch_size = int(config.get("max_batch_size", 0))
        # Everything execute() needs is settled here, once: it runs per batch of requests.
        self.input_names = frozenset([*inputs, *initializers])
        self.output_names = [str(io["name"]) for io in config.get("output", [])]
        # Scalar graph outputs take the config's dims when the model does not batch (the real
        # backend's scalar_outputs_); with batching the batch dim already gives them a shape.
        graph_outputs = tensor_infos(self.session.get_outputs())
        self.reshapes = (
            {}
            if self.max_batch_size > 0
            else {
                str(io["name"]): _config_dims(io)
                for io in config.get("output", [])
                if not graph_outputs[str(io["name"])].dims
            }
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        """Run a batch of requests: one ORT run for all when the model batches, else one per request."""
        outcomes: list[Outcome] = []
        ready: dict[int, dict[str, Array]] = {}
        for index, request in enumerate(requests):
            try:
                ready[index] = self._feeds(request)
                outcomes.append([])
            except RequestError as error:
                outcomes.append(error)
        batch = list(ready.values())
        if self.max_batch_size > 0 and len(batch) > 1 and _stackable(batch):
            ran = self._run_batched(batch)
        else:
            ran = [self._run(feeds) for feeds in batch]
        for index, outcome in zip(ready, ran, strict=True):
            outcomes[index] = outcome
        return [self._response(outcome) for outcome in outcomes]

    def finalize(self) -> None:
        """Drop the session so ONNX Runtime frees its memory before the stub exits."""
        self.session = None

    def _feeds(self, request: Any) -> dict[str, Array]:
        # One pass over the request's tensors (get_input_tensor_by_name scans them once per name);
        # as_numpy() is a view of Triton's shared memory, not a copy.
        feeds: dict[str, Array] = {}
        for tensor in request.inputs():
            name = tensor.name()
            if name in self.input_names and name not in feeds:
                feeds[name] = _to_onnx(tensor.as_numpy())
        if not feeds:
            raise RequestError(f"request for model '{self.model}' has none of the model's inputs")
        return feeds

    def _run(self, feeds: dict[str, Array]) -> Outcome:
        try:
            return list(self.session.run(self.output_names, feeds))
        except Exception as error:  # one request's bad data must not take the others down
            return error

    def _run_batched(self, batch: list[dict[str, Array]]) -> list[Outcome]:
        sizes = [int(next(iter(feeds.values())).shape[0]) for feeds in batch]
        stacked = {name: np.concatenate([feeds[name] for feeds in batch], axis=0) for name in batch[0]}
        outputs = self._run(stacked)
        if isinstance(outputs, Exception):
            return [outputs] * len(batch)
        total = sum(sizes)
        # Each request's rows as views of the batch output (np.split costs more than slicing).
        starts = [0]
        for size in sizes:
            starts.append(starts[-1] + size)
        split: list[list[Array]] = [[] for _ in batch]
        for name, output in zip(self.output_names, outputs, strict=True):
            if output.ndim == 0 or output.shape[0] != total:
                error = RequestError(
                    f"output '{name}' of model '{self.model}' has no batch dimension of {total}"
                )
                return [error] * len(batch)
            for index, parts in enumerate(split):
                parts.append(output[starts[index] : starts[index + 1]])
        return [*split]

    def _response(self, result: Outcome) -> Any:
        if isinstance(result, Exception):
            return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(result)))
        reshapes = self.reshapes
        tensors = [
            pb_utils.Tensor(name, _to_triton(array.reshape(reshapes[name]) if name in reshapes else array))
            for name, array in zip(self.output_names, result, strict=True)
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)


def _stackable(batch: list[dict[str, Array]]) -> bool:
    """Requests batch together when they carry the same inputs with the same per-item shapes."""
    first = batch[0]
    return all(
        feeds.keys() == first.keys()
        and all(
            feeds[name].ndim > 0
            and feeds[name].shape[1:] == first[name].shape[1:]
            and feeds[name].dtype == first[name].dtype
            for name in first
        )
        for feeds in batch
    )
