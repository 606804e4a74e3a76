"""The optional KEDA ScaledObject (autoscaling.engine=keda): the alternative to the chart's HPA,
never rendered beside it, owning the Deployment's replicas, scaling on the mean over the release's
pods of the queue time per request the prometheus-adapter rule serves per pod."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.chart import helpers
from tritonops import errors
from tritonops.chart import custom_resources, gates

SERVER = "http://prometheus-operated.monitoring.svc:9090"
KEDA = {"autoscaling": {"engine": "keda", "keda": {"serverAddress": SERVER}}}


def _with(overrides: dict[str, Any]) -> dict[str, Any]:
    """KEDA's values merged with `overrides` under autoscaling (one level deep is enough here)."""
    merged = copy.deepcopy(KEDA)
    for key, value in overrides.items():
        if isinstance(value, dict):
            merged["autoscaling"].setdefault(key, {}).update(value)
        else:
            merged["autoscaling"][key] = value
    return merged


def _trigger(scaled_object: dict[str, Any]) -> dict[str, Any]:
    (trigger,) = [t for t in scaled_object["spec"]["triggers"] if t["type"] == "prometheus"]
    return trigger


def test_prod_renders_the_hpa_and_no_scaled_object_by_default(rendered):
    assert rendered["prod"].of_kind("HorizontalPodAutoscaler")
    assert not rendered["prod"].of_kind("ScaledObject")


def test_keda_replaces_the_hpa_and_owns_the_deployments_replicas(render_with):
    item = render_with("prod", KEDA)
    assert not item.of_kind("HorizontalPodAutoscaler")
    scaled = item.one("ScaledObject")
    deployment = item.one("Deployment")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["metadata"]["namespace"] == deployment["metadata"]["namespace"] == "triton-prod"
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert "replicas" not in deployment["spec"]
    # prod's autoscaling values: 2..8 replicas, 20 ms of queue time per request, the HPA's behaviour.
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (2, 8)
    assert (
        scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        == item.values["autoscaling"]["behavior"]
    )
    trigger = _trigger(scaled)
    assert trigger["metricType"] == "Value"
    assert trigger["metadata"]["serverAddress"] == SERVER
    assert trigger["metadata"]["threshold"] == "20000"
    assert 'namespace="triton-prod", job="triton"' in trigger["metadata"]["query"]
    assert "authenticationRef" not in trigger and "fallback" not in scaled["spec"]


def test_no_scaled_object_without_autoscaling(render_with):
    item = render_with("dev", {"autoscaling": {"enabled": False, "engine": "keda"}})
    assert not item.of_kind("ScaledObject") and not item.of_kind("HorizontalPodAutoscaler")
    assert item.one("Deployment")["spec"]["replicas"] == item.values["replicaCount"]


def test_query_threshold_and_options_as_configured(render_with):
    query = 'avg(triton:queue_time_us:mean1m{namespace="triton-prod"})'
    overrides = {
        "minReplicas": 3,
        "maxReplicas": 5,
        "queueTime": {"targetAverageValue": "12500.5"},
        "cpu": {"enabled": True, "targetUtilization": 70},
        "keda": {
            "query": query,
            "pollingInterval": 30,
            "cooldownPeriod": 120,
            "authenticationRef": {"name": "prometheus-auth", "kind": "ClusterTriggerAuthentication"},
            "fallback": {"failureThreshold": 3, "replicas": 4},
        },
    }
    scaled = render_with("prod", _with(overrides)).one("ScaledObject")
    spec, trigger = scaled["spec"], _trigger(scaled)
    assert trigger["metadata"]["query"] == query
    assert trigger["metadata"]["threshold"] == "12500.5"
    assert trigger["authenticationRef"] == {"name": "prometheus-auth", "kind": "ClusterTriggerAuthentication"}
    assert spec["fallback"] == {"failureThreshold": 3, "replicas": 4}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (3, 5)
    assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (30, 120)
    assert {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}} in spec["triggers"]


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"keda": {"serverAddress": ""}}, r"^autoscaling\.keda\.serverAddress: required"),
        (
            {"queueTime": {"enabled": False}, "cpu": {"enabled": True}},
            r"^autoscaling\.queueTime\.enabled: the KEDA ScaledObject",
        ),
        ({"queueTime": {"targetAverageValue": "20k"}}, r"^autoscaling\.queueTime\.targetAverageValue: KEDA"),
    ],
    ids=["no-server-address", "no-queue-time", "quantity-threshold"],
)
def test_bad_keda_combinations_fail_naming_the_value(render_with, overrides, path):
    with pytest.raises(errors.RenderError, match=path):
        render_with("prod", _with(overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        {"engine": "both"},
        {"keda": {"fallback": {"replicas": 4}}},
        {"keda": {"authenticationRef": {"kind": "TriggerAuthentication"}}},
        {"keda": {"serverAddress": "prometheus:9090"}},
    ],
    ids=["unknown-engine", "fallback-without-threshold", "auth-without-name", "address-without-scheme"],
)
def test_schema_rejects_malformed_keda_values(render_with, overrides):
    with pytest.raises(errors.ValuesError, match=r"autoscaling\.(engine|keda)"):
        render_with("prod", _with(overrides))


def test_keda_render_passes_the_gates(render_with):
    item = render_with("prod", KEDA)
    assert gates.custom_resource_checks(item) == []
    assert gates.values_schema(item) == []


def test_the_scaled_object_check_catches_what_keda_would_fight_or_reject(render_with):
    item = render_with("prod", KEDA)
    scaled = item.one("ScaledObject")
    deployment = copy.deepcopy(item.one("Deployment"))
    deployment["spec"]["replicas"] = 2
    hpa = {
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"namespace": "triton-prod", "name": "x"},
        "spec": {"scaleTargetRef": {"name": deployment["metadata"]["name"]}},
    }
    bad = copy.deepcopy(scaled)
    bad["spec"]["triggers"][0]["metadata"]["threshold"] = "20k"
    problems = custom_resources.check_scaled_object(bad, [deployment, hpa])
    assert any("sets replicas" in p for p in problems)
    assert any("HorizontalPodAutoscaler scales the same Deployment" in p for p in problems)
    assert any("threshold: '20k' is not a number" in p for p in problems)
    assert custom_resources.check_scaled_object(scaled, []) == [
        "spec.scaleTargetRef: names no rendered Deployment in the namespace"
    ]


def test_default_query_is_the_mean_over_the_releases_pods(render_with, tmp_path: Path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    query = _trigger(render_with("prod", KEDA).one("ScaledObject"))["metadata"]["query"]
    labels = 'namespace="{ns}",job="{job}",pod="{pod}",model="m1"'
    series = {}
    for ns, job, pod, queue, success in [
        # 1000 us of queue time per second over 10 requests per second: 100 us per request.
        ("triton-prod", "triton", "triton-a", "0+15000x20", "0+150x20"),
        # Idle: 0 / 0 would be NaN; the floor makes it 0, so the mean is 50.
        ("triton-prod", "triton", "triton-b", "0x20", "0x20"),
        # Another release's job and another namespace are not this release's pods.
        ("triton-prod", "other", "other-a", "0+99000x20", "0+15x20"),
        ("triton-dev", "triton", "triton-a", "0+99000x20", "0+15x20"),
    ]:
        matchers = labels.format(ns=ns, job=job, pod=pod)
        series[f"nv_inference_queue_duration_us{{{matchers}}}"] = queue
        series[f"nv_inference_request_success{{{matchers}}}"] = success
    helpers.assert_promql_evaluates(promtool, tmp_path, series, query, [{"labels": "{}", "value": 50}])
