"""The alerting and recording rules as Prometheus reads them: the rendered PrometheusRule's groups as
a plain rule file (what promtool and a bare Prometheus load). The rules themselves are written in
the chart (`templates/prometheusrule.yaml`), so every environment's values shape them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from tritonops import errors
from tritonops.chart import render


def rule_file(item: render.Rendering, *, annotations: bool = True) -> dict[str, Any]:
    """The rendered PrometheusRule's spec as a Prometheus rule file ({"groups": [...]}).

    `annotations=False` drops the prose, for promtool's unit tests, which compare annotations
    exactly; the firing logic is untouched."""
    objects = item.of_kind("PrometheusRule")
    if not objects:
        raise errors.InputError(
            f"{item.environment.name}: no PrometheusRule rendered; set monitoring.prometheusRule.enabled=true"
        )
    groups = copy.deepcopy(objects[0].body["spec"]["groups"])
    if not annotations:
        for group in groups:
            for rule in group["rules"]:
                rule.pop("annotations", None)
    return {"groups": groups}


def write_rule_file(item: render.Rendering, path: Path) -> Path:
    path.write_text(yaml.safe_dump(rule_file(item), sort_keys=False), encoding="utf-8")
    return path
