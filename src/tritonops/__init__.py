"""tritonops: render and gate the Triton chart, and prove it on the real server.

The package's folders are its layers; data flows one way, top to bottom, and nothing imports the CLI:

    cli                 thin commands: parse, call one function, print, pick the exit code
    runtime/            the embedded local runtime (the rendered pod as local processes, probes and all)
    promotion/          (room) the promotion state machine and its per-pod agent
    cluster/            (room) what needs a Kubernetes API, behind small interfaces
    chart/              values layering, Helm rendering, gates, summary, values docs
    repository/         a model repository as data: layout, configs, signatures, checksums, validation
    observability/      the chart's Prometheus rules as a rule file, a real Prometheus for the live checks, the Grafana dashboard
    triton/             the Triton client (the only importer of tritonclient), the local server, backends
    errors              one error hierarchy; the type decides retry or rollback, and the exit code

tests/test_layering.py holds each layer to the imports it may make.
"""

from tritonops.chart.render import Manifest, Rendering, render
from tritonops.errors import GateFailure, InputError, RenderError, TritonOpsError, ValuesError

__all__ = [
    "GateFailure",
    "InputError",
    "Manifest",
    "RenderError",
    "Rendering",
    "TritonOpsError",
    "ValuesError",
    "render",
]

__version__ = "0.1.0"
