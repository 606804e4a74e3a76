"""The prometheus-adapter rule that serves the HPA's queue-time metric (monitoring/prometheus-adapter):
it exposes the name the chart's HPA asks for, per pod, and its query computes queue time per
request, checked by evaluating it with promtool on synthetic series."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.chart import helpers
from tritonops.chart import environments

ADAPTER_VALUES = helpers.ADAPTER_VALUES


def test_adapter_exposes_the_per_pod_metric_the_prod_hpa_scales_on(rendered):
    rule = helpers.adapter_rule()
    (metric,) = [
        m for m in rendered["prod"].one("HorizontalPodAutoscaler")["spec"]["metrics"] if m["type"] == "Pods"
    ]
    assert rule["name"]["as"] == metric["pods"]["metric"]["name"] == "triton_queue_time_per_request_us"
    # A Pods metric is looked up per pod of the namespace: both labels must map to those resources.
    assert rule["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"},
        "pod": {"resource": "pod"},
    }
    assert rule["seriesQuery"].startswith("nv_inference_queue_duration_us{")


def test_adapter_query_is_queue_time_per_request_per_pod(tmp_path: Path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    series = {
        # pod a serves two models: 1000 + 2000 us of queue time per second over 10 + 10 requests per second.
        'nv_inference_queue_duration_us{namespace="triton-prod",pod="triton-a",model="m1"}': "0+15000x20",
        'nv_inference_request_success{namespace="triton-prod",pod="triton-a",model="m1"}': "0+150x20",
        'nv_inference_queue_duration_us{namespace="triton-prod",pod="triton-a",model="m2"}': "0+30000x20",
        'nv_inference_request_success{namespace="triton-prod",pod="triton-a",model="m2"}': "0+150x20",
        # pod b is idle: 0 / 0 would be NaN, which the HPA cannot use.
        'nv_inference_queue_duration_us{namespace="triton-prod",pod="triton-b",model="m1"}': "0x20",
        'nv_inference_request_success{namespace="triton-prod",pod="triton-b",model="m1"}': "0x20",
        # Another namespace's pod of the same name is not asked for.
        'nv_inference_queue_duration_us{namespace="triton-dev",pod="triton-a",model="m1"}': "0+99000x20",
        'nv_inference_request_success{namespace="triton-dev",pod="triton-a",model="m1"}': "0+15x20",
    }
    helpers.assert_promql_evaluates(
        promtool,
        tmp_path,
        series,
        helpers.adapter_query(helpers.adapter_rule(), "triton-prod", ["triton-a", "triton-b"]),
        [{"labels": '{pod="triton-a"}', "value": 150}, {"labels": '{pod="triton-b"}', "value": 0}],
    )


def test_chart_readme_shows_the_rule_as_deployed():
    readme = (environments.CHART_DIR / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Autoscaling") :]
    block = section[
        section.index("```yaml\n") + len("```yaml\n") : section.index("```\n", section.index("```yaml"))
    ]
    assert (
        yaml.safe_load(block)["rules"] == yaml.safe_load(ADAPTER_VALUES.read_text(encoding="utf-8"))["rules"]
    )
