"""The pod template a rollout produces: its progress deadline, how it spreads, its labels, what a
CPU pod sees of GPUs, how a rotated key reaches Triton, and what NOTES.txt tells the operator."""

from __future__ import annotations

import helm_python
import pytest

from tests.chart.helpers import pod_spec, triton_container
from tritonops import errors
from tritonops.chart import environments, render


def _template(item: render.Rendering) -> dict:
    return item.one("Deployment")["spec"]["template"]


def _startup_budget(item: render.Rendering) -> int:
    startup = triton_container(item)["startupProbe"]
    return startup["periodSeconds"] * startup["failureThreshold"]


# --- progress deadline -----------------------------------------------------------------------


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_progress_deadline_covers_the_startup_budget_and_an_image_pull(rendered, env):
    item = rendered[env]
    deadline = item.one("Deployment")["spec"]["progressDeadlineSeconds"]
    assert deadline == _startup_budget(item) + 600


def test_explicit_progress_deadline_is_used(render_with):
    item = render_with("prod", {"rollout": {"progressDeadlineSeconds": 1800}})
    assert item.one("Deployment")["spec"]["progressDeadlineSeconds"] == 1800


@pytest.mark.parametrize("deadline", [600, 300], ids=["equal-to-budget", "below-budget"])
def test_progress_deadline_at_or_below_the_startup_budget_is_refused(render_with, deadline):
    with pytest.raises(
        errors.RenderError,
        match=rf"^rollout\.progressDeadlineSeconds: {deadline} must exceed the startup budget, "
        r"probes\.startup\.periodSeconds x failureThreshold \(600 s\)",
    ):
        render_with("prod", {"rollout": {"progressDeadlineSeconds": deadline}})


# --- spreading -------------------------------------------------------------------------------


def test_prod_spreads_across_zones_and_nodes_by_the_rollouts_own_pods(rendered):
    item = rendered["prod"]
    constraints = pod_spec(item)["topologySpreadConstraints"]
    selector = item.one("Deployment")["spec"]["selector"]["matchLabels"]
    assert [c["topologyKey"] for c in constraints] == [
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    ]
    for constraint in constraints:
        assert constraint["labelSelector"] == {"matchLabels": selector}
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
        assert constraint["maxSkew"] == 1


def test_spread_selector_follows_the_release_name():
    # The 0.1 prod values hard-coded `app.kubernetes.io/instance: triton`; another release name
    # would have spread against pods that do not exist.
    env = environments.get("prod")
    values = render.merge_layers(render.load_values_file(path).values for path in env.values_files)
    chart = helm_python.Chart.load(str(environments.CHART_DIR))
    raw = chart.render(values, name="canary", namespace=env.namespace)
    deployment = next(text for path, text in raw.items() if path.endswith("templates/deployment.yaml"))
    assert deployment.count("app.kubernetes.io/instance: canary") >= 4  # selector, template, 2 spreads
    assert "app.kubernetes.io/instance: triton" not in deployment


def test_spread_is_off_by_default_and_extra_constraints_come_after(rendered, render_with):
    assert "topologySpreadConstraints" not in pod_spec(rendered["dev"])
    extra = {
        "maxSkew": 2,
        "topologyKey": "example.com/rack",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "triton"}},
    }
    item = render_with(
        "dev",
        {
            "topologySpread": {"hostname": {"enabled": True, "whenUnsatisfiable": "DoNotSchedule"}},
            "topologySpreadConstraints": [extra],
        },
    )
    hostname, added = pod_spec(item)["topologySpreadConstraints"]
    assert (hostname["topologyKey"], hostname["whenUnsatisfiable"]) == (
        "kubernetes.io/hostname",
        "DoNotSchedule",
    )
    assert added == extra


def test_spread_policy_is_a_closed_set(render_with):
    with pytest.raises(errors.ValuesError, match=r"topologySpread\.zone\.whenUnsatisfiable"):
        render_with("dev", {"topologySpread": {"zone": {"enabled": True, "whenUnsatisfiable": "Prefer"}}})


# --- labels ----------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_common_labels_reach_the_pods_but_never_a_selector(rendered, env):
    item = rendered[env]
    assert item.values["commonLabels"] == {"team": "ml-platform"}
    assert _template(item)["metadata"]["labels"]["team"] == "ml-platform"
    assert "team" not in item.one("Deployment")["spec"]["selector"]["matchLabels"]
    assert "team" not in item.one("Service")["spec"]["selector"]


def test_common_and_pod_labels_never_override_selector_or_platform_labels(render_with):
    item = render_with(
        "dev",
        {
            "commonLabels": {"app.kubernetes.io/instance": "other", "env": "other", "tier": "common"},
            "podLabels": {"tier": "pod"},
        },
    )
    labels = _template(item)["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "triton" and labels["env"] == "dev"
    assert labels["tier"] == "pod", "podLabels are the more specific of the two"
    metadata = item.one("Service")["metadata"]["labels"]
    assert metadata["app.kubernetes.io/instance"] == "triton" and metadata["tier"] == "common"


# --- GPU visibility --------------------------------------------------------------------------


def test_cpu_pod_sees_no_gpu_and_gpu_pod_keeps_the_runtimes_choice(rendered):
    def env(item):
        return {e["name"]: e.get("value") for e in triton_container(item)["env"]}

    # The image sets NVIDIA_VISIBLE_DEVICES=all; `void` makes the NVIDIA runtime behave like runc
    # (neither GPUs nor driver libraries), where `none` would still mount the driver.
    assert env(rendered["dev"])["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert env(rendered["local"])["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert "NVIDIA_VISIBLE_DEVICES" not in env(rendered["prod"]), "the device plugin picks the GPUs"


# --- repository API key rotation -------------------------------------------------------------

KEY_VERSION = "tritonops/repository-api-key-version"


def test_bumping_the_key_version_rolls_the_pods_and_changes_nothing_else(render_with):
    before = render_with("prod", {})
    after = render_with("prod", {"repositoryApi": {"restricted": {"keyVersion": 2}}})
    assert _template(before)["metadata"]["annotations"][KEY_VERSION] == "1"
    assert _template(after)["metadata"]["annotations"][KEY_VERSION] == "2"
    without_annotation = [
        {**_template(item), "metadata": {**_template(item)["metadata"], "annotations": {}}}
        for item in (before, after)
    ]
    assert without_annotation[0] == without_annotation[1]


def test_no_key_version_without_a_restricted_api(render_with):
    item = render_with("dev", {"repositoryApi": {"restricted": {"enabled": False}}})
    assert KEY_VERSION not in _template(item)["metadata"]["annotations"]


# --- NOTES.txt -------------------------------------------------------------------------------


def test_notes_send_the_key_with_every_restricted_call(rendered):
    notes = rendered["dev"].notes
    calls = [line for line in notes.splitlines() if "/v2/repository/" in line]
    assert any("/v2/repository/index" in line for line in calls)
    assert calls and all('-H "admin-key: $KEY"' in line for line in calls), calls


def test_notes_show_the_open_index_call_when_nothing_is_restricted(render_with):
    notes = render_with("dev", {"repositoryApi": {"restricted": {"enabled": False}}}).notes
    assert "curl -s -X POST localhost:8000/v2/repository/index" in notes
    assert "$KEY" not in notes
