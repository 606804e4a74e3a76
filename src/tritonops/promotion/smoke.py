"""The smoke check of one loaded version on one replica: that exact version is ready, and an inference
addressed to it answers with the outputs its config declares (names, shapes, data types), all finite;
with a golden file, equal to the stored outputs within a tolerance.

Inputs are built from the config the replica serves (seeded, batch 1, a -1 dim becomes 1) unless the
golden file brings its own: an npz with `input:<name>` and `output:<name>` arrays.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonops import errors
from tritonops.triton import client as triton_client

DEFAULT_RTOL = 1e-5
DEFAULT_ATOL = 1e-6
SEED = 0
INPUT_PREFIX, OUTPUT_PREFIX = "input:", "output:"

# Triton's config data types as numpy dtypes. TYPE_BF16 has none, so a BF16 tensor is refused with
# that reason rather than checked with the wrong type.
DTYPES: dict[str, np.dtype[Any]] = {
    "TYPE_BOOL": np.dtype(np.bool_),
    "TYPE_UINT8": np.dtype(np.uint8),
    "TYPE_UINT16": np.dtype(np.uint16),
    "TYPE_UINT32": np.dtype(np.uint32),
    "TYPE_UINT64": np.dtype(np.uint64),
    "TYPE_INT8": np.dtype(np.int8),
    "TYPE_INT16": np.dtype(np.int16),
    "TYPE_INT32": np.dtype(np.int32),
    "TYPE_INT64": np.dtype(np.int64),
    "TYPE_FP16": np.dtype(np.float16),
    "TYPE_FP32": np.dtype(np.float32),
    "TYPE_FP64": np.dtype(np.float64),
    "TYPE_STRING": np.dtype(np.object_),
}


@dataclass(frozen=True)
class Golden:
    """Stored inputs and the outputs they must produce (from `--golden FILE`)."""

    path: Path
    inputs: dict[str, np.ndarray[Any, Any]]
    outputs: dict[str, np.ndarray[Any, Any]]
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL


@dataclass(frozen=True)
class Smoke:
    """What one smoke check saw: the outputs' shapes by name, whether a golden file was compared."""

    replica: str
    model: str
    version: int
    outputs: dict[str, list[int]]
    golden: bool
    seconds: float
    not_inferred: str = ""  # why no smoke inference was sent (the model is not called that way)

    def describe(self) -> str:
        if self.not_inferred:
            return f"version {self.version} ready; no smoke inference: {self.not_inferred}"
        shapes = ", ".join(f"{name}{shape}" for name, shape in sorted(self.outputs.items()))
        return f"version {self.version} ready, outputs {shapes} finite" + (
            ", equal to the golden outputs" if self.golden else ""
        )


def load_golden(path: Path, *, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> Golden:
    """Read `--golden FILE`; InputError naming the file and what is wrong with it."""
    if rtol < 0 or atol < 0:
        raise errors.InputError(f"--rtol {rtol} / --atol {atol}: tolerances must be >= 0")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: np.asarray(archive[key]) for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise errors.InputError(f"--golden {path}: not a readable .npz file ({error})") from error
    inputs = {
        key[len(INPUT_PREFIX) :]: array for key, array in arrays.items() if key.startswith(INPUT_PREFIX)
    }
    outputs = {
        key[len(OUTPUT_PREFIX) :]: array for key, array in arrays.items() if key.startswith(OUTPUT_PREFIX)
    }
    strays = sorted(key for key in arrays if not key.startswith((INPUT_PREFIX, OUTPUT_PREFIX)))
    if strays or not inputs or not outputs:
        raise errors.InputError(
            f"--golden {path}: needs arrays named input:<name> and output:<name> (at least one of each)"
            + (f"; found {', '.join(strays)}" if strays else "")
        )
    return Golden(Path(path), inputs, outputs, rtol, atol)


def inputs_for(config: Any, *, seed: int = SEED) -> dict[str, np.ndarray[Any, Any]]:
    """One request's inputs for a ModelConfig: batch 1 when the model batches, -1 dims as 1, seeded
    values (normal floats, small non-negative integers, so that index inputs stay in range)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for tensor in config.input:
        dtype = _dtype(tensor.data_type, f"input {tensor.name}")
        shape = ([1] if config.max_batch_size > 0 else []) + [
            1 if dim < 0 else int(dim) for dim in tensor.dims
        ]
        if dtype.kind == "f":
            arrays[tensor.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            arrays[tensor.name] = rng.integers(0, 4, size=shape).astype(dtype)
        elif dtype.kind == "b":
            arrays[tensor.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            arrays[tensor.name] = np.full(shape, b"tritonops", dtype=np.object_)
    return arrays


def _dtype(data_type: int, what: str) -> np.dtype[Any]:
    name = triton_client.data_type_name(data_type)
    if name not in DTYPES:
        raise errors.VerificationFailed(f"{what}: data type {name} has no numpy equivalent to check it with")
    return DTYPES[name]


def run(
    client: triton_client.Client,
    model: str,
    version: int,
    *,
    replica: str | None = None,
    golden: Golden | None = None,
    seed: int = SEED,
) -> Smoke:
    """Check `model` version `version` on the replica behind `client`; VerificationFailed says why not."""
    where = replica or client.address
    started = time.monotonic()
    if not client.model_ready(model, version):
        raise errors.VerificationFailed(f"{model} version {version} on {where}: not ready")
    config = client.model_config(model, version)
    calling = _not_one_plain_request(config)
    if calling:
        if golden:
            raise errors.VerificationFailed(
                f"{model} version {version} on {where}: --golden cannot be checked: {calling}"
            )
        return Smoke(where, model, version, {}, False, time.monotonic() - started, not_inferred=calling)
    inputs = golden.inputs if golden else inputs_for(config, seed=seed)
    try:
        outputs = client.infer(model, inputs, version=version)
    except errors.TritonRequestError as error:
        raise errors.VerificationFailed(
            f"{model} version {version} on {where}: inference failed: {error}"
        ) from error
    batch = next(iter(inputs.values())).shape[0] if config.max_batch_size > 0 and inputs else None
    problems = _output_problems(config, outputs, batch)
    if golden:
        problems += _golden_problems(golden, outputs)
    if problems:
        raise errors.VerificationFailed(f"{model} version {version} on {where}: " + "; ".join(problems))
    return Smoke(
        where,
        model,
        version,
        {name: list(array.shape) for name, array in outputs.items()},
        golden is not None,
        time.monotonic() - started,
    )


def _not_one_plain_request(config: Any) -> str:
    """Why one plain request is not how this model is called (then only readiness is checked), or "".

    A decoupled model answers on a stream, and a sequence-batched one expects correlation IDs and
    start/end flags: a plain request would fail or prove nothing, and would fail every restore of a
    healthy replica as well."""
    if config.model_transaction_policy.decoupled:
        return "the model is decoupled (it answers on a stream); only its readiness was checked"
    if config.HasField("sequence_batching"):
        return "the model is sequence-batched (it expects sequence IDs); only its readiness was checked"
    return ""


def _output_problems(
    config: Any, outputs: Mapping[str, np.ndarray[Any, Any]], batch: int | None
) -> list[str]:
    problems = []
    for tensor in config.output:
        array = outputs.get(tensor.name)
        if array is None:
            problems.append(f"output {tensor.name} missing (got {', '.join(sorted(outputs)) or 'none'})")
            continue
        expected = ([batch] if batch is not None else []) + [int(dim) for dim in tensor.dims]
        if len(array.shape) != len(expected) or any(
            want >= 0 and got != want for got, want in zip(array.shape, expected, strict=True)
        ):
            problems.append(
                f"output {tensor.name} has shape {list(array.shape)}, the config declares {expected}"
            )
        dtype = _dtype(tensor.data_type, f"output {tensor.name}")
        if array.dtype != dtype and not (dtype.kind == "O" and array.dtype.kind in "OSU"):
            problems.append(
                f"output {tensor.name} is {array.dtype}, the config declares "
                f"{triton_client.data_type_name(tensor.data_type)}"
            )
        elif array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int(np.size(array) - np.isfinite(array).sum())
            problems.append(f"output {tensor.name} has {bad} non-finite value(s) (NaN or Inf)")
    return problems


def _golden_problems(golden: Golden, outputs: Mapping[str, np.ndarray[Any, Any]]) -> list[str]:
    problems = []
    for name, want in sorted(golden.outputs.items()):
        got = outputs.get(name)
        if got is None:
            problems.append(f"golden output {name} was not returned")
        elif got.shape != want.shape:
            problems.append(f"output {name} has shape {list(got.shape)}, the golden file {list(want.shape)}")
        elif want.dtype.kind in "fc":
            if not np.allclose(got, want, rtol=golden.rtol, atol=golden.atol):
                worst = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
                problems.append(
                    f"output {name} differs from {golden.path.name} (max |diff| {worst:.3g}, "
                    f"rtol {golden.rtol:g}, atol {golden.atol:g})"
                )
        elif not np.array_equal(got, want):
            problems.append(f"output {name} differs from {golden.path.name}")
    return problems
