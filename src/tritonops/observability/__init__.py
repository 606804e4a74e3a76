"""What watches the chart in production, built as code and checked against a real Prometheus.

The alert and recording rules themselves are written in the chart
(`charts/triton/templates/prometheusrule.yaml`, thresholds in `values.yaml` under
`monitoring.prometheusRule`); Alertmanager routing is `monitoring/alertmanager.yaml` and the
runbooks `docs/runbooks.md`. This package turns the rendered rules into what tools load:

    rule_file   the rendered PrometheusRule as a plain rule file (what promtool and Prometheus load)
    prometheus  the ServiceMonitor's scrape job, a whole Prometheus configuration, and a real
                Prometheus server on loopback for the live checks
    dashboard   the Grafana dashboard (grafana-foundation-sdk); `python -m tritonops.observability.dashboard`

Reads the chart (`tritonops.chart`) and uses the loopback HTTP opener of `tritonops.triton.server`.
"""
