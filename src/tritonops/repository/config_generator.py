"""`repo gen-config`: a correct config.pbtxt from an ONNX graph, with the settings users start from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from tritonops import errors
from tritonops.repository import checksums, configs, signatures
from tritonops.repository.findings import FindingSink
from tritonops.triton import client as triton_client

CONFIG_FILE = "config.pbtxt"

# Triton's ONNX Runtime backend auto-completes batchable models with this max_batch_size.
AUTO_COMPLETE_MAX_BATCH_SIZE = 4
# A starting queue delay: long enough to form batches under load, short enough to go unnoticed.
START_QUEUE_DELAY_US = 100
# `--warmup`: the sample's name, and the size given to the graph's variable (-1) dims.
WARMUP_SAMPLE = "zeros_batch_1"
WARMUP_DIM = 1


@dataclass(frozen=True)
class GenerateOptions:
    name: str | None = None
    max_batch_size: int | None = None
    dynamic_batching: bool = False
    instances: int | None = None
    kind: str = "cpu"
    warmup: bool = False


def default_name(model_file: Path) -> str:
    """The model folder's name for `<model>/<version>/model.onnx`, else the file's stem."""
    parent = model_file.parent
    return parent.parent.name if parent.name.isdigit() else model_file.stem


@dataclass(frozen=True)
class Written:
    """Where `write_config` wrote, and the version_policy it kept from the config it replaced."""

    path: Path
    kept_version_policy: str | None = None


def write_config(
    model_file: Path, options: GenerateOptions, output: str | None, *, force: bool = False
) -> Written:
    """Generate a config and write it (with the usual file mode) to `output`: a file, a folder
    (its config.pbtxt) or None (the model folder's config.pbtxt). With `force`, an existing config
    is replaced, but its version_policy (a pin of the committed version) is carried over."""
    check_model_file(model_file)
    target = output_path(model_file, output)
    kept = None
    if target.exists():
        if not force:
            raise errors.InputError(f"{target}: exists; pass --force to overwrite it, or -o another path")
        kept = _existing_version_policy(target)
    text = generate(model_file, options, version_policy=kept)
    try:
        checksums.atomic_write(target, text)
    except OSError as error:
        raise errors.InputError(f"{target}: cannot write: {error.strerror or error}") from None
    kept_text = str(text_format.MessageToString(kept, as_one_line=True)) if kept is not None else None
    return Written(target, kept_text)


def output_path(model_file: Path, output: str | None) -> Path:
    """The file `-o` names: a folder means its config.pbtxt; no -o means the model folder's."""
    if output is None:
        if not model_file.parent.name.isdigit():
            raise errors.InputError(
                f"{model_file}: not inside <model>/<version>/; give -o PATH (or -o - for stdout)"
            )
        return model_file.parent.parent / CONFIG_FILE
    target = Path(output)
    if target.is_dir():
        target = target / CONFIG_FILE
        if target.is_dir():
            raise errors.InputError(f"-o {output}: {target} is a folder; give the config file's path")
    parent = target.parent
    if not parent.exists():
        raise errors.InputError(
            f"-o {output}: the folder {parent} does not exist; create it (mkdir -p {parent}) or give "
            "another path"
        )
    if not parent.is_dir():
        raise errors.InputError(f"-o {output}: {parent} is a file, not a folder; give another path")
    return target


def _existing_version_policy(target: Path) -> triton_client.ModelConfig | None:
    """The version_policy of the config about to be replaced; an InputError when that config
    cannot be read but may pin a version (a silently dropped pin loads the wrong version)."""
    parsed = configs.read_config(target, FindingSink())
    if parsed is not None:
        if parsed.config.HasField("version_policy"):
            kept = triton_client.ModelConfig()
            kept.version_policy.CopyFrom(parsed.config.version_policy)
            return kept
        return None
    try:
        text = target.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise errors.InputError(f"{target}: cannot read: {error.strerror or error}") from None
    if "version_policy" in text:
        raise errors.InputError(
            f"{target}: holds a version_policy but is not a valid config, so --force cannot carry the "
            "pin over; fix it (`tritonops repo validate` says where) or move it away first"
        )
    return None


def generate(
    model_file: Path,
    options: GenerateOptions,
    *,
    version_policy: triton_client.ModelConfig | None = None,
) -> str:
    """The text of a config.pbtxt for an ONNX model; bad options or an unreadable model raise InputError.

    `version_policy`, a config holding only a version_policy, is written as is (the pin of a
    config being replaced)."""
    check_model_file(model_file)
    try:
        signature = signatures.onnx_signature(model_file)
    except signatures.SignatureError as error:
        raise errors.InputError(f"{model_file}: {error}") from None
    batchable = all(t.dims and t.dims[0] == -1 for t in (*signature.inputs, *signature.outputs))
    max_batch_size = options.max_batch_size
    if max_batch_size is None:
        max_batch_size = AUTO_COMPLETE_MAX_BATCH_SIZE if batchable else 0
    _check_options(model_file, options, max_batch_size, batchable, signature)
    config = triton_client.ModelConfig(
        name=options.name or default_name(model_file),
        platform="onnxruntime_onnx",
        max_batch_size=max_batch_size,
    )
    for tensor in signature.inputs:
        config.input.add(
            name=tensor.name,
            data_type=triton_client.data_type_value(tensor.data_type),
            dims=_dims(tensor, max_batch_size),
        )
    for tensor in signature.outputs:
        config.output.add(
            name=tensor.name,
            data_type=triton_client.data_type_value(tensor.data_type),
            dims=_dims(tensor, max_batch_size),
        )
    if options.dynamic_batching:
        config.dynamic_batching.max_queue_delay_microseconds = START_QUEUE_DELAY_US
    if options.instances:
        kind = triton_client.ModelInstanceGroup.Kind.Value(f"KIND_{options.kind.upper()}")
        config.instance_group.add(count=options.instances, kind=kind)
    if version_policy is not None:
        config.version_policy.CopyFrom(version_policy.version_policy)
    if options.warmup:
        _add_warmup(config, signature, max_batch_size)
    header = f"# Generated by `tritonops repo gen-config` from {model_file.name}.\n"
    if options.dynamic_batching:
        header += "# Tune dynamic_batching.max_queue_delay_microseconds under real load (perf_analyzer).\n"
    if options.warmup:
        header += (
            "# model_warmup: each new version runs this sample before it reports ready, and a sample that\n"
            f"# fails fails the load. Variable dims are set to {WARMUP_DIM}: use a typical request's shape.\n"
        )
    if version_policy is not None:
        header += "# version_policy kept from the config this one replaced (the committed version's pin).\n"
    body = str(text_format.MessageToString(config))
    if max_batch_size == 0:
        # protobuf omits zero values; say it, since it decides how dims are read.
        body = body.replace(
            'platform: "onnxruntime_onnx"\n', 'platform: "onnxruntime_onnx"\nmax_batch_size: 0\n', 1
        )
    return header + body


def check_model_file(model_file: Path) -> None:
    """InputError unless `model_file` is an existing `.onnx` file; the message says which file to give."""
    wanted = "gen-config reads an .onnx model file"
    if model_file.is_dir():
        raise errors.InputError(f"{model_file}: is a folder; {wanted}{_suggest(model_file)}")
    if not model_file.exists():
        raise errors.InputError(f"{model_file}: no such file; {wanted}{_suggest(model_file.parent)}")
    if model_file.suffix.lower() != ".onnx":
        what = (
            "a Triton model config (.pbtxt)"
            if model_file.suffix == ".pbtxt"
            else f"a {model_file.suffix or 'suffix-less'} file"
        )
        raise errors.InputError(
            f"{model_file}: {what}, not an ONNX model; {wanted} and writes the config.pbtxt from its "
            f"graph{_suggest(model_file.parent)}"
        )


def _suggest(folder: Path) -> str:
    """The .onnx files at most two levels below `folder`, to name in the message, or an example path."""
    folder = next((f for f in (folder, *folder.parents) if f.is_dir()), Path("."))
    if folder.resolve() == Path(folder.resolve().anchor):
        return ", e.g. models/NAME/1/model.onnx"  # never search a whole file system
    try:
        found = sorted({*folder.glob("*.onnx"), *folder.glob("*/*.onnx"), *folder.glob("*/*/*.onnx")})
    except OSError:
        found = []
    if not found:
        return f" (none found in {folder}), e.g. models/NAME/1/model.onnx"
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return "; .onnx files there: " + ", ".join(str(path) for path in found[:3]) + more


def _check_options(
    model_file: Path,
    options: GenerateOptions,
    max_batch_size: int,
    batchable: bool,
    signature: signatures.Signature,
) -> None:
    unsupported = [
        t.name for t in (*signature.inputs, *signature.outputs) if not t.data_type.startswith("TYPE_")
    ]
    if unsupported:
        raise errors.InputError(f"{model_file}: tensors {unsupported} have element types Triton cannot serve")
    if max_batch_size < 0:
        raise errors.InputError("--max-batch-size: must be >= 0")
    if max_batch_size > 0 and not batchable:
        fixed = [
            f"{t.name} {t.shape_text()}"
            for t in (*signature.inputs, *signature.outputs)
            if not t.dims or t.dims[0] != -1
        ]
        raise errors.InputError(
            f"--max-batch-size {max_batch_size}: the model cannot batch, these tensors have a fixed first dim: "
            f"{', '.join(fixed)}; use --max-batch-size 0"
        )
    if options.dynamic_batching and max_batch_size == 0:
        raise errors.InputError("--dynamic-batching: needs a batchable model and --max-batch-size > 0")
    if options.instances is not None and options.instances < 1:
        raise errors.InputError("--instances: must be >= 1")
    if options.kind not in ("cpu", "gpu"):
        raise errors.InputError(f"--kind {options.kind!r}: use cpu or gpu")


def _add_warmup(
    config: triton_client.ModelConfig, signature: signatures.Signature, max_batch_size: int
) -> None:
    """One warmup sample, batch 1, holding every graph input with zeros.

    Zeros rather than `random_data`: Triton fills random_data with random bytes, which for an
    integer input is an arbitrary index (a Gather or an embedding lookup out of range fails the
    warmup, so the load) and for a float one can be NaN or inf; zeros are valid for every type
    (an empty string for BYTES) and give the same warmup on every replica. Variable dims (-1) take
    WARMUP_DIM, so the sample has the concrete shape Triton requires.
    """
    sample = config.model_warmup.add(name=WARMUP_SAMPLE, batch_size=1)
    for tensor in signature.inputs:
        entry = sample.inputs[tensor.name]
        entry.data_type = triton_client.data_type_value(tensor.data_type)
        entry.dims.extend(WARMUP_DIM if dim == -1 else dim for dim in _dims(tensor, max_batch_size))
        entry.zero_data = True


def _dims(tensor: signatures.Tensor, max_batch_size: int) -> list[int]:
    return list(tensor.dims[1:] if max_batch_size > 0 else tensor.dims)
