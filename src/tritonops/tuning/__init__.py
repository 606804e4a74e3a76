"""`tritonops tune`: find the serving config of one model that gives the most throughput within a
p99 budget, by measuring variants on a running Triton (loads with a config override, no restart)
and restoring the original config at the end, also on Ctrl-C or a failure.

    space      the variants a model allows (from its config and ONNX graph), as full configs
    measure    load a variant, run perf_analyzer, return a Measurement or a Failure
    search     exhaustive and quick, pure functions of a measure(variant) callable
    session    the checks before anything changes, and the restore guarantee (signals included)
    report     tune.json, measurements.csv, the winner's config.pbtxt, the uplift
    run        the command: check, measure, restore, write

It uses the Triton client, the repository (configs, ONNX signatures) and the local runtime (to
find its endpoint and key); the CLI calls it (tests/test_layering.py).
"""

from tritonops.tuning.run import Request, Target, local_target, tune

__all__ = ["Request", "Target", "local_target", "tune"]
