"""Room for the cluster tier (not written yet): what needs a Kubernetes API (EndpointSlice discovery,
the kind tier's fixtures), behind small interfaces so that everything else runs without one.

It may use the chart and the Triton client; promotion and the CLI use it (tests/test_layering.py).
"""
