"""What watches the chart in production, built as code and checked against a real Prometheus.

    rules       the rendered PrometheusRule as a plain rule file (what promtool and Prometheus load)
    prometheus  the ServiceMonitor's scrape job, a whole Prometheus configuration, and a real
                Prometheus server on loopback for the live checks
    dashboard   the Grafana dashboard (grafana-foundation-sdk); `python -m tritonops.observability.dashboard`

Reads the chart (`tritonops.chart`) and uses the loopback HTTP opener of `tritonops.triton.server`.
"""
