"""The Triton Grafana dashboard, built as code with Grafana's typed builders
(grafana-foundation-sdk): `build()` is the one source of truth and
`charts/triton/dashboards/triton.json` is generated from it (never edited by hand).

    python -m tritonops.observability.dashboard --write   # regenerate the committed JSON
    python -m tritonops.observability.dashboard --check   # exit 1 when the committed JSON is stale

Queries read Triton 2.51's metrics as the ServiceMonitor scrapes them: Triton labels series with
`model` and `version` (per-model metrics), `reason` (failures) and `gpu_uuid` (GPU metrics), and
prometheus-operator adds `namespace` and `pod`. Latency panels divide durations by successful
*requests*, never by `nv_inference_count`, which counts batch items. The Promotions row and the
annotation read what Triton does not export, from each pod's agent (`tritonops_*`: the committed
version, the version served, drift and failed loads; charts/triton/files/agent.py).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.builders import prometheus as prometheus_builder
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_model
from grafana_foundation_sdk.models import prometheus as prometheus_model

from tritonops import errors
from tritonops.chart import environments

DASHBOARD_FILE = environments.CHART_DIR / "dashboards" / "triton.json"
UID = "tritonops-triton"
DATASOURCE = dashboard_model.DataSourceRef(type_val="prometheus", uid="${datasource}")
# The SDK's schema default is 36 (Grafana's CUE schema never moved it); the panels below are already
# in the shape of 39 (legend.showLegend, no table displayMode), so Grafana has nothing to migrate.
SCHEMA_VERSION = 39

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
PANEL_HEIGHT = 8

Panel = timeseries.Panel | stat.Panel | table.Panel


def _rate(metric: str, selector: str = MODEL_SELECTOR, by: str = "model") -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}{RATE}))"


def _per_request(numerator: str) -> str:
    """`numerator` (a per-model rate of microseconds) per successful request."""
    return f"{numerator}\n  / {_rate('nv_inference_request_success')}"


def _query(
    ref_id: str, expr: str, legend: str, *, instant: bool = False, table: bool = False
) -> prometheus_builder.Dataquery:
    query = (
        prometheus_builder.Dataquery()
        .ref_id(ref_id)
        .expr(expr)
        .legend_format(legend)
        .datasource(DATASOURCE)
        .editor_mode(prometheus_model.QueryEditorMode.CODE)
        .format(
            prometheus_model.PromQueryFormat.TABLE if table else prometheus_model.PromQueryFormat.TIME_SERIES
        )
    )
    return query.instant() if instant else query.range()


def _timeseries(
    title: str, description: str, unit: str, *queries: prometheus_builder.Dataquery, width: int
) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .span(width)
        .height(PANEL_HEIGHT)
        .targets(list(queries))
        .draw_style(common.GraphDrawStyle.LINE)
        .fill_opacity(10)
        .line_width(1)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
        .stacking(common_builder.StackingConfig().group("A").mode(common.StackingMode.NONE))
        .legend(
            common_builder.VizLegendOptions()
            .calcs(["mean", "max"])
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common_builder.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )


def _stat(
    title: str, description: str, unit: str, query: prometheus_builder.Dataquery, *, width: int
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(PANEL_HEIGHT)
        .with_target(query)
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.AUTO)
        .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
        .text_mode(common.BigValueTextMode.AUTO)
    )


def _table(
    title: str, description: str, query: prometheus_builder.Dataquery, rename: dict[str, str], *, width: int
) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit("short")
        .span(width)
        .height(PANEL_HEIGHT)
        .with_target(query)
        .show_header(True)
        .sort_by([common_builder.TableSortByFieldState().display_name("model").desc(False)])
        # Transformations are untyped in Grafana's schema too: `options` is the transformation's own.
        .with_transformation(
            dashboard_model.DataTransformerConfig(
                id_val="organize", options={"excludeByName": {"Time": True}, "renameByName": rename}
            )
        )
    )


def _traffic() -> list[Panel]:
    requests = _rate("nv_inference_request_success")
    failures = _rate("nv_inference_request_failure")
    return [
        _stat(
            "Inferences in range",
            "Inferences (batch items, not requests) Triton ran over the dashboard's time range, summed "
            "over the selected models and pods. A request carrying a batch of 8 counts 8 here.",
            "short",
            _query("A", f"sum(increase(nv_inference_count{{{MODEL_SELECTOR}}}[$__range]))", "", instant=True),
            width=4,
        ),
        _table(
            "Loaded model versions",
            "Model versions loaded now and on how many pods: Triton exports nv_inference_exec_count "
            "for every loaded version and drops it on unload, so a version missing here is not "
            "serving anywhere (compare with the versions committed for this environment).",
            _query(
                "A",
                "count by (model, version) (\n  group by (model, version, pod) "
                f"(nv_inference_exec_count{{{MODEL_SELECTOR}}})\n)",
                "",
                instant=True,
                table=True,
            ),
            {"Value": "pods serving"},
            width=8,
        ),
        _timeseries(
            "Requests per second by model",
            "Inference requests per second, successful plus failed, per model. A request counts "
            "once whatever its batch size. Failure series may be absent (older servers export "
            "them only after a failure), hence `(success + failure) or success`.",
            "reqps",
            _query("A", f"({requests}\n  + {failures})\nor {requests}", "{{model}}"),
            width=12,
        ),
        _timeseries(
            "Successes and failures by reason",
            "Successful requests per second, and failed requests per second by Triton's failure "
            "reason (REJECTED: queue full or timed out before running, CANCELED, BACKEND: the model "
            "raised, OTHER). Any failure line above zero deserves a look.",
            "reqps",
            _query("A", f"sum(rate(nv_inference_request_success{{{MODEL_SELECTOR}}}{RATE}))", "success"),
            _query("B", _rate("nv_inference_request_failure", by="reason"), "failed: {{reason}}"),
            width=12,
        ),
        _timeseries(
            "Average batch size",
            "Inferences (batch items) per model execution: how well dynamic batching fills batches. "
            "1 means every request runs alone; compare with the model's preferred and max batch size.",
            "short",
            _query(
                "A", f"{_rate('nv_inference_count')}\n  / {_rate('nv_inference_exec_count')}", "{{model}}"
            ),
            width=6,
        ),
        _timeseries(
            "Pending requests",
            "Requests received but not yet executing (waiting in the scheduler queue), per model. "
            "A queue that keeps growing means the model instances cannot keep up.",
            "short",
            _query(
                "A", f"sum by (model) (nv_inference_pending_request_count{{{MODEL_SELECTOR}}})", "{{model}}"
            ),
            width=6,
        ),
    ]


def _latency() -> list[Panel]:
    compute = " + ".join(
        f"rate(nv_inference_compute_{stage}_duration_us{{{MODEL_SELECTOR}}}{RATE})"
        for stage in ("input", "infer", "output")
    )
    return [
        _timeseries(
            "Average latency per request",
            "Mean end-to-end time Triton spent on a request (queue + compute), per model: request "
            "duration divided by successful requests. Per request, not per batch item: dividing by "
            "nv_inference_count would shrink the figure by the batch size.",
            "µs",
            _query("A", _per_request(_rate("nv_inference_request_duration_us")), "{{model}}"),
            width=12,
        ),
        _timeseries(
            "p99 latency",
            "99th percentile of request latency from Triton's latency summary (exported with "
            "--metrics-config summary_latencies=true), per model. Quantiles cannot be averaged "
            "across pods, so this shows the slowest pod's p99.",
            "µs",
            _query(
                "A",
                f'max by (model) (nv_inference_request_summary_us{{{MODEL_SELECTOR}, quantile="0.99"}})',
                "{{model}}",
            ),
            width=12,
        ),
        _timeseries(
            "Average queue time per request",
            "Mean time a request waits in Triton's scheduler queue before a model instance picks it "
            "up, per model. Rising queue time with flat compute time means too few instances or "
            "replicas.",
            "µs",
            _query("A", _per_request(_rate("nv_inference_queue_duration_us")), "{{model}}"),
            width=12,
        ),
        _timeseries(
            "Average compute time per request",
            "Mean time the backend spent on a request (input copy + inference + output copy), per "
            "model, divided by successful requests. Rising compute time points at the model or the "
            "hardware rather than at load.",
            "µs",
            _query("A", _per_request(f"sum by (model) (\n    {compute}\n  )"), "{{model}}"),
            width=12,
        ),
    ]


def _resources() -> list[Panel]:
    return [
        _timeseries(
            "CPU utilisation",
            "CPU utilisation Triton reports (nv_cpu_utilization, 0 to 1), per pod. Triton reads "
            "/proc/stat, so inside a container this is the node's CPU, not the pod's cgroup; use "
            "container_cpu_usage_seconds_total for the pod's own share.",
            "percentunit",
            _query("A", f"max by (pod) (nv_cpu_utilization{{{POD_SELECTOR}}})", "{{pod}}"),
            width=12,
        ),
        _timeseries(
            "CPU memory",
            "Used and total memory Triton reports (from /proc/meminfo: the node's, as with CPU), per pod.",
            "bytes",
            _query("A", f"max by (pod) (nv_cpu_memory_used_bytes{{{POD_SELECTOR}}})", "{{pod}} used"),
            _query("B", f"max by (pod) (nv_cpu_memory_total_bytes{{{POD_SELECTOR}}})", "{{pod}} total"),
            width=12,
        ),
        _timeseries(
            "GPU utilisation",
            "Utilisation of each GPU Triton uses (nv_gpu_utilization, 0 to 1), per pod and GPU. "
            "Empty on CPU-only environments (dev), where Triton exports no GPU metrics.",
            "percentunit",
            _query(
                "A", f"max by (pod, gpu_uuid) (nv_gpu_utilization{{{POD_SELECTOR}}})", "{{pod}} {{gpu_uuid}}"
            ),
            width=12,
        ),
        _timeseries(
            "GPU memory",
            "GPU memory used and total per pod and GPU. Used close to total risks out-of-memory "
            "failures when a model (or a second version during a rollout) loads. Empty on CPU-only "
            "environments.",
            "bytes",
            _query(
                "A",
                f"max by (pod, gpu_uuid) (nv_gpu_memory_used_bytes{{{POD_SELECTOR}}})",
                "{{pod}} {{gpu_uuid}} used",
            ),
            _query(
                "B",
                f"max by (pod, gpu_uuid) (nv_gpu_memory_total_bytes{{{POD_SELECTOR}}})",
                "{{pod}} {{gpu_uuid}} total",
            ),
            width=12,
        ),
    ]


def _promotions() -> list[Panel]:
    return [
        _timeseries(
            "Committed vs served version",
            "Per model, the committed version (current.json, as every pod's agent reads it) and the "
            "highest version each pod serves, which unversioned requests reach. A served line that "
            "stays off the committed one outside a promotion is drift: the agent converges a pod "
            "within seconds, so it means failing loads (see the panel beside) or an agent that "
            "cannot act. The annotations mark each change of a committed version.",
            "none",
            _query(
                "A",
                f"max by (model) (tritonops_committed_version{{{MODEL_SELECTOR}}})",
                "{{model}} committed",
            ),
            _query(
                "B",
                f"max by (model, pod) (tritonops_model_served_version{{{MODEL_SELECTOR}}})",
                "{{model}} served on {{pod}}",
            ),
            width=12,
        ),
        _timeseries(
            "Drifting pods and failed loads",
            "Pods whose served versions differ from the committed ones, per model (0 outside "
            "promotions), and failed loads per model version: the agent's own and a failed "
            "candidate of a promotion (Triton exports no load failures itself).",
            "short",
            _query(
                "A", f"sum by (model) (tritonops_model_drift{{{MODEL_SELECTOR}}})", "{{model}} pods drifting"
            ),
            _query(
                "B",
                f"sum by (model, version) (increase(tritonops_model_load_failures_total{{{MODEL_SELECTOR}}}{RATE}))",
                "{{model}} version {{version}} failed loads",
            ),
            width=12,
        ),
    ]


# A committed version that changed within this window shows as a marker: wider than a scrape
# interval (so `changes` sees two samples), narrow enough to place the marker near the commit.
CHANGE_WINDOW = "2m"


def _annotations() -> list[cogbuilder.Builder[dashboard_model.AnnotationQuery]]:
    return [
        dashboard_builder.AnnotationQuery()
        .name("Committed version changes")
        .datasource(DATASOURCE)
        .enable(True)
        .hide(False)
        .icon_color("purple")
        .expr(
            f"max by (model) (changes(tritonops_committed_version{{{MODEL_SELECTOR}}}[{CHANGE_WINDOW}])) > 0"
        )
    ]


# What Grafana's Prometheus annotation reads beside `expr`, which the SDK's AnnotationQuery lacks.
ANNOTATION_FORMAT = {
    "Committed version changes": {
        "titleFormat": "{{model}}: committed version changed",
        "textFormat": "A promotion or rollback committed another version of {{model}} (tritonops status, current.json history).",
        "tagKeys": "model",
        "step": "30s",
    }
}


def _query_variable(name: str, label: str, query: str, *, multi: bool) -> dashboard_builder.QueryVariable:
    variable = (
        dashboard_builder.QueryVariable(name)
        # Grafana keys its variables by `id` when the JSON has one, and the SDK gives every variable the
        # same nil UUID: the name is what Grafana uses when there is no id.
        .id(name)
        .label(label)
        .datasource(DATASOURCE)
        .query({"query": query, "refId": f"{name}-variable"})
        .refresh(dashboard_model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .regex("")
        .sort(dashboard_model.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
    )
    if multi:
        # `.*` rather than the list of values seen at load time, so new models and pods show up.
        variable.all_value(".*").current(
            dashboard_model.VariableOption(selected=True, text=["All"], value=["$__all"])
        )
    return variable


def _variables() -> list[cogbuilder.Builder[dashboard_model.VariableModel]]:
    return [
        dashboard_builder.DatasourceVariable("datasource")
        .id("datasource")  # as in _query_variable
        .label("Data source")
        .type("prometheus")
        .regex("")
        .multi(False)
        .include_all(False),
        _query_variable("namespace", "Namespace", "label_values(nv_inference_count, namespace)", multi=False),
        _query_variable(
            "model", "Model", 'label_values(nv_inference_count{namespace=~"$namespace"}, model)', multi=True
        ),
        _query_variable(
            "pod", "Pod", 'label_values(nv_inference_count{namespace=~"$namespace"}, pod)', multi=True
        ),
    ]


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model. The SDK lays each row's panels out left to right and
    starts a new line once one is 24 wide, so the widths of a line add up to 24."""
    builder = (
        dashboard_builder.Dashboard("Triton Inference Server")
        .uid(UID)
        .description(
            "Traffic, latency per request, batching, failures and resources of Triton Inference "
            "Server, per namespace, model and pod. Generated by `python -m tritonops.observability.dashboard --write`."
        )
        .tags(["triton", "inference", "tritonops"])
        .readonly()
        .tooltip(dashboard_model.DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .version(1)
        .variables(_variables())
        .annotations(_annotations())
    )
    number = 0
    for title, section in (
        ("Traffic", _traffic()),
        ("Latency per request", _latency()),
        ("Resources", _resources()),
        ("Promotions", _promotions()),
    ):
        # Panel ids are Grafana's handle for links (viewPanel=N); the SDK leaves them unset (rows: 0).
        number += 1
        builder.with_row(dashboard_builder.Row(title).id(number))
        for panel in section:
            number += 1
            builder.with_panel(panel.id(number))
    model = builder.build()
    model.schema_version = SCHEMA_VERSION  # no builder method: see SCHEMA_VERSION
    encoded: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    for variable in encoded["templating"]["list"]:
        if variable["type"] == "query":
            # Grafana's variable list shows `definition`; for an object query it does not fall back to
            # the query text, and the SDK's VariableModel has no such field.
            variable["definition"] = variable["query"]["query"]
    for annotation in encoded["annotations"]["list"]:
        annotation.update(ANNOTATION_FORMAT.get(annotation["name"], {}))
    return encoded


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


def annotation_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(annotation name, PromQL Prometheus can run) for every Prometheus annotation."""
    return [
        (annotation["name"], substitute(annotation["expr"]))
        for annotation in dashboard.get("annotations", {}).get("list", [])
        if annotation.get("expr")
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tritonops.observability.dashboard", description=__doc__.splitlines()[0]
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help=f"write the dashboard to {DASHBOARD_FILE}")
    mode.add_argument(
        "--check", action="store_true", help="exit 1 when the committed dashboard differs from a fresh build"
    )
    parser.add_argument("--file", type=Path, default=DASHBOARD_FILE, help="the dashboard JSON file")
    args = parser.parse_args(argv)
    model = build()
    fresh = render(model)
    if args.write:
        args.file.parent.mkdir(parents=True, exist_ok=True)
        args.file.write_text(fresh, encoding="utf-8")
        print(f"wrote the dashboard ({len(panels(model))} panels) to {args.file}")
        return 0
    committed = args.file.read_text(encoding="utf-8") if args.file.exists() else None
    if committed != fresh:
        state = "is missing" if committed is None else "differs from a fresh build"
        print(f"{args.file} {state}; run `tritonops docs --write`", file=sys.stderr)
        return 1
    print(f"{args.file} matches a fresh build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
