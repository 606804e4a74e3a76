"""The embedded local runtime: the rendered pod run as local processes, probes and all.

    control       `up`, `status`, `logs` and `down`
    supervisor    the background process that runs the replicas and drives their probes
    podspec       the rendered pod as local command lines, environment, ports and probes
    probes        probes driven the way the kubelet drives them
    ports         the ports a runtime will take, checked before it starts
    workspace     the work folder: plan, state, logs, mapped volumes
    replica_logs  find the line in a replica's log that says why it failed
    demo          `tritonops demo` (`make demo`)

Takes the chart's rendering (`tritonops.chart`) and runs it on the local Triton (`tritonops.triton`).
"""
