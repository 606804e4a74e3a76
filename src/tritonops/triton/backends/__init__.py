"""Triton backends that tritonops ships as files for the local tritonserver (not imported by the package)."""
