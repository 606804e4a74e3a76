"""The Grafana dashboard built as code: the committed JSON is current, every panel is wired to the
variables, and every query parses and computes the right figures in Prometheus' own engine (promtool)."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.gpu import bundle as gpu_bundle
from tests.observability import gpu_series, promtool_runner
from tritonops.observability import dashboard as builder

# What the hand-written builder (before grafana-foundation-sdk) produced, captured once with `_facts`:
# every panel (id, type, title, gridPos, description, unit, options, targets), every variable and the
# dashboard's identity. The SDK may add its own defaults but must keep each of these.
HAND_WRITTEN_FACTS = Path(__file__).parent / "resources" / "hand-written-dashboard-facts.json"
SELECTOR = re.compile(r"\b(?P<metric>(?:nv|tritonops)_\w+)(?P<selector>\{[^}]*\})?")
# Triton's per-model metrics carry `model`; the CPU and GPU gauges are per server (and per GPU).
NODE_METRIC = re.compile(r"nv_(cpu|gpu)_")
UNITS = {
    "Inferences in range": "short",
    "Loaded model versions": "short",
    "Requests per second by model": "reqps",
    "Successes and failures by reason": "reqps",
    "Average batch size": "short",
    "Pending requests": "short",
    "Average latency per request": "µs",
    "p99 latency": "µs",
    "Average queue time per request": "µs",
    "Average compute time per request": "µs",
    "CPU utilisation": "percentunit",
    "CPU memory": "bytes",
    "GPU utilisation": "percentunit",
    "GPU memory": "bytes",
    "Committed vs served version": "none",
    "Drifting pods and failed loads": "short",
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return builder.build()


@pytest.fixture(scope="module")
def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return builder.panels(dashboard)


def _targets(panels: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(panel["title"], target) for panel in panels for target in panel["targets"]]


def _variable_query(variable: dict[str, Any]) -> str:
    """A variable's query text: Prometheus' variable editor stores `{"query": ..., "refId": ...}`."""
    query = variable["query"]
    return query["query"] if isinstance(query, dict) else query


def _variable_facts(variable: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "type", "label", "datasource", "regex", "multi", "includeAll", "allValue", "hide")
    facts = {key: variable[key] for key in keys if key in variable}
    facts["query"] = _variable_query(variable)
    # A datasource variable is resolved on every load whatever `refresh` says, and an empty `current`
    # means Grafana's default data source: neither is a fact of this dashboard.
    if variable["type"] != "datasource":
        facts.update({key: variable[key] for key in ("current", "refresh", "sort") if key in variable})
    return facts


def _panel_facts(panel: dict[str, Any]) -> dict[str, Any]:
    facts = {key: panel[key] for key in ("id", "type", "title", "gridPos")}
    if panel["type"] == "row":
        return {**facts, "collapsed": panel["collapsed"]}
    defaults = panel["fieldConfig"]["defaults"]
    facts.update(description=panel["description"], datasource=panel["datasource"], unit=defaults["unit"])
    facts.update({key: defaults[key] for key in ("min", "custom") if key in defaults})
    facts.update({key: panel[key] for key in ("options", "transformations") if key in panel})
    keys = ("refId", "expr", "legendFormat", "instant", "range", "format", "datasource", "editorMode")
    facts["targets"] = [{key: target.get(key) for key in keys} for target in panel["targets"]]
    return facts


def _facts(dashboard: dict[str, Any]) -> dict[str, Any]:
    """What the dashboard shows and queries, without the JSON a builder may add around it."""
    keys = ("uid", "title", "description", "tags", "refresh", "time", "timezone", "graphTooltip", "editable")
    return {
        "dashboard": {key: dashboard[key] for key in (*keys, "schemaVersion")},
        "variables": [_variable_facts(variable) for variable in dashboard["templating"]["list"]],
        "panels": [_panel_facts(panel) for panel in dashboard["panels"]],
    }


def _missing(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where `actual` does not hold every fact of `expected`: dicts may gain keys, lists keep length."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: {actual!r} is not an object"]
        return [
            problem
            for key, value in expected.items()
            for problem in (
                _missing(value, actual[key], f"{path}.{key}") if key in actual else [f"{path}.{key}: missing"]
            )
        ]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: {actual!r} is not a list of {len(expected)}"]
        return [
            problem
            for n, pair in enumerate(zip(expected, actual, strict=True))
            for problem in _missing(*pair, f"{path}[{n}]")
        ]
    return (
        []
        if expected == actual and type(expected) is type(actual)
        else [f"{path}: {actual!r} != {expected!r}"]
    )


def test_committed_dashboard_matches_a_fresh_build():
    result = subprocess.run(
        [sys.executable, "-m", "tritonops.observability.dashboard", "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(builder.DASHBOARD_FILE.read_text(encoding="utf-8")) == builder.build()


def test_check_names_the_stale_file_and_the_command_that_fixes_it(tmp_path: Path, capsys):
    stale = tmp_path / "triton.json"
    assert builder.main(["--write", "--file", str(stale)]) == 0
    assert builder.main(["--check", "--file", str(stale)]) == 0
    stale.write_text(stale.read_text(encoding="utf-8").replace('"30s"', '"5s"'), encoding="utf-8")
    capsys.readouterr()
    assert builder.main(["--check", "--file", str(stale)]) == 1
    message = capsys.readouterr().err
    assert str(stale) in message
    assert "tritonops docs --write" in message


def test_check_fails_when_the_file_is_missing(tmp_path: Path, capsys):
    assert builder.main(["--check", "--file", str(tmp_path / "absent.json")]) == 1
    assert "is missing" in capsys.readouterr().err


def test_committed_file_is_sorted_indented_and_ends_with_a_newline():
    text = builder.DASHBOARD_FILE.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_dashboard_identity_time_and_refresh(dashboard):
    assert dashboard["uid"] == "tritonops-triton"
    assert dashboard["title"] == "Triton Inference Server"
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["time"] == {"from": "now-1h", "to": "now"}
    assert dashboard["refresh"] == "30s"
    assert "triton" in dashboard["tags"]


def test_build_keeps_every_fact_of_the_hand_written_builder(dashboard):
    """Panel by panel: titles, descriptions, units, options, layout, every query (expr, legend, refId,
    instant/range, format) and every variable are those the hand-written builder produced."""
    expected = json.loads(HAND_WRITTEN_FACTS.read_text(encoding="utf-8"))
    # Panels added since (the Promotions row) come after those, which keep their ids and places.
    facts = _facts(dashboard)
    facts["panels"] = facts["panels"][: len(expected["panels"])]
    assert [panel["title"] for panel in expected["panels"]] == [panel["title"] for panel in facts["panels"]]
    assert _missing(expected, facts) == []


@pytest.mark.parametrize(
    ("change", "reported"),
    [
        (
            lambda d: d["panels"][3]["targets"][0].update(legendFormat="{{pod}}"),
            ".panels[3].targets[0].legendFormat",
        ),
        (lambda d: d["panels"][9]["fieldConfig"]["defaults"].update(unit="ms"), ".panels[9].unit"),
        (lambda d: d["panels"][4]["targets"].pop(), ".panels[4].targets"),
        (lambda d: d["panels"][1]["targets"][0].update(instant=False), ".panels[1].targets[0].instant"),
        (lambda d: d["templating"]["list"][2].pop("allValue"), ".variables[2].allValue: missing"),
        (lambda d: d["panels"][6]["gridPos"].update(x=0), ".panels[6].gridPos.x"),
    ],
    ids=["legend", "unit", "lost-target", "instant", "all-value", "layout"],
)
def test_fact_comparison_reports_a_changed_panel_or_variable(dashboard, change, reported):
    changed = copy.deepcopy(dashboard)
    change(changed)
    expected = json.loads(HAND_WRITTEN_FACTS.read_text(encoding="utf-8"))
    facts = _facts(changed)
    facts["panels"] = facts["panels"][: len(expected["panels"])]
    problems = _missing(expected, facts)
    assert problems and all(problem.startswith(reported) for problem in problems), problems


def test_template_variables(dashboard):
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert list(variables) == ["datasource", "namespace", "model", "pod"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert _variable_query(variables["namespace"]) == "label_values(nv_inference_count, namespace)"
    for name in ("model", "pod"):
        variable = variables[name]
        assert (
            _variable_query(variable)
            == f'label_values(nv_inference_count{{namespace=~"$namespace"}}, {name})'
        )
        assert variable["multi"] and variable["includeAll"]
        assert variable["allValue"] == ".*"
    for name in ("namespace", "model", "pod"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"]["uid"] == "${datasource}"
        assert variables[name]["definition"] == _variable_query(variables[name])  # Grafana's list shows it


def test_variable_ids_are_their_names(dashboard):
    """Grafana keys a dashboard's variables by `id` when the JSON has one: ids that repeat (the SDK's
    default is one nil UUID for all) would leave a single variable on the dashboard."""
    for variable in dashboard["templating"]["list"]:
        assert variable.get("id", variable["name"]) == variable["name"]


def test_every_panel_and_target_uses_the_datasource_variable(panels):
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_metric_in_every_query_filters_namespace_model_and_pod(panels):
    for title, target in _targets(panels):
        selectors = list(SELECTOR.finditer(target["expr"]))
        assert selectors, title
        for match in selectors:
            selector = match.group("selector") or ""
            assert 'namespace=~"$namespace"' in selector, (title, match.group(0))
            assert 'pod=~"$pod"' in selector, (title, match.group(0))
            if not NODE_METRIC.match(match.group("metric")):
                assert 'model=~"$model"' in selector, (title, match.group(0))


def test_no_query_divides_by_nv_inference_count(panels):
    """nv_inference_count counts batch items: per-request figures divide by successful requests."""
    for title, target in _targets(panels):
        for denominator in target["expr"].split("/")[1:]:
            assert "nv_inference_count" not in denominator, title


def test_latency_panels_are_per_successful_request(panels):
    for panel in panels:
        if panel["fieldConfig"]["defaults"]["unit"] != "µs" or panel["title"] == "p99 latency":
            continue
        (target,) = panel["targets"]
        _, denominator = target["expr"].split("/")
        assert "nv_inference_request_success" in denominator, panel["title"]
        assert "nv_inference_count" not in target["expr"], panel["title"]


def test_requests_per_second_survives_absent_failure_series(panels):
    (rps,) = [panel for panel in panels if panel["title"] == "Requests per second by model"]
    expr = rps["targets"][0]["expr"]
    assert "nv_inference_request_failure" in expr
    assert re.search(r"\)\s*or\s+sum by \(model\) \(rate\(nv_inference_request_success", expr)


def test_rate_windows_use_the_rate_interval(panels):
    windows = 0
    for title, target in _targets(panels):
        for window in re.findall(r"rate\([^\[]*\[([^\]]+)\]", target["expr"]):
            assert window == "$__rate_interval", title
            windows += 1
    assert windows, "no rate() window found: the pattern no longer matches the queries"


def test_panels_have_descriptions_and_units(panels):
    assert {panel["title"]: panel["fieldConfig"]["defaults"]["unit"] for panel in panels} == UNITS
    for panel in panels:
        assert len(panel["description"]) > 60, panel["title"]


def test_panel_ids_are_unique_and_grid_positions_do_not_overlap(dashboard):
    everything = dashboard["panels"]
    ids = [panel["id"] for panel in everything]
    assert len(ids) == len(set(ids))
    assert all(isinstance(number, int) and number > 0 for number in ids), ids
    # Grafana sorts panels by position on load: the ids then read top to bottom, left to right.
    assert everything == sorted(everything, key=lambda panel: (panel["gridPos"]["y"], panel["gridPos"]["x"]))
    occupied: dict[tuple[int, int], str] = {}
    for panel in everything:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in occupied, f"{panel['title']} overlaps {occupied[(x, y)]}"
                occupied[(x, y)] = panel["title"]
    for panel in builder.panels(dashboard):
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_panel_queries_substitute_every_grafana_variable(dashboard, panels):
    queries = builder.panel_queries(dashboard)
    assert len(queries) == len(_targets(panels))
    for title, expr, _ in queries:
        assert "$" not in expr, (title, expr)
        assert "[1m]" in expr or "rate(" not in expr, title
    gpu = {title for title, _, needs_gpu in queries if needs_gpu}
    assert gpu == {"GPU utilisation", "GPU memory"}


def test_substitution_covers_braced_forms_and_refuses_unknown_variables():
    assert builder.substitute('x{pod=~"${pod}"}[${__rate_interval}]') == 'x{pod=~".*"}[1m]'
    assert builder.substitute("x[$__range]") == "x[5m]"
    with pytest.raises(builder.errors.InputError, match=r"\$cluster"):
        builder.substitute('x{cluster="$cluster"}')


def _check_rules(promtool: str, exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """promtool has no offline PromQL parser; `check rules` parses each recording rule's expr."""
    rules = [{"record": f"tritonops:dashboard_query_{n}", "expr": expr} for n, expr in enumerate(exprs)]
    rule_file = tmp_path / "dashboard-queries.yaml"
    rule_file.write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8"
    )
    return subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=30, check=False
    )


def test_every_query_parses_with_promtool(promtool, dashboard, tmp_path):
    exprs = [expr for _, expr, _ in builder.panel_queries(dashboard)]
    result = _check_rules(promtool, exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_promtool_check_rejects_a_broken_query(promtool, tmp_path):
    result = _check_rules(promtool, ["sum(rate(nv_inference_count[1m])"], tmp_path)
    assert result.returncode == 1
    assert "parse error" in result.stderr


# Synthetic Triton series, one sample every 15 s for 150 s. Per pod, `linear` (version 1) takes 1
# request/s of 2 items each, 6 items per execution, 5000 µs per request (1000 queued, 3000 computing);
# `mlp` (version 3, triton-0 only) succeeds 1/s and fails 1/s BACKEND + 2/s REJECTED, and `linear`
# exports no failure series at all.
PODS = ("triton-0", "triton-1")
PER_POD = {
    'nv_inference_request_success{model="linear", version="1"}': "0+15x10",
    'nv_inference_count{model="linear", version="1"}': "0+30x10",
    'nv_inference_exec_count{model="linear", version="1"}': "0+5x10",
    'nv_inference_request_duration_us{model="linear", version="1"}': "0+75000x10",
    'nv_inference_queue_duration_us{model="linear", version="1"}': "0+15000x10",
    'nv_inference_compute_input_duration_us{model="linear", version="1"}': "0+3000x10",
    'nv_inference_compute_infer_duration_us{model="linear", version="1"}': "0+36000x10",
    'nv_inference_compute_output_duration_us{model="linear", version="1"}': "0+6000x10",
    'nv_cpu_memory_used_bytes{instance="x"}': "2000000000x10",
    'nv_cpu_memory_total_bytes{instance="x"}': "8000000000x10",
    'nv_gpu_utilization{gpu_uuid="GPU-0"}': "0.5x10",
    'nv_gpu_memory_used_bytes{gpu_uuid="GPU-0"}': "1000000000x10",
    'nv_gpu_memory_total_bytes{gpu_uuid="GPU-0"}': "80000000000x10",
}
ONE_POD = {
    ("triton-0", 'nv_inference_request_success{model="mlp", version="3"}'): "0+15x10",
    ("triton-0", 'nv_inference_exec_count{model="mlp", version="3"}'): "0+15x10",
    ("triton-0", 'nv_inference_request_failure{model="mlp", version="3", reason="BACKEND"}'): "0+15x10",
    ("triton-0", 'nv_inference_request_failure{model="mlp", version="3", reason="REJECTED"}'): "0+30x10",
    ("triton-0", 'nv_inference_pending_request_count{model="linear", version="1"}'): "3x10",
    ("triton-1", 'nv_inference_pending_request_count{model="linear", version="1"}'): "4x10",
    ("triton-0", 'nv_inference_request_summary_us{model="linear", version="1", quantile="0.99"}'): "7000x10",
    ("triton-1", 'nv_inference_request_summary_us{model="linear", version="1", quantile="0.99"}'): "9000x10",
    ("triton-1", 'nv_inference_request_summary_us{model="linear", version="1", quantile="0.5"}'): "99999x10",
    ("triton-0", 'nv_cpu_utilization{instance="x"}'): "0.25x10",
    ("triton-1", 'nv_cpu_utilization{instance="x"}'): "0.5x10",
}
# Each pod's agent: linear's committed version goes from 1 to 2 at 75 s; triton-0 serves 2 from then
# on, triton-1 keeps serving 1 (drifting) while its loads of version 2 fail.
AGENT_SERIES = {
    ("triton-0", 'tritonops_committed_version{model="linear"}'): "1x4 2x6",
    ("triton-1", 'tritonops_committed_version{model="linear"}'): "1x4 2x6",
    ("triton-0", 'tritonops_model_served_version{model="linear"}'): "1x4 2x6",
    ("triton-1", 'tritonops_model_served_version{model="linear"}'): "1x10",
    ("triton-0", 'tritonops_model_drift{model="linear"}'): "0x10",
    ("triton-1", 'tritonops_model_drift{model="linear"}'): "0x4 1x6",
    ("triton-0", 'tritonops_model_load_failures_total{model="linear", version="2"}'): "0x10",
    ("triton-1", 'tritonops_model_load_failures_total{model="linear", version="2"}'): "0x6 1 2 2 2",
}
GPU_0 = 'gpu_uuid="GPU-0"'
# Per panel, per target: the series the query returns (labels -> value) at 150 s.
EXPECTED: dict[str, list[dict[str, float]]] = {
    "Inferences in range": [{"{}": 600}],
    "Loaded model versions": [{'{model="linear", version="1"}': 2, '{model="mlp", version="3"}': 1}],
    "Requests per second by model": [{'{model="linear"}': 2, '{model="mlp"}': 4}],
    "Successes and failures by reason": [{"{}": 3}, {'{reason="BACKEND"}': 1, '{reason="REJECTED"}': 2}],
    "Average batch size": [{'{model="linear"}': 6}],
    "Pending requests": [{'{model="linear"}': 7}],
    "Average latency per request": [{'{model="linear"}': 5000}],
    "p99 latency": [{'{model="linear"}': 9000}],
    "Average queue time per request": [{'{model="linear"}': 1000}],
    "Average compute time per request": [{'{model="linear"}': 3000}],
    "CPU utilisation": [{'{pod="triton-0"}': 0.25, '{pod="triton-1"}': 0.5}],
    "CPU memory": [
        {f'{{pod="{pod}"}}': 2e9 for pod in PODS},
        {f'{{pod="{pod}"}}': 8e9 for pod in PODS},
    ],
    "GPU utilisation": [{f'{{pod="{pod}", {GPU_0}}}': 0.5 for pod in PODS}],
    "GPU memory": [
        {f'{{pod="{pod}", {GPU_0}}}': 1e9 for pod in PODS},
        {f'{{pod="{pod}", {GPU_0}}}': 8e10 for pod in PODS},
    ],
    "Committed vs served version": [
        {'{model="linear"}': 2},
        {'{model="linear", pod="triton-0"}': 2, '{model="linear", pod="triton-1"}': 1},
    ],
    "Drifting pods and failed loads": [{'{model="linear"}': 1}, {'{model="linear", version="2"}': 2}],
}


def _series(pod: str, series: str) -> str:
    return series.replace("{", f'{{namespace="triton-dev", pod="{pod}", ', 1)


def test_queries_compute_per_request_figures_on_synthetic_triton_series(promtool, dashboard, tmp_path):
    """Prometheus' engine (promtool test rules) evaluates every panel query on known series: latency
    is per request (5000 µs, not 2500 per item), RPS keeps models without failure series."""
    input_series = [
        {"series": _series(pod, series), "values": values}
        for pod in PODS
        for series, values in PER_POD.items()
    ]
    input_series += [
        {"series": _series(pod, series), "values": values}
        for (pod, series), values in {**ONE_POD, **AGENT_SERIES}.items()
    ]
    queries = builder.panel_queries(dashboard)
    assert sorted({title for title, _, _ in queries}) == sorted(EXPECTED)
    position: dict[str, int] = {}
    tests = []
    for title, expr, _ in queries:
        index = position[title] = position.get(title, -1) + 1
        expected = EXPECTED[title][index]
        samples = [{"labels": labels, "value": value} for labels, value in expected.items()]
        tests.append({"expr": expr, "eval_time": "150s", "exp_samples": samples})
    # The annotation marks the change of linear's committed version (at 75 s, within its window).
    ((_, annotation),) = builder.annotation_queries(dashboard)
    tests.append(
        {"expr": annotation, "eval_time": "150s", "exp_samples": [{"labels": '{model="linear"}', "value": 1}]}
    )
    # Every expected target is evaluated: a panel that lost a target must not pass unnoticed.
    assert {title: index + 1 for title, index in position.items()} == {t: len(v) for t, v in EXPECTED.items()}
    document = {
        "rule_files": [],
        "evaluation_interval": "15s",
        "tests": [{"interval": "15s", "input_series": input_series, "promql_expr_test": tests}],
    }
    promtool_runner.run(promtool, document, tmp_path, "dashboard-test.yaml")


@pytest.fixture(scope="module")
def gpu_inputs() -> gpu_series.Inputs:
    """The GPU environment's render (prod, as `make test-gpu` runs it) and the shipped dashboard's
    GPU panels, with the labels the rendered ServiceMonitor's scrape adds (namespace, pod, ...)."""
    return gpu_bundle.observability_inputs(gpu_bundle.render_gpu())


@pytest.mark.parametrize("capture", gpu_series.captures(), ids=lambda path: path.name)
def test_gpu_panels_on_series_captured_on_a_real_gpu(promtool, gpu_inputs, capture, tmp_path):
    """Every GPU panel shows the captured series with Triton's own labels: utilisation as a 0..1
    fraction (the panel's percentunit), memory used below total, one line per pod and GPU."""
    samples = gpu_series.read(capture.read_text(encoding="utf-8"))
    assert gpu_series.problems(samples) == []
    shown = gpu_series.check_panels(promtool, gpu_inputs, samples, tmp_path)["panels"]
    assert set(shown) == {"GPU utilisation", "GPU memory"}
    (utilisation,) = shown["GPU utilisation"]
    assert utilisation and all(0 <= value <= 1 for value in utilisation.values())
    used, total = shown["GPU memory"]
    assert used.keys() == total.keys() == utilisation.keys()
    assert all(0 < used[gpu] <= total[gpu] for gpu in used)
    assert all('gpu_uuid="GPU-' in labels and 'pod="' in labels for labels in used)


def test_gpu_panel_check_fails_when_a_panel_would_be_empty_on_real_series(promtool, gpu_inputs, tmp_path):
    """A GPU panel that selects a label the scrape never adds shows nothing on a real node: caught."""
    panels = tuple(
        gpu_series.Panel(
            panel.title, panel.unit, panel.expr.replace('pod=~".*"', 'pod=~".*", container="triton"')
        )
        for panel in gpu_inputs.panels
    )
    broken = dataclasses.replace(gpu_inputs, panels=panels)
    capture = gpu_series.captures()[0]
    with pytest.raises(AssertionError, match="container"):
        gpu_series.check_panels(
            promtool, broken, gpu_series.read(capture.read_text(encoding="utf-8")), tmp_path
        )
