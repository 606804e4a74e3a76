"""ServiceMonitor for the environment's Prometheus, and the helm test pod."""

from __future__ import annotations

import json

import pytest

from tritonops import errors
from tritonops.chart import environments


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_service_monitor_selects_the_metrics_port_in_the_release_namespace(rendered, env):
    item = rendered[env]
    monitor = item.one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == f"monitoring-{env}"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [f"triton-{env}"]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"},
        {
            "port": "agent-metrics",
            "path": "/metrics",
            "interval": "15s",
            "scrapeTimeout": "10s",
            "relabelings": [{"targetLabel": "job", "replacement": "triton-agent"}],
        },
    ]
    service_labels = item.one("Service")["metadata"]["labels"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    # An empty selector would match every Service in the namespace.
    assert selector and selector.items() <= service_labels.items()


def test_service_monitor_is_toggled(render_with):
    assert not render_with("dev", {"monitoring": {"serviceMonitor": {"enabled": False}}}).of_kind(
        "ServiceMonitor"
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"monitoring": {"releaseLabel": ""}},
            r"monitoring\.releaseLabel: set the release label",
        ),
        (
            {"server": {"metrics": {"enabled": False}}},
            r"monitoring\.serviceMonitor\.enabled: needs server\.metrics\.enabled=true",
        ),
        ({"helmTest": {"model": ""}}, r"helmTest\.model: name the model"),
    ],
    ids=["monitor-without-release-label", "monitor-without-metrics", "test-without-model"],
)
def test_monitoring_and_test_guards(render_with, values, message):
    with pytest.raises(errors.RenderError, match=message):
        render_with("dev", values)


def test_helm_test_without_a_request_body_is_refused():
    # The platform's base values set a request; a chart user enabling the test on the chart
    # defaults alone (empty request) must be told what is missing.
    import helm_python

    chart = helm_python.Chart.load(str(environments.CHART_DIR))
    values = {
        "helmTest": {"enabled": True, "model": "linear"},
        "modelRepository": {"pvc": {"existingClaim": "m"}},
    }
    with pytest.raises(
        helm_python.HelmRenderError, match=r"helmTest\.request: give the KServe v2 request body"
    ):
        chart.render(values, name="triton", namespace="default")


def test_helm_test_pod_checks_readiness_and_sends_one_inference(rendered):
    pod = rendered["dev"].one("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TRITON_URL"] == "http://triton.triton-dev.svc:8000"
    assert env["MODEL"] == "linear"
    assert json.loads(env["REQUEST"])["inputs"][0]["shape"] == [1, 4]
    script = container["command"][2]
    assert "/v2/models/$MODEL/ready" in script
    assert "/v2/models/$MODEL/infer" in script
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert next(m for m in rendered["dev"].manifests if m.kind == "Pod").is_test_hook


def test_extra_objects_are_rendered_with_templating(render_with):
    extra = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "{{ .Release.Name }}-extra", "namespace": "{{ .Release.Namespace }}"},
    }
    item = render_with("dev", {"extraObjects": [extra]})
    names = [m.name for m in item.of_kind("ConfigMap")]
    assert "triton-extra" in names


def test_dashboard_configmap_ships_the_generated_dashboard_for_the_sidecar(rendered):
    (dashboard,) = [m.body for m in rendered["prod"].of_kind("ConfigMap") if m.name == "triton-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    committed = (environments.CHART_DIR / "dashboards" / "triton.json").read_text()
    assert json.loads(dashboard["data"]["triton.json"]) == json.loads(committed)


def test_dashboard_label_folder_and_namespace_are_values(render_with):
    item = render_with(
        "dev",
        {
            "monitoring": {
                "dashboard": {
                    "sidecarLabel": "dash",
                    "sidecarLabelValue": "yes",
                    "folder": "ML",
                    "namespace": "monitoring",
                }
            }
        },
    )
    (dashboard,) = [m.body for m in item.of_kind("ConfigMap") if m.name == "triton-dashboard"]
    assert dashboard["metadata"]["labels"]["dash"] == "yes"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "ML"}
    assert dashboard["metadata"]["namespace"] == "monitoring"


@pytest.mark.parametrize("feature", ["prometheusRule", "dashboard"])
def test_monitoring_objects_are_toggled(render_with, feature):
    item = render_with("dev", {"monitoring": {feature: {"enabled": False}}})
    kinds = [m.kind + "/" + m.name for m in item.manifests]
    assert (
        "PrometheusRule/triton" not in kinds
        if feature == "prometheusRule"
        else "ConfigMap/triton-dashboard" not in kinds
    )
