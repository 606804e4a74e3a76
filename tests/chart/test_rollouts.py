"""Rollouts drop no requests; PDB and HPA are guarded against configurations that hurt."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from tests.chart.helpers import pod_spec, triton_container
from tritonops import errors
from tritonops.chart import environments


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_rolling_update_never_removes_a_serving_pod_first(rendered, env):
    strategy = rendered[env].one("Deployment")["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_grace_period_exceeds_prestop_sleep_plus_exit_timeout(rendered, env):
    item = rendered[env]
    sleep = int(triton_container(item)["lifecycle"]["preStop"]["exec"]["command"][1])
    assert sleep == 15
    exit_timeout = item.values["server"]["exitTimeoutSeconds"]
    assert pod_spec(item)["terminationGracePeriodSeconds"] == sleep + exit_timeout + 15


def test_explicit_grace_period_shorter_than_the_drain_is_refused(render_with):
    with pytest.raises(
        errors.RenderError, match=r"rollout\.terminationGracePeriodSeconds: must exceed .* \(45\)"
    ):
        render_with("dev", {"rollout": {"terminationGracePeriodSeconds": 40}})


def test_explicit_grace_period_is_used(render_with):
    assert (
        pod_spec(render_with("dev", {"rollout": {"terminationGracePeriodSeconds": 120}}))[
            "terminationGracePeriodSeconds"
        ]
        == 120
    )


@pytest.mark.parametrize(
    ("pdb", "expected"),
    [
        ({"minAvailable": 1}, {"minAvailable": 1}),
        ({"minAvailable": None, "maxUnavailable": "25%"}, {"maxUnavailable": "25%"}),
    ],
    ids=["min-available", "max-unavailable-percent"],
)
def test_pdb_takes_one_budget(render_with, pdb, expected):
    item = render_with("dev", {"replicaCount": 3, "podDisruptionBudget": {"enabled": True, **pdb}})
    spec = item.one("PodDisruptionBudget")["spec"]
    budget = {k: v for k, v in spec.items() if k not in ("selector", "unhealthyPodEvictionPolicy")}
    assert budget == expected
    assert spec["selector"]["matchLabels"] == item.one("Deployment")["spec"]["selector"]["matchLabels"]


def test_a_not_ready_pod_never_blocks_a_node_drain(rendered):
    # With the API default (IfHealthyBudget) a running pod that is not ready (crash-looping,
    # committed model missing) can be evicted only while the budget holds: in prod's minimum of two
    # replicas, one ready pod and one unready pod would block every drain of the unready pod's node.
    pdb = rendered["prod"].one("PodDisruptionBudget")
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    # The field exists at the chart's kubeVersion floor (beta and on by default from 1.27).
    floor = yaml.safe_load((environments.CHART_DIR / "Chart.yaml").read_text(encoding="utf-8"))["kubeVersion"]
    assert floor == ">=1.27.0-0"
    kubernetes_validate.validate(pdb, "1.27.0", strict=True)


def test_unhealthy_pod_eviction_policy_is_a_closed_choice(render_with):
    item = render_with("prod", {"podDisruptionBudget": {"unhealthyPodEvictionPolicy": "IfHealthyBudget"}})
    assert item.one("PodDisruptionBudget")["spec"]["unhealthyPodEvictionPolicy"] == "IfHealthyBudget"
    with pytest.raises(errors.ValuesError, match=r"podDisruptionBudget\.unhealthyPodEvictionPolicy"):
        render_with("prod", {"podDisruptionBudget": {"unhealthyPodEvictionPolicy": "Always"}})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"replicaCount": 1, "podDisruptionBudget": {"enabled": True, "minAvailable": 1}},
            r"podDisruptionBudget\.minAvailable: 1 would block every node drain",
        ),
        (
            {
                "replicaCount": 3,
                "podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1},
            },
            r"podDisruptionBudget: set exactly one",
        ),
        (
            {"autoscaling": {"enabled": True, "queueTime": {"enabled": False}, "cpu": {"enabled": False}}},
            r"autoscaling: enable queueTime or cpu",
        ),
        (
            {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
            r"autoscaling\.minReplicas: must not exceed",
        ),
    ],
    ids=["pdb-blocks-drains", "pdb-two-budgets", "hpa-without-metric", "hpa-min-above-max"],
)
def test_disruption_and_scaling_guards(render_with, values, message):
    with pytest.raises(errors.RenderError, match=message):
        render_with("dev", values)


def test_hpa_scales_on_queue_time_per_request(rendered):
    spec = rendered["prod"].one("HorizontalPodAutoscaler")["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "triton"}
    assert spec["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "triton_queue_time_per_request_us"},
                "target": {"type": "AverageValue", "averageValue": "20000"},
            },
        }
    ]


def test_hpa_external_metric_and_cpu_fallback(render_with):
    item = render_with(
        "dev",
        {
            "autoscaling": {
                "enabled": True,
                "queueTime": {"type": "External", "selector": {"matchLabels": {"namespace": "triton-dev"}}},
                "cpu": {"enabled": True, "targetUtilization": 70},
            }
        },
    )
    metrics = item.one("HorizontalPodAutoscaler")["spec"]["metrics"]
    assert metrics[0]["type"] == "External"
    assert metrics[0]["external"]["metric"]["selector"] == {"matchLabels": {"namespace": "triton-dev"}}
    assert metrics[1] == {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
    }
    assert "replicas" not in item.one("Deployment")["spec"]
