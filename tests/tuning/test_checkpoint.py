"""checkpoint.json: what a stopped run measured, read back only when this run would measure the
same way; and a search resumed from it walks as the uninterrupted one did, measuring only the rest."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.tuning.conftest import Replay, load_grid
from tritonops import errors
from tritonops.tuning import checkpoint, search
from tritonops.tuning import measure as tuning_measure


@pytest.fixture(scope="module")
def grid():
    return load_grid()


def _inputs(grid, **changes):
    inputs = checkpoint.Inputs(
        "mlp",
        grid.document["original_config"],
        (16,),
        tuning_measure.Settings((16,), interval_ms=1000, stability_percentage=50, max_trials=10),
    )
    return dataclasses.replace(inputs, **changes)


def test_a_search_resumed_from_its_checkpoint_walks_the_same_way_and_measures_only_the_rest(grid, tmp_path):
    budget = 45.0
    whole = search.quick(grid.space, grid.replay(), budget)
    stopped = search.quick(grid.space, grid.replay(), budget, max_measurements=5)
    checkpoint.write(tmp_path, _inputs(grid), list(stopped.results))

    recorded = checkpoint.by_variant(checkpoint.read(tmp_path, _inputs(grid)))
    server = grid.replay()
    resumed = search.quick(grid.space, lambda v: recorded[v] if v in recorded else server(v), budget)
    assert resumed.results == whole.results
    assert server.calls == [result.variant for result in whole.results[5:]]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            {"concurrency": (8,)},
            "recorded with concurrency 16, this run has 8; resume with the same --concurrency",
        ),
        ({"model": "other"}, "recorded with model mlp, this run has other; resume with the same MODEL"),
        (
            {
                "settings": tuning_measure.Settings(
                    (16,), interval_ms=500, stability_percentage=50, max_trials=10
                )
            },
            "measurement_interval_ms 1000, this run has 500; resume with the same --measurement-interval",
        ),
        ({"original_config": {"name": "mlp"}}, "does not run the config the interrupted run started from"),
        ({"versions": (1, 2)}, "versions none of mlp ready, now 1,2: its measurements are another model's"),
    ],
    ids=["concurrency", "model", "interval", "baseline", "versions"],
)
def test_a_checkpoint_measured_another_way_is_refused_naming_what_differs(grid, tmp_path, change, words):
    checkpoint.write(tmp_path, _inputs(grid), [grid.results[grid.space.baseline]])
    with pytest.raises(errors.InputError, match=r"checkpoint\.json: ") as refused:
        checkpoint.read(tmp_path, _inputs(grid, **change))
    assert words in str(refused.value)


@pytest.mark.parametrize(
    "text", ["{not json", '{"format": 1}', '{"format": 1, "inputs": {}, "results": [{}]}']
)
def test_an_unreadable_checkpoint_says_to_delete_it(grid, tmp_path, text):
    checkpoint.path(tmp_path).write_text(text)
    with pytest.raises(errors.InputError, match=r"not a checkpoint tune can read .*; delete it"):
        checkpoint.read(tmp_path, _inputs(grid))


def test_a_checkpoint_is_never_overwritten_by_a_fresh_run_and_resume_needs_one(grid, tmp_path):
    with pytest.raises(errors.InputError, match="there is no run to continue; run without --resume"):
        checkpoint.refuse_unless_resuming(tmp_path, resume=True)
    checkpoint.refuse_unless_resuming(tmp_path, resume=False)
    checkpoint.write(tmp_path, _inputs(grid), [])
    assert json.loads(checkpoint.path(tmp_path).read_text())["inputs"]["model"] == "mlp"
    with pytest.raises(errors.InputError, match="add --resume to continue it, or give another --out"):
        checkpoint.refuse_unless_resuming(tmp_path, resume=False)
    checkpoint.refuse_unless_resuming(tmp_path, resume=True)


def test_replay_answers_only_what_it_recorded(grid):
    """The fixture the resume test leans on fails loudly on a variant it does not hold."""
    with pytest.raises(KeyError):
        Replay({})(grid.space.baseline)
