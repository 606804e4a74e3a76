"""Real GPU series replayed through the chart's GPU-memory alert and the dashboard's GPU panels.

A capture is Triton's /metrics page as scraped on a GPU node (tests/resources/gpu/*-metrics-*.txt).
Its `nv_gpu_*` samples, with their own labels (`gpu_uuid` as Triton exports it) plus the target
labels the ServiceMonitor's scrape adds, become promtool input series held for a quarter of an
hour; promtool then evaluates the rendered TritonGPUMemoryCritical and every GPU panel's query on
them. The same functions run in the normal suite (on the committed captures, from the current
render) and on the GPU node (on what it has just scraped, from the prepared bundle's render), so
both check one thing one way.

Standard library, PyYAML and prometheus_client only: the GPU machine has no Helm binding, so what a
render contributes arrives as `Inputs` (tests/gpu/bundle.py builds them; JSON in the GPU bundle).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.observability import promtool_runner

CAPTURES = Path(__file__).resolve().parents[1] / "resources" / "gpu"
ALERT = "TritonGPUMemoryCritical"
# What the issue asks every GPU node to export (Triton with --allow-gpu-metrics=true).
REQUIRED = (
    "nv_gpu_utilization",
    "nv_gpu_memory_used_bytes",
    "nv_gpu_memory_total_bytes",
    "nv_gpu_power_usage",
)
# How far above and below the alert's threshold the scaled used bytes go.
MARGIN = 0.01
# The panels are evaluated this far into the replay (the series are constant from 0).
PANEL_EVAL_S = 300
# The shape every GPU panel's query has today: the per-pod, per-GPU maximum of one gauge.
PANEL_SHAPE = re.compile(r"^\s*max by \((?P<by>[^)]*)\) \((?P<metric>nv_gpu_\w+)\{[^}]*\}\)\s*$")
DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Panel:
    """One target of a dashboard panel: its title, unit and PromQL with the variables substituted."""

    title: str
    unit: str
    expr: str


@dataclass(frozen=True)
class Inputs:
    """What a rendering contributes to the GPU checks."""

    # The rendered PrometheusRule as a rule file, annotations left out (promtool compares them).
    rules: dict[str, Any]
    # monitoring.prometheusRule.alerts.gpuMemory.threshold: used / total above this fires.
    threshold: float
    # The labels the ServiceMonitor's scrape gives every series of one pod (job, namespace,
    # service, endpoint, pod, instance), and how often it scrapes.
    target: dict[str, str]
    scrape_interval: str
    # Every dashboard target that reads nv_gpu_* series.
    panels: tuple[Panel, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Inputs:
        data = json.loads(text)
        data["panels"] = tuple(Panel(**panel) for panel in data["panels"])
        return cls(**data)


def captures() -> list[Path]:
    """Every capture committed under tests/resources/gpu/, idle and busy, of every GPU run."""
    return sorted(CAPTURES.glob("*-metrics-*.txt"))


def read(text: str) -> list[Sample]:
    """Every sample of an exposition page, parsed by Prometheus' own Python client, under the name
    the page gives it (the client renames Triton's counters `<name>_total`; Prometheus does not)."""
    written = {
        line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if line[:1] not in ("#", "")
    }
    samples = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if name not in written and name.removesuffix("_total") in written:
                name = name.removesuffix("_total")
            samples.append(Sample(name, dict(sample.labels), float(sample.value)))
    return samples


def gpu(samples: list[Sample]) -> list[Sample]:
    return [sample for sample in samples if sample.name.startswith("nv_gpu_")]


def problems(samples: list[Sample]) -> list[str]:
    """What is wrong with a capture's GPU series: a required family missing or without `gpu_uuid`,
    utilisation outside Triton's 0..1, memory used above total, power above its limit."""
    found: list[str] = []
    by_name: dict[str, dict[str, float]] = {}
    for sample in gpu(samples):
        if "gpu_uuid" not in sample.labels:
            found.append(f"{sample.name}{sample.labels}: no gpu_uuid label")
            continue
        if not math.isfinite(sample.value) or sample.value < 0:
            found.append(f"{sample.name}{sample.labels}: {sample.value}")
        by_name.setdefault(sample.name, {})[sample.labels["gpu_uuid"]] = sample.value
    found += [f"{name}: not exported" for name in REQUIRED if name not in by_name]
    for uuid, value in by_name.get("nv_gpu_utilization", {}).items():
        if not 0 <= value <= 1:
            found.append(f"nv_gpu_utilization{{gpu_uuid={uuid!r}}} = {value}: Triton reports 0..1")
    pairs = (
        ("nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes"),
        ("nv_gpu_power_usage", "nv_gpu_power_limit"),
    )
    for used_name, limit_name in pairs:
        for uuid, used in by_name.get(used_name, {}).items():
            limit = by_name.get(limit_name, {}).get(uuid)
            if limit is not None and used > limit:
                found.append(f"{used_name}{{gpu_uuid={uuid!r}}} = {used} above {limit_name} = {limit}")
    return found


def memory_ratios(samples: list[Sample]) -> dict[str, float]:
    """used / total GPU memory per gpu_uuid, as the alert computes it."""
    totals = {s.labels["gpu_uuid"]: s.value for s in samples if s.name == "nv_gpu_memory_total_bytes"}
    return {
        s.labels["gpu_uuid"]: s.value / totals[s.labels["gpu_uuid"]]
        for s in samples
        if s.name == "nv_gpu_memory_used_bytes" and totals.get(s.labels["gpu_uuid"])
    }


def check_alert(promtool: str, inputs: Inputs, samples: list[Sample], scratch: Path) -> dict[str, Any]:
    """TritonGPUMemoryCritical on the captured series: silent (or firing) on the values as captured as
    their ratio says, and with the used bytes of every GPU scaled to just above the threshold it
    fires, per pod and GPU, once its `for` has passed, and not before; scaled to just below it stays
    silent. Asserted by promtool; returns what was checked."""
    rule = _alert_rule(inputs)
    wait_s = seconds(rule["for"])
    ratios = memory_ratios(samples)
    assert ratios, "the capture has no nv_gpu_memory_used_bytes / nv_gpu_memory_total_bytes pair"
    steps = math.ceil((wait_s + 180) / seconds(inputs.scrape_interval))
    pending, firing = f"{wait_s // 2}s", f"{wait_s + 120}s"

    def case(name: str, ratio: float | None) -> dict[str, Any]:
        used = dict(ratios) if ratio is None else dict.fromkeys(ratios, ratio)
        fired = [uuid for uuid, value in used.items() if value > inputs.threshold]
        return {
            "name": f"{ALERT} on captured series: {name}",
            "interval": inputs.scrape_interval,
            "input_series": _input_series(inputs, _scaled(samples, used), steps),
            "alert_rule_test": [
                {"eval_time": pending, "alertname": ALERT, "exp_alerts": []},
                {
                    "eval_time": firing,
                    "alertname": ALERT,
                    "exp_alerts": [
                        {"exp_labels": _alert_labels(inputs, rule, uuid)} for uuid in sorted(fired)
                    ],
                },
            ],
        }

    above, below = inputs.threshold + MARGIN, inputs.threshold - MARGIN
    groups = [case("as captured", None), case(f"used scaled to {above:.2f}", above)]
    groups.append(case(f"used scaled to {below:.2f}", below))
    _run(promtool, inputs, groups, scratch, "gpu-alert.test.yaml")
    return {
        "alert": ALERT,
        "threshold": inputs.threshold,
        "for": rule["for"],
        "captured_ratio": ratios,
        "fires_as_captured": sorted(uuid for uuid, value in ratios.items() if value > inputs.threshold),
        "fires_scaled_to": round(above, 4),
        "silent_scaled_to": round(below, 4),
    }


def check_panels(promtool: str, inputs: Inputs, samples: list[Sample], scratch: Path) -> dict[str, Any]:
    """Every GPU panel's query on the captured series returns exactly the captured values, per pod and
    GPU (non-empty: a capture without the panel's gauge fails), and the values suit the panel's unit
    (a percentunit panel shows 0..1). Asserted by promtool; returns each target's expected result."""
    assert inputs.panels, "no dashboard panel reads nv_gpu_* series"
    series = _labelled(inputs, gpu(samples))
    tests, shown = [], {}
    for panel in inputs.panels:
        expected = _panel_expectation(panel, series)
        if panel.unit == "percentunit":
            assert all(0 <= value <= 1 for value in expected.values()), (panel.title, expected)
        tests.append(
            {
                "expr": panel.expr,
                "eval_time": f"{PANEL_EVAL_S}s",
                "exp_samples": [{"labels": labels, "value": value} for labels, value in expected.items()],
            }
        )
        shown.setdefault(panel.title, []).append(expected)
    steps = math.ceil((PANEL_EVAL_S + 60) / seconds(inputs.scrape_interval))
    group = {
        "name": "GPU panels on captured series",
        "interval": inputs.scrape_interval,
        "input_series": _input_series(inputs, samples, steps),
        "promql_expr_test": tests,
    }
    _run(promtool, inputs, [group], scratch, "gpu-panels.test.yaml")
    return {"panels": shown}


def seconds(duration: str) -> int:
    """A Prometheus duration of hours, minutes and seconds ("5m", "1h30m", "300s") in seconds."""
    match = DURATION.match(duration)
    if not duration or match is None:
        raise ValueError(f"{duration!r}: not a duration of h, m and s")
    return sum(int(match[unit] or 0) * size for unit, size in (("h", 3600), ("m", 60), ("s", 1)))


def _alert_rule(inputs: Inputs) -> dict[str, Any]:
    rules = [
        rule for group in inputs.rules["groups"] for rule in group["rules"] if rule.get("alert") == ALERT
    ]
    assert len(rules) == 1, f"{ALERT}: {len(rules)} rules rendered"
    return dict(rules[0])


def _alert_labels(inputs: Inputs, rule: dict[str, Any], uuid: str) -> dict[str, str]:
    """The alert's labels: the expression's `namespace, pod, gpu_uuid`, then the rule's own."""
    labels = {"namespace": inputs.target["namespace"], "pod": inputs.target["pod"], "gpu_uuid": uuid}
    return {"alertname": ALERT, **labels, **{key: str(value) for key, value in rule["labels"].items()}}


def _scaled(samples: list[Sample], ratios: dict[str, float]) -> list[Sample]:
    """The GPU samples with each GPU's used bytes set to `ratio` x its total (whole bytes)."""
    totals = {s.labels["gpu_uuid"]: s.value for s in samples if s.name == "nv_gpu_memory_total_bytes"}
    out = []
    for sample in gpu(samples):
        if sample.name == "nv_gpu_memory_used_bytes":
            uuid = sample.labels["gpu_uuid"]
            sample = Sample(sample.name, sample.labels, float(round(ratios[uuid] * totals[uuid])))
        out.append(sample)
    return out


def _labelled(inputs: Inputs, samples: list[Sample]) -> list[Sample]:
    """Samples as Prometheus stores them: the target's labels added, a scraped label that clashes
    with one of them kept as `exported_<name>` (honorLabels: false, the ServiceMonitor's default)."""
    out = []
    for sample in samples:
        labels = {
            (f"exported_{key}" if key in inputs.target else key): value
            for key, value in sample.labels.items()
        }
        out.append(Sample(sample.name, {**labels, **inputs.target}, sample.value))
    return out


def _input_series(inputs: Inputs, samples: list[Sample], steps: int) -> list[dict[str, str]]:
    return [
        {"series": sample.name + _selector(sample.labels), "values": f"{_number(sample.value)}x{steps}"}
        for sample in _labelled(inputs, gpu(samples))
    ]


def _panel_expectation(panel: Panel, series: list[Sample]) -> dict[str, float]:
    match = PANEL_SHAPE.match(panel.expr)
    if match is None:
        raise ValueError(
            f"panel {panel.title!r}: {panel.expr!r} is not `max by (...) (nv_gpu_...{{...}})`: "
            "teach tests/observability/gpu_series.py what this query returns"
        )
    by = [name.strip() for name in match["by"].split(",")]
    expected: dict[str, float] = {}
    for sample in series:
        if sample.name == match["metric"]:
            key = _selector({name: sample.labels[name] for name in by if name in sample.labels})
            expected[key] = max(expected.get(key, -math.inf), sample.value)
    assert expected, f"panel {panel.title!r}: the capture has no {match['metric']} series"
    return expected


def _run(promtool: str, inputs: Inputs, groups: list[dict[str, Any]], scratch: Path, name: str) -> str:
    rule_file = scratch / "gpu-rules.yaml"
    rule_file.write_text(json.dumps(inputs.rules), encoding="utf-8")  # JSON is YAML
    document = {"rule_files": [str(rule_file)], "evaluation_interval": "30s", "tests": groups}
    return promtool_runner.run(promtool, document, scratch, name)


def _selector(labels: dict[str, str]) -> str:
    text = ", ".join(f"{key}={json.dumps(value)}" for key, value in sorted(labels.items()))
    return "{" + text + "}"


def _number(value: float) -> str:
    """promtool's series notation: whole numbers without an exponent, others as Python prints them."""
    return str(int(value)) if value.is_integer() else repr(value)
