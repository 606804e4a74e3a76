"""Triton itself: the client of a running server, the local server, its local backends, and the
small ONNX models the samples, benchmarks and tests serve.

    client         the only module that imports tritonclient: calls, ModelConfig protobuf, metrics
    server         run the nvidia-pytriton wheel's `tritonserver` (Triton 2.51) here
    backends/      Triton backends shipped as files for the local server (`onnxruntime/model.py`),
                   loaded by tritonserver from disk, never imported by the package
    onnx_models    deterministic ONNX models built with the `onnx` package
    perf_analyzer  Triton's perf_analyzer against an endpoint, for the benchmarks and `tune`

Imports only `tritonops.errors`.
"""
