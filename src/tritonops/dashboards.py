"""The Triton Grafana dashboard, built as code: `build()` is the one source of truth and
`charts/triton/dashboards/triton.json` is generated from it (never edited by hand).

    python -m tritonops.dashboards --write   # regenerate the committed JSON
    python -m tritonops.dashboards --check   # exit 1 when the committed JSON is stale

Queries read Triton 2.51's metrics as the ServiceMonitor scrapes them: Triton labels series with
`model` and `version` (per-model metrics), `reason` (failures) and `gpu_uuid` (GPU metrics), and
prometheus-operator adds `namespace` and `pod`. Latency panels divide durations by successful
*requests*, never by `nv_inference_count`, which counts batch items.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tritonops import environments, errors

DASHBOARD_FILE = environments.CHART_DIR / "dashboards" / "triton.json"
UID = "tritonops-triton"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Every per-model query filters all three variables; node-level gauges (CPU, GPU) carry no `model`.
MODEL_SELECTOR = 'namespace=~"$namespace", model=~"$model", pod=~"$pod"'
POD_SELECTOR = 'namespace=~"$namespace", pod=~"$pod"'
RATE = "[$__rate_interval]"

# What `panel_queries` puts in place of each Grafana variable so that Prometheus can run the query.
SUBSTITUTIONS = {
    "namespace": ".*",
    "model": ".*",
    "pod": ".*",
    "__rate_interval": "1m",
    "__range": "5m",
    "__interval": "15s",
}
# $name, ${name} and ${name:format}.
VARIABLE = re.compile(r"\$(?:\{(?P<braced>\w+)(?::[^}]*)?\}|(?P<bare>\w+))")
GPU_METRIC = re.compile(r"\bnv_gpu_\w+")
GRID_WIDTH = 24


def _rate(metric: str, selector: str = MODEL_SELECTOR, by: str = "model") -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}{RATE}))"


def _per_request(numerator: str) -> str:
    """`numerator` (a per-model rate of microseconds) per successful request."""
    return f"{numerator}\n  / {_rate('nv_inference_request_success')}"


def _target(
    ref_id: str, expr: str, legend: str, *, instant: bool = False, table: bool = False
) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "format": "table" if table else "time_series",
        "instant": instant,
        "legendFormat": legend,
        "range": not instant,
        "refId": ref_id,
    }


def _panel(
    kind: str, title: str, description: str, unit: str, targets: list[dict[str, Any]]
) -> dict[str, Any]:
    """A panel without id and gridPos (the layout assigns those)."""
    return {
        "datasource": DATASOURCE,
        "description": description,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": targets,
        "title": title,
        "type": kind,
    }


def _timeseries(
    title: str, description: str, unit: str, *targets: dict[str, Any], stack: bool = False
) -> dict[str, Any]:
    panel = _panel("timeseries", title, description, unit, list(targets))
    panel["fieldConfig"]["defaults"].update(
        {
            "min": 0,
            "custom": {
                "drawStyle": "line",
                "fillOpacity": 10,
                "lineWidth": 1,
                "showPoints": "never",
                "spanNulls": False,
                "stacking": {"group": "A", "mode": "normal" if stack else "none"},
            },
        }
    )
    panel["options"] = {
        "legend": {
            "calcs": ["mean", "max"],
            "displayMode": "table",
            "placement": "bottom",
            "showLegend": True,
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel


def _stat(title: str, description: str, unit: str, target: dict[str, Any]) -> dict[str, Any]:
    panel = _panel("stat", title, description, unit, [target])
    panel["options"] = {
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "textMode": "auto",
    }
    return panel


def _table(title: str, description: str, target: dict[str, Any], rename: dict[str, str]) -> dict[str, Any]:
    panel = _panel("table", title, description, "short", [target])
    panel["options"] = {"showHeader": True, "sortBy": [{"desc": False, "displayName": "model"}]}
    panel["transformations"] = [
        {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": rename}}
    ]
    return panel


def _row(title: str) -> dict[str, Any]:
    return {"collapsed": False, "panels": [], "title": title, "type": "row"}


def _overview() -> list[tuple[dict[str, Any], int, int]]:
    requests = _rate("nv_inference_request_success")
    failures = _rate("nv_inference_request_failure")
    return [
        (
            _stat(
                "Inferences in range",
                "Inferences (batch items, not requests) Triton ran over the dashboard's time range, summed "
                "over the selected models and pods. A request carrying a batch of 8 counts 8 here.",
                "short",
                _target(
                    "A", f"sum(increase(nv_inference_count{{{MODEL_SELECTOR}}}[$__range]))", "", instant=True
                ),
            ),
            4,
            8,
        ),
        (
            _table(
                "Loaded model versions",
                "Model versions loaded now and on how many pods: Triton exports nv_inference_exec_count "
                "for every loaded version and drops it on unload, so a version missing here is not "
                "serving anywhere (compare with the versions committed for this environment).",
                _target(
                    "A",
                    "count by (model, version) (\n  group by (model, version, pod) "
                    f"(nv_inference_exec_count{{{MODEL_SELECTOR}}})\n)",
                    "",
                    instant=True,
                    table=True,
                ),
                {"Value": "pods serving"},
            ),
            8,
            8,
        ),
        (
            _timeseries(
                "Requests per second by model",
                "Inference requests per second, successful plus failed, per model. A request counts "
                "once whatever its batch size. Failure series may be absent (older servers export "
                "them only after a failure), hence `(success + failure) or success`.",
                "reqps",
                _target("A", f"({requests}\n  + {failures})\nor {requests}", "{{model}}"),
            ),
            12,
            8,
        ),
        (
            _timeseries(
                "Successes and failures by reason",
                "Successful requests per second, and failed requests per second by Triton's failure "
                "reason (REJECTED: queue full or timed out before running, CANCELED, BACKEND: the model "
                "raised, OTHER). Any failure line above zero deserves a look.",
                "reqps",
                _target("A", f"sum(rate(nv_inference_request_success{{{MODEL_SELECTOR}}}{RATE}))", "success"),
                _target("B", _rate("nv_inference_request_failure", by="reason"), "failed: {{reason}}"),
            ),
            12,
            8,
        ),
        (
            _timeseries(
                "Average batch size",
                "Inferences (batch items) per model execution: how well dynamic batching fills batches. "
                "1 means every request runs alone; compare with the model's preferred and max batch size.",
                "short",
                _target(
                    "A",
                    f"{_rate('nv_inference_count')}\n  / {_rate('nv_inference_exec_count')}",
                    "{{model}}",
                ),
            ),
            6,
            8,
        ),
        (
            _timeseries(
                "Pending requests",
                "Requests received but not yet executing (waiting in the scheduler queue), per model. "
                "A queue that keeps growing means the model instances cannot keep up.",
                "short",
                _target(
                    "A",
                    f"sum by (model) (nv_inference_pending_request_count{{{MODEL_SELECTOR}}})",
                    "{{model}}",
                ),
            ),
            6,
            8,
        ),
    ]


def _latency() -> list[tuple[dict[str, Any], int, int]]:
    compute = " + ".join(
        f"rate(nv_inference_compute_{stage}_duration_us{{{MODEL_SELECTOR}}}{RATE})"
        for stage in ("input", "infer", "output")
    )
    return [
        (
            _timeseries(
                "Average latency per request",
                "Mean end-to-end time Triton spent on a request (queue + compute), per model: request "
                "duration divided by successful requests. Per request, not per batch item: dividing by "
                "nv_inference_count would shrink the figure by the batch size.",
                "µs",
                _target("A", _per_request(_rate("nv_inference_request_duration_us")), "{{model}}"),
            ),
            12,
            8,
        ),
        (
            _timeseries(
                "p99 latency",
                "99th percentile of request latency from Triton's latency summary (exported with "
                "--metrics-config summary_latencies=true), per model. Quantiles cannot be averaged "
                "across pods, so this shows the slowest pod's p99.",
                "µs",
                _target(
                    "A",
                    f'max by (model) (nv_inference_request_summary_us{{{MODEL_SELECTOR}, quantile="0.99"}})',
                    "{{model}}",
                ),
            ),
            12,
            8,
        ),
        (
            _timeseries(
                "Average queue time per request",
                "Mean time a request waits in Triton's scheduler queue before a model instance picks it "
                "up, per model. Rising queue time with flat compute time means too few instances or "
                "replicas.",
                "µs",
                _target("A", _per_request(_rate("nv_inference_queue_duration_us")), "{{model}}"),
            ),
            12,
            8,
        ),
        (
            _timeseries(
                "Average compute time per request",
                "Mean time the backend spent on a request (input copy + inference + output copy), per "
                "model, divided by successful requests. Rising compute time points at the model or the "
                "hardware rather than at load.",
                "µs",
                _target("A", _per_request(f"sum by (model) (\n    {compute}\n  )"), "{{model}}"),
            ),
            12,
            8,
        ),
    ]


def _resources() -> list[tuple[dict[str, Any], int, int]]:
    return [
        (
            _timeseries(
                "CPU utilisation",
                "CPU utilisation Triton reports (nv_cpu_utilization, 0 to 1), per pod. Triton reads "
                "/proc/stat, so inside a container this is the node's CPU, not the pod's cgroup; use "
                "container_cpu_usage_seconds_total for the pod's own share.",
                "percentunit",
                _target("A", f"max by (pod) (nv_cpu_utilization{{{POD_SELECTOR}}})", "{{pod}}"),
            ),
            12,
            8,
        ),
        (
            _timeseries(
                "CPU memory",
                "Used and total memory Triton reports (from /proc/meminfo: the node's, as with CPU), "
                "per pod.",
                "bytes",
                _target("A", f"max by (pod) (nv_cpu_memory_used_bytes{{{POD_SELECTOR}}})", "{{pod}} used"),
                _target("B", f"max by (pod) (nv_cpu_memory_total_bytes{{{POD_SELECTOR}}})", "{{pod}} total"),
            ),
            12,
            8,
        ),
        (
            _timeseries(
                "GPU utilisation",
                "Utilisation of each GPU Triton uses (nv_gpu_utilization, 0 to 1), per pod and GPU. "
                "Empty on CPU-only environments (dev), where Triton exports no GPU metrics.",
                "percentunit",
                _target(
                    "A",
                    f"max by (pod, gpu_uuid) (nv_gpu_utilization{{{POD_SELECTOR}}})",
                    "{{pod}} {{gpu_uuid}}",
                ),
            ),
            12,
            8,
        ),
        (
            _timeseries(
                "GPU memory",
                "GPU memory used and total per pod and GPU. Used close to total risks out-of-memory "
                "failures when a model (or a second version during a rollout) loads. Empty on CPU-only "
                "environments.",
                "bytes",
                _target(
                    "A",
                    f"max by (pod, gpu_uuid) (nv_gpu_memory_used_bytes{{{POD_SELECTOR}}})",
                    "{{pod}} {{gpu_uuid}} used",
                ),
                _target(
                    "B",
                    f"max by (pod, gpu_uuid) (nv_gpu_memory_total_bytes{{{POD_SELECTOR}}})",
                    "{{pod}} {{gpu_uuid}} total",
                ),
            ),
            12,
            8,
        ),
    ]


def _layout(sections: Sequence[tuple[str, list[tuple[dict[str, Any], int, int]]]]) -> list[dict[str, Any]]:
    """Rows of panels flowing left to right; a panel that does not fit starts a new line."""
    panels: list[dict[str, Any]] = []
    y = 0
    for title, section in sections:
        panels.append({**_row(title), "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}})
        y += 1
        x, line_height = 0, 0
        for panel, width, height in section:
            if x + width > GRID_WIDTH:
                y, x, line_height = y + line_height, 0, 0
            panels.append({**panel, "gridPos": {"h": height, "w": width, "x": x, "y": y}})
            x, line_height = x + width, max(line_height, height)
        y += line_height
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return panels


def _query_variable(name: str, label: str, query: str, *, multi: bool) -> dict[str, Any]:
    variable: dict[str, Any] = {
        "datasource": DATASOURCE,
        "definition": query,
        "hide": 0,
        "includeAll": multi,
        "label": label,
        "multi": multi,
        "name": name,
        "options": [],
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "type": "query",
    }
    if multi:
        # `.*` rather than the list of values seen at load time, so new models and pods show up.
        variable["allValue"] = ".*"
        variable["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return variable


def _variables() -> list[dict[str, Any]]:
    return [
        {
            "current": {},
            "hide": 0,
            "includeAll": False,
            "label": "Data source",
            "multi": False,
            "name": "datasource",
            "options": [],
            "query": "prometheus",
            "refresh": 1,
            "regex": "",
            "type": "datasource",
        },
        _query_variable("namespace", "Namespace", "label_values(nv_inference_count, namespace)", multi=False),
        _query_variable(
            "model", "Model", 'label_values(nv_inference_count{namespace=~"$namespace"}, model)', multi=True
        ),
        _query_variable(
            "pod", "Pod", 'label_values(nv_inference_count{namespace=~"$namespace"}, pod)', multi=True
        ),
    ]


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": "Traffic, latency per request, batching, failures and resources of Triton Inference "
        "Server, per namespace, model and pod. Generated by `python -m tritonops.dashboards --write`.",
        "editable": False,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": [],
        "panels": _layout(
            [("Traffic", _overview()), ("Latency per request", _latency()), ("Resources", _resources())]
        ),
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["triton", "inference", "tritonops"],
        "templating": {"list": _variables()},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": "Triton Inference Server",
        "uid": UID,
        "version": 1,
    }


def render(dashboard: dict[str, Any] | None = None) -> str:
    """The dashboard's committed form: sorted keys, two-space indent, a trailing newline."""
    return (
        json.dumps(build() if dashboard is None else dashboard, indent=2, sort_keys=True, ensure_ascii=False)
        + "\n"
    )


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that is not a row, including those folded inside collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def substitute(expr: str) -> str:
    """`expr` with each Grafana variable replaced by something Prometheus runs (`SUBSTITUTIONS`)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        if name not in SUBSTITUTIONS:
            raise errors.InputError(f"{expr!r}: no substitution for the Grafana variable ${name}")
        return SUBSTITUTIONS[name]

    return VARIABLE.sub(replace, expr)


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(panel title, PromQL Prometheus can run, whether it reads GPU metrics) for every target."""
    return [
        (panel["title"], substitute(target["expr"]), bool(GPU_METRIC.search(target["expr"])))
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tritonops.dashboards", description=__doc__.splitlines()[0]
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help=f"write the dashboard to {DASHBOARD_FILE}")
    mode.add_argument(
        "--check", action="store_true", help="exit 1 when the committed dashboard differs from a fresh build"
    )
    parser.add_argument("--file", type=Path, default=DASHBOARD_FILE, help="the dashboard JSON file")
    args = parser.parse_args(argv)
    fresh = render()
    if args.write:
        args.file.parent.mkdir(parents=True, exist_ok=True)
        args.file.write_text(fresh, encoding="utf-8")
        print(f"wrote the dashboard ({len(panels(build()))} panels) to {args.file}")
        return 0
    committed = args.file.read_text(encoding="utf-8") if args.file.exists() else None
    if committed != fresh:
        state = "is missing" if committed is None else "differs from a fresh build"
        print(f"{args.file} {state}; run `python -m tritonops.dashboards --write`", file=sys.stderr)
        return 1
    print(f"{args.file} matches a fresh build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
