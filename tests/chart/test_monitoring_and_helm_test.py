"""ServiceMonitor for the environment's Prometheus, and the helm test pod."""

from __future__ import annotations

import json

import pytest

from tritonops import environments, errors


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_service_monitor_selects_the_metrics_port_in_the_release_namespace(rendered, env):
    item = rendered[env]
    monitor = item.one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == f"monitoring-{env}"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [f"triton-{env}"]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    ]
    service_labels = item.one("Service")["metadata"]["labels"]
    for key, value in monitor["spec"]["selector"]["matchLabels"].items():
        assert service_labels[key] == value


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
