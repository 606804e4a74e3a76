"""The chart's recording rules and alerts, unit-tested with `promtool test rules` on realistic
series: every alert fires when it should and stays silent when it should not (batch sizes > 1,
failures of every reason, the target-down and metrics-missing cases)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tritonops import monitoring, rendering

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (make setup installs Debian's prometheus)"
)

NS = "triton-dev"
BASE = {"namespace": NS, "job": "triton", "pod": "triton-0", "instance": "10.0.0.1:8002", "service": "triton"}


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    merged = {**BASE, **labels}
    text = ",".join(f'{key}="{value}"' for key, value in merged.items())
    return {"series": f"{metric}{{{text}}}", "values": values}


def model_series(metric: str, values: str, model: str = "linear", **labels: str) -> dict[str, str]:
    return series(metric, values, model=model, version="1", **labels)


def alert(name: str, at: str, expected: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": name,
        "exp_alerts": [{"exp_labels": {"alertname": name, "namespace": NS, **labels}} for labels in expected],
    }


def traffic(
    model: str,
    *,
    requests_per_step: int,
    batch: int,
    duration_us_per_request: int,
    queue_us_per_request: int = 0,
) -> list[dict[str, str]]:
    """Counters for 20 minutes at a 15 s step: requests, items (= requests x batch), executions."""
    steps = 80
    return [
        model_series("nv_inference_request_success", f"0+{requests_per_step}x{steps}", model),
        model_series("nv_inference_count", f"0+{requests_per_step * batch}x{steps}", model),
        model_series("nv_inference_exec_count", f"0+{requests_per_step}x{steps}", model),
        model_series(
            "nv_inference_request_duration_us",
            f"0+{requests_per_step * duration_us_per_request}x{steps}",
            model,
        ),
        model_series(
            "nv_inference_queue_duration_us", f"0+{requests_per_step * queue_us_per_request}x{steps}", model
        ),
    ]


def alert_tests() -> list[dict[str, Any]]:
    """One promtool test group per behaviour; defaults: dev values (see charts/triton/values.yaml)."""
    return [
        {
            "name": "target down fires after 5m; a healthy target stays silent",
            "interval": "15s",
            "input_series": [
                series("up", "1x4 0x60", pod="triton-0"),
                series("up", "1x64", pod="triton-1", instance="10.0.0.2:8002"),
            ],
            "alert_rule_test": [
                alert("TritonTargetDown", "3m", []),
                alert(
                    "TritonTargetDown",
                    "12m",
                    [
                        {
                            "severity": "critical",
                            "pod": "triton-0",
                            "instance": "10.0.0.1:8002",
                            "job": "triton",
                            "service": "triton",
                        }
                    ],
                ),
                alert("TritonMetricsMissing", "12m", []),
            ],
        },
        {
            "name": "metrics missing fires when no target is up at all, and when none exists",
            "interval": "15s",
            "input_series": [series("up", "0x60")],
            "alert_rule_test": [
                alert("TritonMetricsMissing", "3m", []),
                alert("TritonMetricsMissing", "10m", [{"severity": "critical"}]),
            ],
        },
        {
            "name": "no series at all: metrics missing still fires",
            "interval": "15s",
            "input_series": [{"series": 'unrelated_metric{job="other"}', "values": "1x60"}],
            "alert_rule_test": [alert("TritonMetricsMissing", "10m", [{"severity": "critical"}])],
        },
        {
            "name": "per-request latency: 300 ms per request at batch 8 fires (37.5 ms per item would not)",
            "interval": "15s",
            "input_series": traffic("linear", requests_per_step=2, batch=8, duration_us_per_request=300_000)
            + traffic("mlp", requests_per_step=2, batch=8, duration_us_per_request=200_000),
            "alert_rule_test": [
                alert("TritonHighMeanLatency", "5m", []),
                alert("TritonHighMeanLatency", "15m", [{"severity": "warning", "model": "linear"}]),
            ],
            "promql_expr_test": [
                {
                    "expr": "triton:request_latency_us:mean1m",
                    "eval_time": "10m",
                    "exp_samples": [
                        {
                            "labels": f'triton:request_latency_us:mean1m{{model="linear",namespace="{NS}"}}',
                            "value": 300000,
                        },
                        {
                            "labels": f'triton:request_latency_us:mean1m{{model="mlp",namespace="{NS}"}}',
                            "value": 200000,
                        },
                    ],
                },
                {
                    "expr": "triton:batch_size:mean1m",
                    "eval_time": "10m",
                    "exp_samples": [
                        {
                            "labels": f'triton:batch_size:mean1m{{model="linear",namespace="{NS}"}}',
                            "value": 8,
                        },
                        {"labels": f'triton:batch_size:mean1m{{model="mlp",namespace="{NS}"}}', "value": 8},
                    ],
                },
            ],
        },
        {
            "name": "queue time per request above 50 ms for 10m fires; 20 ms does not",
            "interval": "15s",
            "input_series": traffic(
                "linear",
                requests_per_step=4,
                batch=2,
                duration_us_per_request=100_000,
                queue_us_per_request=80_000,
            )
            + traffic(
                "mlp",
                requests_per_step=4,
                batch=2,
                duration_us_per_request=100_000,
                queue_us_per_request=20_000,
            ),
            "alert_rule_test": [
                alert("TritonQueueTimeHigh", "8m", []),
                alert("TritonQueueTimeHigh", "15m", [{"severity": "warning", "model": "linear"}]),
            ],
        },
        {
            "name": "error ratio counts every failure reason, not only execution failures",
            "interval": "15s",
            "input_series": [
                model_series("nv_inference_request_success", "0+90x80"),
                model_series("nv_inference_request_failure", "0+10x80", reason="REJECTED"),
                model_series("nv_inference_request_failure", "0x80", reason="BACKEND"),
                model_series("nv_inference_request_success", "0+99x80", model="mlp"),
                model_series("nv_inference_request_failure", "0+1x80", model="mlp", reason="REJECTED"),
            ],
            "alert_rule_test": [
                alert("TritonErrorRatioHigh", "3m", []),
                alert("TritonErrorRatioHigh", "10m", [{"severity": "critical", "model": "linear"}]),
            ],
        },
        {
            "name": "error ratio at negligible traffic stays silent",
            "interval": "15s",
            "input_series": [
                model_series("nv_inference_request_success", "0+0x40 1+0x40"),
                model_series("nv_inference_request_failure", "0+0x40 1+0x40", reason="REJECTED"),
            ],
            "alert_rule_test": [alert("TritonErrorRatioHigh", "15m", [])],
        },
        {
            "name": "a model that disappears from a pod fires model unavailable",
            "interval": "15s",
            "input_series": [
                model_series("nv_inference_exec_count", "0+1x20 stale"),
                model_series("nv_inference_exec_count", "0+1x60", model="mlp"),
            ],
            "alert_rule_test": [
                alert("TritonModelUnavailable", "4m", []),
                alert(
                    "TritonModelUnavailable",
                    "12m",
                    [{"severity": "critical", "model": "linear", "pod": "triton-0"}],
                ),
            ],
        },
        {
            "name": "p99 latency from Triton's summary",
            "interval": "15s",
            "input_series": [
                model_series("nv_inference_request_summary_us", "1500000x80", quantile="0.99"),
                model_series("nv_inference_request_summary_us", "900000x80", model="mlp", quantile="0.99"),
            ],
            "alert_rule_test": [
                alert("TritonHighP99Latency", "15m", [{"severity": "warning", "model": "linear"}])
            ],
        },
        {
            "name": "a running pod that is not ready (committed models not serving) fires model load failing",
            "interval": "15s",
            "input_series": [
                {
                    "series": f'kube_pod_status_ready{{namespace="{NS}",pod="triton-7d9f-abcde",condition="true"}}',
                    "values": "0x80",
                },
                {
                    "series": f'kube_pod_status_phase{{namespace="{NS}",pod="triton-7d9f-abcde",phase="Running"}}',
                    "values": "1x80",
                },
                {
                    "series": f'kube_pod_status_ready{{namespace="{NS}",pod="triton-7d9f-fghij",condition="true"}}',
                    "values": "1x80",
                },
                {
                    "series": f'kube_pod_status_phase{{namespace="{NS}",pod="triton-7d9f-fghij",phase="Running"}}',
                    "values": "1x80",
                },
            ],
            "alert_rule_test": [
                alert("TritonModelLoadFailing", "5m", []),
                alert(
                    "TritonModelLoadFailing",
                    "15m",
                    [{"severity": "critical", "pod": "triton-7d9f-abcde", "condition": "true"}],
                ),
            ],
        },
        {
            "name": "restarts every few minutes fire crash looping",
            "interval": "1m",
            "input_series": [
                {
                    "series": f'kube_pod_container_status_restarts_total{{namespace="{NS}",pod="triton-a",container="triton"}}',
                    "values": "0+1x30",
                },
                {
                    "series": f'kube_pod_container_status_restarts_total{{namespace="{NS}",pod="triton-b",container="triton"}}',
                    "values": "0x30",
                },
            ],
            "alert_rule_test": [
                alert("TritonPodCrashLooping", "2m", []),
                alert(
                    "TritonPodCrashLooping",
                    "20m",
                    [{"severity": "critical", "pod": "triton-a", "container": "triton"}],
                ),
            ],
        },
        {
            "name": "GPU memory above 95 % fires; 50 % does not",
            "interval": "15s",
            "input_series": [
                series("nv_gpu_memory_used_bytes", "96x40", gpu_uuid="GPU-a"),
                series("nv_gpu_memory_total_bytes", "100x40", gpu_uuid="GPU-a"),
                series("nv_gpu_memory_used_bytes", "50x40", gpu_uuid="GPU-b"),
                series("nv_gpu_memory_total_bytes", "100x40", gpu_uuid="GPU-b"),
            ],
            "alert_rule_test": [
                alert(
                    "TritonGPUMemoryCritical",
                    "8m",
                    [{"severity": "critical", "pod": "triton-0", "gpu_uuid": "GPU-a"}],
                )
            ],
        },
        {
            "name": "2 % errors burn fast (page) and slow (warn); 0.2 % stays under both",
            "interval": "1m",
            "input_series": [
                model_series("nv_inference_request_success", "0+980x120"),
                model_series("nv_inference_request_failure", "0+20x120", reason="BACKEND"),
                model_series("nv_inference_request_success", "0+998x120", model="mlp"),
                model_series("nv_inference_request_failure", "0+2x120", model="mlp", reason="BACKEND"),
            ],
            "alert_rule_test": [
                alert(
                    "TritonErrorBudgetBurn",
                    "90m",
                    [{"severity": "critical", "model": "linear"}, {"severity": "warning", "model": "linear"}],
                ),
            ],
        },
        {
            "name": "0.8 % errors burn slowly: a warning, no page",
            "interval": "1m",
            "input_series": [
                model_series("nv_inference_request_success", "0+992x420"),
                model_series("nv_inference_request_failure", "0+8x420", reason="BACKEND"),
            ],
            "alert_rule_test": [
                alert("TritonErrorBudgetBurn", "6h30m", [{"severity": "warning", "model": "linear"}]),
            ],
        },
    ]


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory) -> Path:
    """The dev render's rules; annotations (prose, covered below) are dropped for promtool's
    exact-match comparison, the firing logic is untouched."""
    rules = monitoring.rule_file(rendering.render("dev"), annotations=False)
    path = tmp_path_factory.mktemp("rules") / "triton-rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def test_promtool_checks_the_rendered_rules(rule_file):
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 23 rules found" in result.stdout


def test_every_alert_fires_when_it_should_and_only_then(rule_file, tmp_path):
    tests = {"rule_files": [str(rule_file)], "evaluation_interval": "30s", "tests": alert_tests()}
    test_file = tmp_path / "triton-rules.test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    start = time.perf_counter()
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    print(f"promtool test rules: {len(tests['tests'])} groups in {elapsed:.2f} s")


def test_every_alert_is_covered_by_a_unit_test():
    alerts = {
        rule["alert"]
        for group in monitoring.rule_file(rendering.render("dev"))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    tested = {case["alertname"] for group in alert_tests() for case in group.get("alert_rule_test", [])}
    assert alerts == tested


def test_every_alert_carries_severity_namespace_summary_and_runbook():
    for env in ("dev", "prod"):
        for group in monitoring.rule_file(rendering.render(env))["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
                assert rule["labels"]["namespace"] == f"triton-{env}", rule["alert"]
                assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
                assert rule["annotations"]["runbook_url"].endswith("#" + rule["alert"].lower()), rule["alert"]


def test_latency_is_never_divided_by_batch_items():
    latency_rules = 0
    for group in monitoring.rule_file(rendering.render("dev"))["groups"]:
        for rule in group["rules"]:
            expr = " ".join(rule["expr"].split())
            if "duration_us" in expr:
                assert "nv_inference_count" not in expr, rule.get("record") or rule.get("alert")
                latency_rules += 1
    assert latency_rules, "no rule reads a duration: nothing was checked"


def test_rules_follow_their_values(render_with_rules):
    item = render_with_rules(
        {"monitoring": {"prometheusRule": {"alerts": {"meanLatency": {"thresholdMs": 40, "for": "1m"}}}}}
    )
    (mean,) = [
        r
        for g in monitoring.rule_file(item)["groups"]
        for r in g["rules"]
        if r.get("alert") == "TritonHighMeanLatency"
    ]
    assert mean["expr"].endswith("> 40000") and mean["for"] == "1m"


@pytest.fixture
def render_with_rules(tmp_path):
    def render(overrides):
        extra = tmp_path / "rules-values.yaml"
        extra.write_text(yaml.safe_dump(overrides))
        return rendering.render("dev", extra_files=[extra])

    return render
