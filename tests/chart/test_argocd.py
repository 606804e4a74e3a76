"""One Argo CD Application per environment, with base + env values files that exist."""

from __future__ import annotations

import pytest
import yaml

from tritonops.chart import custom_resources, environments, gates


def _application(env):
    return yaml.safe_load((environments.ARGOCD_DIR / f"triton-{env}.yaml").read_text())


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_application_layers_base_then_env_into_the_harness_namespace(env):
    app = _application(env)
    source = app["spec"]["source"]
    assert source["path"] == "charts/triton"
    assert source["helm"]["valueFiles"] == ["../../values/base.yaml", f"../../values/{env}.yaml"]
    assert source["helm"]["releaseName"] == environments.get(env).release
    assert app["spec"]["destination"]["namespace"] == environments.get(env).namespace


def test_dev_syncs_automatically_and_prod_by_hand():
    assert _application("dev")["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    assert "automated" not in _application("prod")["spec"]["syncPolicy"]


def test_applications_pass_the_argocd_gate():
    assert gates.argocd_applications() == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda a: a["spec"]["source"]["helm"].update(
                valueFiles=["../../values/base.yaml", "../../values/qa.yaml"]
            ),
            "'../../values/qa.yaml' does not exist",
        ),
        (
            lambda a: a["spec"]["source"].update(path="charts/nope"),
            "spec.source.path: 'charts/nope' holds no Chart.yaml",
        ),
        (
            lambda a: a["spec"]["destination"].update(name="in-cluster"),
            "spec.destination: set exactly one of server or name",
        ),
        (lambda a: a["spec"].pop("project"), "spec.project: required"),
    ],
    ids=["missing-values-file", "missing-chart", "server-and-name", "no-project"],
)
def test_broken_application_is_reported(mutate, expected):
    app = _application("dev")
    mutate(app)
    problems = custom_resources.check_application(app, environments.PROJECT_ROOT)
    assert any(expected in problem for problem in problems), problems
