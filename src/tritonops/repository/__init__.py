"""A Triton model repository as data: layout, configs, model signatures, findings, checksums."""
