"""What needs a Kubernetes API, behind small interfaces so that everything else runs without one:
`cluster.endpoints.discover` lists a Service's pods from its EndpointSlices (the replicas a
promotion addresses). The kind tier's fixtures will live here too.

It may use the chart and the Triton client; promotion and the CLI use it (tests/test_layering.py).
This package root imports nothing: the `kubernetes` client takes most of a second to import, so
only the commands that talk to a cluster load it (import `tritonops.cluster.endpoints`).
"""
