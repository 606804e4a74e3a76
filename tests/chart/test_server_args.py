"""The tritonserver command line is built from values, not free text."""

from __future__ import annotations

import pytest
import yaml

from tests.chart.helpers import server_args, triton_container
from tritonops.chart import environments

APP_VERSION = yaml.safe_load((environments.CHART_DIR / "Chart.yaml").read_text())["appVersion"]


def test_default_command_line_for_dev(rendered):
    args = server_args(rendered["dev"])
    assert args[0] == "tritonserver"
    for expected in (
        "--model-repository=/models",
        "--model-control-mode=explicit",
        "--load-model=linear",
        "--strict-readiness=false",
        "--exit-on-error=true",
        "--exit-timeout-secs=30",
        "--http-port=8000",
        "--grpc-port=8001",
        "--metrics-port=8002",
        "--log-format=ISO8601",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
    ):
        assert expected in args
    assert not [arg for arg in args if arg.startswith("--cache-config")]


def test_gpu_metrics_follow_gpu_scheduling(rendered):
    assert "--allow-gpu-metrics=true" in server_args(rendered["prod"])


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"server": {"log": {"verbose": 2, "format": "default"}}},
            ["--log-verbose=2", "--log-format=default"],
        ),
        (
            {"server": {"metrics": {"summaryQuantiles": "0.5:0.05,0.99:0.001"}}},
            ["--metrics-config=summary_quantiles=0.5:0.05,0.99:0.001"],
        ),
        (
            {
                "server": {
                    "rateLimit": {
                        "mode": "execution_count",
                        "resources": [{"name": "R1", "count": 4, "device": 0}],
                    }
                }
            },
            ["--rate-limit=execution_count", "--rate-limit-resource=R1:4:0"],
        ),
        (
            {"server": {"responseCache": {"enabled": True, "sizeBytes": 1048576}}},
            ["--cache-config=local,size=1048576"],
        ),
        ({"server": {"exitTimeoutSeconds": 10}}, ["--exit-timeout-secs=10"]),
        (
            {"server": {"extraArgs": ["--backend-config=onnxruntime,enable-global-threadpool=1"]}},
            ["--backend-config=onnxruntime,enable-global-threadpool=1"],
        ),
        ({"server": {"loadModels": ["a", "b"]}}, ["--load-model=a", "--load-model=b"]),
        (
            {"ports": {"http": 9000, "grpc": 9001, "metrics": 9002}},
            ["--http-port=9000", "--grpc-port=9001", "--metrics-port=9002"],
        ),
    ],
    ids=[
        "log",
        "summary-quantiles",
        "rate-limit",
        "response-cache",
        "exit-timeout",
        "extra-args",
        "load-models",
        "ports",
    ],
)
def test_server_flags_come_from_values(render_with, overrides, expected):
    args = server_args(render_with("dev", overrides))
    for flag in expected:
        assert flag in args


def test_summary_latencies_follow_the_value(rendered, render_with):
    # values/base.yaml turns summaries on, so an override to true proves nothing: turn them off.
    assert "--metrics-config=summary_latencies=true" in server_args(rendered["dev"])
    off = server_args(render_with("dev", {"server": {"metrics": {"summaryLatencies": False}}}))
    assert [arg for arg in off if arg.startswith("--metrics-config")] == []


def test_metrics_off_removes_the_port_everywhere(render_with):
    item = render_with(
        "dev",
        {"server": {"metrics": {"enabled": False}}, "monitoring": {"serviceMonitor": {"enabled": False}}},
    )
    assert "--allow-metrics=false" in server_args(item)
    assert "--metrics-port=8002" not in server_args(item)
    assert "metrics" not in [p["name"] for p in triton_container(item)["ports"]]
    assert "metrics" not in [p["name"] for p in item.one("Service")["spec"]["ports"]]


def test_named_ports_on_container_and_service(rendered):
    item = rendered["dev"]
    container_ports = {p["name"]: p["containerPort"] for p in triton_container(item)["ports"]}
    assert container_ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    service_ports = {p["name"]: p["targetPort"] for p in item.one("Service")["spec"]["ports"]}
    assert service_ports == {
        "http": "http",
        "grpc": "grpc",
        "metrics": "metrics",
        "agent-metrics": "agent-metrics",
    }


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ({}, f"nvcr.io/nvidia/tritonserver:{APP_VERSION}"),
        ({"tag": "24.09-py3"}, "nvcr.io/nvidia/tritonserver:24.09-py3"),
        (
            {"digest": "sha256:" + "a" * 64, "tag": "24.09-py3"},
            "nvcr.io/nvidia/tritonserver@sha256:" + "a" * 64,
        ),
        ({"repository": "registry.local/triton"}, f"registry.local/triton:{APP_VERSION}"),
    ],
    ids=["tag-defaults-to-appVersion", "explicit-tag", "digest-wins", "mirror"],
)
def test_image_reference(render_with, image, expected):
    assert triton_container(render_with("dev", {"image": image}))["image"] == expected


def test_image_pull_secrets_are_passed_to_the_pod(render_with):
    item = render_with("dev", {"imagePullSecrets": [{"name": "ngc"}]})
    assert item.one("Deployment")["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "ngc"}]
