"""The embedded local runtime: the rendered pod run as local processes, probes and all."""
