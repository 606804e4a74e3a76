"""Accessors for rendered objects, shared by the chart tests."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tritonops.chart import environments, render

ADAPTER_VALUES = environments.PROJECT_ROOT / "monitoring" / "prometheus-adapter" / "values.yaml"
# The smallest values that turn the promotion Job on (tests/chart/test_promotion_job.py).
PROMOTION_IMAGE = "registry.example.com/ml-platform/tritonops"
PROMOTION_JOB: dict[str, Any] = {
    "promotion": {
        "job": {
            "enabled": True,
            "image": {"repository": PROMOTION_IMAGE, "tag": "0.1.0"},
            "model": "linear",
            "version": 3,
        }
    }
}


def triton_container(item: render.Rendering) -> dict[str, Any]:
    pod = item.one("Deployment")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "triton")


def pod_spec(item: render.Rendering) -> dict[str, Any]:
    return item.one("Deployment")["spec"]["template"]["spec"]


def job_pod(item: render.Rendering) -> dict[str, Any]:
    """The promotion Job's pod template."""
    return item.one("Job")["spec"]["template"]


def server_args(item: render.Rendering) -> list[str]:
    """The tritonserver command line, after the launcher's `--`."""
    args = triton_container(item)["args"]
    return args[args.index("--") + 1 :]


def launcher_args(item: render.Rendering) -> list[str]:
    args = triton_container(item)["args"]
    return args[: args.index("--")]


def adapter_rule() -> dict[str, Any]:
    """The one prometheus-adapter rule of monitoring/prometheus-adapter/values.yaml."""
    (rule,) = yaml.safe_load(ADAPTER_VALUES.read_text(encoding="utf-8"))["rules"]["custom"]
    return rule


def adapter_query(rule: dict[str, Any], namespace: str, pods: list[str]) -> str:
    """The metricsQuery as the adapter sends it for a Pods metric: label matchers for the namespace
    and the pods asked for, grouped by pod (prometheus-adapter docs/config.md, "Querying")."""
    matchers = f'namespace="{namespace}",pod=~"{"|".join(pods)}"'
    return rule["metricsQuery"].replace("<<.LabelMatchers>>", matchers).replace("<<.GroupBy>>", "pod")


def assert_promql_evaluates(
    promtool: str, folder: Path, series: dict[str, str], expr: str, expected: list[dict[str, Any]]
) -> None:
    """`expr` over synthetic `series` (15 s apart) gives `expected` at 4m, as promtool evaluates it."""
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "15s",
                "input_series": [{"series": name, "values": values} for name, values in series.items()],
                "promql_expr_test": [{"expr": expr, "eval_time": "4m", "exp_samples": expected}],
            }
        ],
    }
    path = folder / "promql-expr-test.yaml"
    path.write_text(yaml.safe_dump(test), encoding="utf-8")
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
