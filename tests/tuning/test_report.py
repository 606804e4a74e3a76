"""What `tune` writes: tune.json, measurements.csv and the winner's config.pbtxt, which the model
folder takes as it is (`tritonops repo validate` accepts it), and the uplift at the same budget."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil

import pytest
from google.protobuf import text_format

from tests.tuning.conftest import measured, served_config
from tritonops import errors
from tritonops.repository import config_generator
from tritonops.triton import client as triton_client
from tritonops.triton import onnx_models
from tritonops.tuning import report as tuning_report
from tritonops.tuning import search as tuning_search
from tritonops.tuning import space as tuning_space
from tritonops.tuning.measure import Failure, Measurement
from tritonops.tuning.space import Variant

# The small MLP (8 -> 16 -> 3) as the local runtime reports it.
SMALL_SERVED = """
name: "mlp"
platform: "onnxruntime_onnx"
backend: "onnxruntime"
runtime: "model.py"
version_policy { latest { num_versions: 1 } }
max_batch_size: 8
input [{ name: "input" data_type: TYPE_FP32 dims: [8] }]
output [{ name: "output" data_type: TYPE_FP32 dims: [3] }]
instance_group [{ name: "mlp_0" count: 1 kind: KIND_CPU }]
default_model_filename: "model.onnx"
optimization { input_pinned_memory { enable: true } output_pinned_memory { enable: true } }
"""
WINNER = Variant(4, True, 100, None, 2, "KIND_CPU")


def _outcome(space, results, budget=50.0):
    found = tuning_search.Search("quick", budget, tuple(results))
    return tuning_report.Outcome(
        "mlp", "replica 0", found, (16,), 10, notes=tuning_report.notes_for(found, space)
    )


def _baseline(space, throughput=100.0, p99=40.0):
    result = measured(space.baseline, throughput, p99)
    return Measurement(result.variant, result.points, baseline=True)


@pytest.fixture
def repository(tmp_path):
    """A repository with the small MLP and a generated config (max_batch_size 8, one instance)."""
    model_file = onnx_models.mlp(tmp_path / "models" / "mlp" / "1" / "model.onnx")
    options = config_generator.GenerateOptions(name="mlp", max_batch_size=8, instances=1)
    (tmp_path / "models" / "mlp" / "config.pbtxt").write_text(config_generator.generate(model_file, options))
    return tmp_path / "models"


@pytest.mark.parametrize(
    "from_file", [True, False], ids=["from-the-repository-config", "from-the-served-config"]
)
def test_the_winners_config_passes_repo_validate_in_the_model_folder(
    repository, tmp_path, run_cli, from_file
):
    space = tuning_space.build(served_config(SMALL_SERVED), concurrency=(16,), allow_smaller_batch=True)
    base = None
    if from_file:
        base = triton_client.ModelConfig()
        text_format.Parse((repository / "mlp" / "config.pbtxt").read_text(), base)
    outcome = _outcome(space, [_baseline(space), measured(WINNER, 300.0, 30.0)])
    written = tuning_report.write(outcome, tmp_path / "out", space, base)
    assert written.files["winner's config"] == str(tmp_path / "out" / "config.pbtxt")
    shutil.copy(tmp_path / "out" / "config.pbtxt", repository / "mlp" / "config.pbtxt")
    validated = run_cli("repo", "validate", str(repository))
    assert validated.returncode == 0, validated.stdout
    assert "0 error(s)" in validated.stdout
    served = triton_client.ModelConfig()
    text_format.Parse((repository / "mlp" / "config.pbtxt").read_text(), served)
    assert (served.max_batch_size, served.instance_group[0].count) == (4, 2)


def test_tune_json_and_the_csv_hold_every_measurement_in_order(tmp_path):
    space = tuning_space.build(served_config(), concurrency=(16,), allow_smaller_batch=True)
    failed = Failure(Variant(16, True, 0, None, 4, "KIND_CPU"), "load", "out of memory")
    results = [
        _baseline(space),
        failed,
        measured(WINNER, 300.0, 30.0),
        measured(Variant(8, True, 0), 400.0, 60.0),
    ]
    written = tuning_report.write(_outcome(space, results), tmp_path, space)
    document = json.loads((tmp_path / "tune.json").read_text())
    assert [r["variant"] for r in document["results"]] == [r.variant.as_dict() for r in results]
    assert document["results"][1]["failed"] == {"stage": "load", "reason": "out of memory"}
    assert document["winner"]["label"] == WINNER.label() and document["winner"]["within_budget"]
    assert document["uplift"] == 3.0 and written.uplift == pytest.approx(3.0)
    with (tmp_path / "measurements.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["status"] for row in rows] == ["measured", "failed load", "measured", "measured"]
    assert [row["within_budget"] for row in rows] == ["True", "", "True", "False"]
    assert rows[1]["reason"] == "out of memory"
    assert "uplift over the current config at the same budget: 3.00x" in written.describe()
    # The summary ends with the command that applies the winner through the promotion chain.
    assert f"tritonops promote {written.model} --config {tmp_path / 'config.pbtxt'}" in written.describe()


def test_no_variant_within_the_budget_writes_no_config(tmp_path):
    space = tuning_space.build(served_config(), concurrency=(16,), allow_smaller_batch=True)
    outcome = tuning_report.write(_outcome(space, [_baseline(space, p99=90.0)]), tmp_path, space)
    assert outcome.winner is None and outcome.uplift is None
    assert not (tmp_path / "config.pbtxt").exists()
    assert json.loads((tmp_path / "tune.json").read_text())["closest"]["p99_ms"] == 90.0


def test_a_baseline_over_budget_has_no_uplift_to_state(tmp_path):
    space = tuning_space.build(served_config(), concurrency=(16,), allow_smaller_batch=True)
    outcome = _outcome(space, [_baseline(space, p99=90.0), measured(WINNER, 300.0, 30.0)])
    assert outcome.winner is not None and outcome.uplift is None
    assert "the current config does not meet the budget" in outcome.describe()


def test_a_winner_with_a_smaller_max_batch_size_says_what_clients_lose():
    space = tuning_space.build(served_config(), concurrency=(16,), allow_smaller_batch=True)
    outcome = _outcome(space, [_baseline(space), measured(WINNER, 300.0, 30.0)])
    assert any("max_batch_size 4 is below the current 16" in note for note in outcome.notes)
    assert outcome.smaller_batch
    written = dataclasses.replace(outcome, files={tuning_report.WINNER_FILE: "out/config.pbtxt"})
    assert "`tritonops promote mlp --config out/config.pbtxt --allow-smaller-batch`" in written.describe()


def test_an_out_folder_with_files_tune_did_not_write_is_refused_untouched(tmp_path):
    """--out pointing at a model folder must never overwrite or remove its config.pbtxt."""
    (tmp_path / "config.pbtxt").write_text('name: "mlp"\n')
    with pytest.raises(
        errors.InputError,
        match=r"holds config\.pbtxt but no tune\.json, so tune did not write it \(a model folder\?\)",
    ):
        tuning_report.refuse_foreign_files(tmp_path)
    assert (tmp_path / "config.pbtxt").read_text() == 'name: "mlp"\n'
    (tmp_path / "tune.json").write_text("{}\n")
    tuning_report.refuse_foreign_files(tmp_path)  # an earlier run's folder: tune's own files
