"""The smoke check on a real Triton: the exact version ready, declared outputs with their shapes and
types, finite values, and golden outputs within a tolerance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritonops import errors
from tritonops.promotion import smoke
from tritonops.triton import client as triton_client


def golden_file(tmp_path: Path, client: triton_client.Client, model: str, **outputs: np.ndarray) -> Path:
    """A golden file holding the smoke inputs of `model`'s config and the given outputs."""
    inputs = smoke.inputs_for(client.model_config(model, 1))
    path = tmp_path / "golden.npz"
    np.savez(
        path,
        **{f"input:{k}": v for k, v in inputs.items()},
        **{f"output:{k}": v for k, v in outputs.items()},
    )
    return path


def test_inputs_follow_the_config_batch_one_and_are_seeded(client):
    config = client.model_config("linear", 1)
    first, again = smoke.inputs_for(config), smoke.inputs_for(config)
    assert list(first) == ["input"] and first["input"].shape == (1, 4) and first["input"].dtype == np.float32
    assert np.array_equal(first["input"], again["input"])
    assert not np.array_equal(first["input"], smoke.inputs_for(config, seed=1)["input"])
    ints = smoke.inputs_for(client.model_config("ints", 1))
    assert ints["ids"].dtype == np.int64 and ints["ids"].shape == (1, 5)


@pytest.mark.parametrize("model", ["linear", "ints"])
def test_a_good_version_passes_naming_its_outputs(client, model):
    result = smoke.run(client, model, 1, replica="r0")
    expected = {"linear": {"output": [1, 2]}, "ints": {"doubled": [1, 5], "positive": [1, 5]}}[model]
    assert result.outputs == expected and not result.golden
    assert result.replica == "r0" and result.describe().startswith("version 1 ready, outputs")


@pytest.mark.parametrize(
    ("model", "version", "words"),
    [
        ("linear", 2, "linear version 2 on r0: not ready"),
        ("infinite", 1, "output output has 2 non-finite value(s)"),
        ("wrong_shape", 1, "output OUT has shape [4], the config declares [2]"),
        ("wrong_type", 1, "output OUT is int32, the config declares TYPE_FP32"),
        ("missing_output", 1, "output EXTRA missing (got OUT)"),
    ],
    ids=["not-loaded", "non-finite", "shape", "type", "missing"],
)
def test_a_wrong_answer_fails_naming_what_is_wrong(client, model, version, words):
    with pytest.raises(errors.VerificationFailed) as raised:
        smoke.run(client, model, version, replica="r0")
    assert words in str(raised.value)


@pytest.mark.parametrize(("model", "words"), [("streaming", "decoupled"), ("stateful", "sequence-batched")])
def test_a_model_not_called_by_one_plain_request_is_checked_for_readiness_only(
    client, tmp_path, model, words
):
    result = smoke.run(client, model, 1, replica="r0")
    assert result.outputs == {} and words in result.not_inferred
    assert result.describe().startswith(f"version 1 ready; no smoke inference: the model is {words}")
    golden = golden_file(tmp_path, client, model, OUT=np.zeros(2, dtype=np.float32))
    with pytest.raises(errors.VerificationFailed, match=f"--golden cannot be checked: the model is {words}"):
        smoke.run(client, model, 1, golden=smoke.load_golden(golden))


def test_golden_outputs_compare_within_the_tolerance(client, tmp_path):
    inputs = smoke.inputs_for(client.model_config("linear", 1))
    expected = client.infer("linear", inputs, version=1)["output"]
    path = golden_file(tmp_path, client, "linear", output=expected + np.float32(1e-4))
    assert smoke.run(client, "linear", 1, golden=smoke.load_golden(path, atol=1e-3)).golden
    with pytest.raises(
        errors.VerificationFailed, match=r"output output differs from golden.npz \(max \|diff\|"
    ):
        smoke.run(client, "linear", 1, golden=smoke.load_golden(path, atol=1e-6))
    # The same inputs on another model that computes something else: refused.
    with pytest.raises(errors.VerificationFailed, match=r"scaled version 1 on .*differs from golden\.npz"):
        smoke.run(client, "scaled", 1, golden=smoke.load_golden(path, atol=1e-3))


@pytest.mark.parametrize(
    ("arrays", "words"),
    [
        (None, "not a readable .npz file"),
        ({"output:output": np.zeros((1, 2))}, "needs arrays named input:<name> and output:<name>"),
        ({"input:input": np.zeros((1, 4)), "output:o": np.zeros(1), "x": np.zeros(1)}, "found x"),
    ],
    ids=["not-npz", "no-inputs", "stray-array"],
)
def test_a_bad_golden_file_is_refused_naming_it(tmp_path, arrays, words):
    path = tmp_path / "golden.npz"
    if arrays is None:
        path.write_text("not a zip")
    else:
        np.savez(path, **arrays)
    with pytest.raises(errors.InputError, match=f"--golden {path}") as raised:
        smoke.load_golden(path)
    assert words in str(raised.value)
