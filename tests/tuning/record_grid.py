"""Record the exhaustive grid of `tune` on the MLP of bench/serving.py, for the search tests.

    cd $W && PYTHONPATH=$W/src .venv/bin/python -m tests.tuning.record_grid [OUTPUT.json]

Starts the local runtime (one replica, the real Triton, the MLP 512-2048-2048-2048-16 with
bench/serving.py's default config: max_batch_size 16, one CPU instance, no dynamic batching),
runs `tune --search exhaustive` through the library at concurrency 16 with real perf_analyzer
(1 s windows, p99 stabilisation in a 50 % band, at most 10 windows: two cores shared by client,
server and other work), and writes every measurement with the space it came from. The search
tests replay it: a search is a pure function of its measure(variant) callable.

Takes about ten minutes. Not a test: it measures, and tests never assert timings.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import serving

from tests.runtime.conftest import free_port_offset
from tritonops.repository import config_generator
from tritonops.runtime import control
from tritonops.triton import onnx_models
from tritonops.tuning import measure, run, search

DEFAULT_OUTPUT = Path(__file__).parent / "resources" / "mlp_grid.json"
MODEL = "mlp"
CONCURRENCY = (16,)
SETTINGS = measure.Settings(CONCURRENCY, interval_ms=1000, stability_percentage=50, max_trials=10)


def main(argv: list[str]) -> int:
    output = Path(argv[0]) if argv else DEFAULT_OUTPUT
    scratch = Path(tempfile.mkdtemp(prefix="tritonops-tune-grid-"))
    work_dir = scratch / "work"
    try:
        model_file = onnx_models.mlp(scratch / "models" / MODEL / "1" / "model.onnx", sizes=serving.SIZES)
        options = config_generator.GenerateOptions(
            name=MODEL, max_batch_size=16, instances=1
        )  # bench/serving.py's mlp_default
        (scratch / "models" / MODEL / "config.pbtxt").write_text(
            config_generator.generate(model_file, options)
        )
        current = control.up(
            "local",
            work_dir=work_dir,
            repository=scratch / "models",
            port_offset=free_port_offset(1),
            set_values=(
                f"server.loadModels={{{MODEL}}}",
                "server.committedState.enabled=false",
                "agent.enabled=false",
            ),
        )
        if not current.all_ready:
            print(control.logs(work_dir, None, 30))
            return 1
        target = run.local_target(work_dir, None, None, None)
        request = run.Request(
            MODEL,
            budget_ms=1e9,  # every measurement meets it: the tests judge the grid under their own budgets
            concurrency=CONCURRENCY,
            strategy=search.EXHAUSTIVE,
            out_dir=scratch / "out",
            settings=SETTINGS,
        )
        started = time.time()
        outcome = run.tune(request, target, say=lambda line: print(line, flush=True))
        document = json.loads((scratch / "out" / "tune.json").read_text())
    finally:
        control.down(work_dir)
    grid = {
        "note": (
            "Recorded by tests/tuning/record_grid.py: the exhaustive grid of `tritonops tune` on the MLP "
            f"{'-'.join(map(str, serving.SIZES))} of bench/serving.py (default config max_batch_size 16, "
            "1 CPU instance, no dynamic batching) served by the local runtime (Triton 2.51, the Python-based "
            "ONNX Runtime backend), measured with perf_analyzer over HTTP at concurrency 16, 1 s windows, "
            "p99 stabilisation in a 50 % band, at most 10 windows. Replayed by tests/tuning/test_search.py."
        ),
        "recorded": time.strftime("%Y-%m-%d", time.gmtime(started)),
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()[0]},
        "seconds": round(time.time() - started),
        "model": MODEL,
        "concurrency": list(CONCURRENCY),
        "settings": {
            "interval_ms": SETTINGS.interval_ms,
            "stability_percentage": SETTINGS.stability_percentage,
            "max_trials": SETTINGS.max_trials,
        },
        "original_config": json.loads((scratch / "out" / "original-config.json").read_text()),
        "results": document["results"],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(grid, indent=1) + "\n")
    print(f"{len(outcome.search.results)} measurements in {output}")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
