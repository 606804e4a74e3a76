"""tritonops: render and gate the Triton chart, and prove it on the real server."""

from tritonops.errors import GateFailure, InputError, RenderError, TritonOpsError, ValuesError
from tritonops.rendering import Manifest, Rendering, render

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
