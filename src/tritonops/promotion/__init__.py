"""Room for promotion (not written yet): the promotion state machine over the committed state
(`current.json`), rollback, quarantine, status and drift. Its counterpart in each pod is the agent,
a chart file (`charts/triton/files/`, standard library only) like the launcher and readiness check.

It sits beside `tritonops.runtime`: the CLI calls it, and it may use the chart, the repository, the
Triton client and the cluster interfaces (tests/test_layering.py says exactly which).
"""
