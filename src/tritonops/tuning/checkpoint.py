"""The checkpoint of `tune` (`<out>/checkpoint.json`): every result so far, rewritten whole after
each measurement, so that a run cut short (Ctrl-C, SIGTERM, a lost port-forward, a crash, or
--max-measurements) continues with `--resume` instead of measuring again.

Resuming is sound because a search is a pure function of its measure(variant) answers
(tuning/search.py): the resumed run walks the same way and is answered from the checkpoint until it
reaches a variant not yet measured. A measurement is judged against the budget only afterwards, so
a resumed run may change --p99-budget, --search or --max-measurements; what a measurement depends
on may not change, and the checkpoint records it: the model and its ready versions, the config the
server ran before (the baseline), the concurrency levels, perf_analyzer's settings and the GPU memory budget.

A run that finishes its search removes the checkpoint (tune.json holds the results); one stopped
by --max-measurements keeps it, so a larger limit with --resume goes on from there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonops import errors
from tritonops.repository import checksums
from tritonops.tuning import measure as tuning_measure
from tritonops.tuning.measure import Result, result_as_dict, result_from_dict
from tritonops.tuning.space import Variant

CHECKPOINT_FILE = "checkpoint.json"
FORMAT = 1


@dataclass(frozen=True)
class Inputs:
    """What every recorded measurement depends on; a resume must match it field by field."""

    model: str
    original_config: dict[str, Any]
    concurrency: tuple[int, ...]
    settings: tuning_measure.Settings
    # The versions the server had ready: a new version under a `latest` policy is another model.
    versions: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        settings = self.settings
        return {
            "model": self.model,
            "versions": list(self.versions),
            "concurrency": list(self.concurrency),
            "measurement_interval_ms": settings.interval_ms,
            "stability_percentage": settings.stability_percentage,
            "max_trials": settings.max_trials,
            "shapes": list(settings.shapes),
            "gpu_memory_budget": settings.gpu_memory_budget,
            "original_config": self.original_config,
        }


# The flag to keep the same when a field of the checkpoint differs from this run's.
FLAGS = {
    "model": "MODEL",
    "concurrency": "--concurrency",
    "measurement_interval_ms": "--measurement-interval",
    "stability_percentage": "--stability-percentage",
    "max_trials": "--max-trials",
    "shapes": "the model's input shapes",
    "gpu_memory_budget": "--gpu-memory-budget",
}


def path(out_dir: Path) -> Path:
    return out_dir / CHECKPOINT_FILE


def write(out_dir: Path, inputs: Inputs, results: list[Result]) -> None:
    """Replace the checkpoint with `results` (whole or not at all)."""
    document = {
        "format": FORMAT,
        "inputs": inputs.as_dict(),
        "results": [result_as_dict(result) for result in results],
    }
    checksums.atomic_write(path(out_dir), json.dumps(document, indent=1) + "\n")


def remove(out_dir: Path) -> None:
    path(out_dir).unlink(missing_ok=True)


def refuse_unless_resuming(out_dir: Path, resume: bool) -> None:
    """Before the server is asked anything: --resume needs a checkpoint, and a checkpoint is never
    overwritten by a fresh run."""
    found = path(out_dir)
    if resume and not found.is_file():
        raise errors.InputError(
            f"--resume: {found} does not exist, so there is no run to continue; run without --resume "
            "(or give the --out of the interrupted run)"
        )
    if not resume and found.is_file():
        raise errors.InputError(
            f"--out {out_dir}: {found.name} holds the measurements of a run that did not finish; add "
            "--resume to continue it, or give another --out (or delete the file) to start over"
        )


def read(out_dir: Path, inputs: Inputs) -> list[Result]:
    """The recorded results, in the order measured, after checking they were measured as this
    run would measure them."""
    found = path(out_dir)
    try:
        document = json.loads(found.read_text(encoding="utf-8"))
        recorded = document["inputs"]
        results = [result_from_dict(entry) for entry in document["results"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise errors.InputError(
            f"{found}: not a checkpoint tune can read ({type(error).__name__}: {error}); delete it "
            "(or give another --out) and run without --resume"
        ) from None
    if document.get("format") != FORMAT:
        raise errors.InputError(
            f"{found}: checkpoint format {document.get('format')!r}, this tune writes {FORMAT}; "
            "delete it and run without --resume"
        )
    _check_same(found, recorded, inputs.as_dict())
    return results


def by_variant(results: list[Result]) -> dict[Variant, Result]:
    return {result.variant: result for result in results}


def _check_same(found: Path, recorded: dict[str, Any], current: dict[str, Any]) -> None:
    if recorded.get("versions") != current["versions"]:
        raise errors.InputError(
            f"{found}: recorded while the server had versions {_shown(recorded.get('versions'))} of "
            f"{current['model']} ready, now {_shown(current['versions'])}: its measurements are another "
            "model's; give another --out to start over"
        )
    for name, flag in FLAGS.items():
        if recorded.get(name) != current[name]:
            raise errors.InputError(
                f"{found}: recorded with {name} {_shown(recorded.get(name))}, this run has "
                f"{_shown(current[name])}; resume with the same {flag}, or give another --out to start over"
            )
    if recorded.get("original_config") != current["original_config"]:
        raise errors.InputError(
            f"{found}: the server does not run the config the interrupted run started from (its "
            "baseline); if a tuning variant is still loaded, load the original back (see "
            "restore-request.json beside it), else give another --out to start over"
        )


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(item) for item in value) or "none"
    return str(value)
