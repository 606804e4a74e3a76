"""A Triton model repository as data, checked the way Triton reads it.

    layout            the folder structure: models, versions, what Triton silently skips
    configs           config.pbtxt read with Triton's own ModelConfig protobuf (line and column kept)
    signatures        a model file's real inputs and outputs (ONNX)
    findings          what validation reports, each naming where and what to change
    checksums         SHA-256 manifests per version; `tritonops repo checksum`
    committed_state   current.json checked by the chart's own script, as the pod's launcher checks it
    validator         `tritonops repo validate`
    config_generator  `tritonops repo gen-config`
    example_repository  the sample repository (examples/model-repository/), built from code

Uses Triton's ModelConfig protobuf through `tritonops.triton.client` and reads the chart's files
(`tritonops.chart.environments`).
"""
