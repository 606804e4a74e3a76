"""The probe design: startup budgets model loads, liveness never kills a loading pod, readiness
follows the committed versions and never `/v2/health/ready` (Triton behaviours 1, 2 and 11)."""

from __future__ import annotations

import pytest

from tests.chart.helpers import launcher_args, server_args, triton_container


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_startup_and_liveness_use_live_not_ready(rendered, env):
    container = triton_container(rendered[env])
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/v2/health/live", "port": "http"}


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_no_probe_uses_the_strict_ready_endpoint(rendered, env):
    container = triton_container(rendered[env])
    text = str({k: container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")})
    assert "/v2/health/ready" not in text
    assert "--strict-readiness=false" in server_args(rendered[env])


def test_startup_probe_budgets_ten_minutes_of_model_loading_by_default(rendered):
    startup = triton_container(rendered["prod"])["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 600


def test_readiness_checks_committed_versions_and_static_models(rendered):
    command = triton_container(rendered["dev"])["readinessProbe"]["exec"]["command"]
    assert command[:2] == ["python3", "/opt/tritonops/ready.py"]
    assert "--committed-state=/models/current.json" in command
    assert "--model=linear" in command
    assert "--port=8000" in command


def test_launcher_loads_the_committed_state_from_the_shared_repository(rendered):
    container = triton_container(rendered["dev"])
    assert container["args"][:2] == ["python3", "/opt/tritonops/launch.py"]
    assert "--committed-state=/models/current.json" in launcher_args(rendered["dev"])
    assert "--repository=/models" in launcher_args(rendered["dev"])


def test_committed_state_off_leaves_static_models_only(render_with):
    item = render_with("dev", {"server": {"committedState": {"enabled": False}}, "agent": {"enabled": False}})
    assert not [a for a in launcher_args(item) if a.startswith("--committed-state")]
    command = triton_container(item)["readinessProbe"]["exec"]["command"]
    assert not [a for a in command if a.startswith("--committed-state")]


def test_committed_state_file_name_is_configurable(render_with):
    item = render_with(
        "dev", {"server": {"committedState": {"file": "state.json"}}, "modelRepository": {"path": "/repo"}}
    )
    assert "--committed-state=/repo/state.json" in launcher_args(item)


def test_readiness_timings_come_from_values(render_with):
    probe = triton_container(
        render_with("dev", {"probes": {"readiness": {"periodSeconds": 2, "timeoutSeconds": 3}}})
    )["readinessProbe"]
    assert probe["periodSeconds"] == 2
    assert probe["timeoutSeconds"] == 3
    assert "--timeout=3" in probe["exec"]["command"]


@pytest.mark.parametrize(
    ("server", "message"),
    [
        (
            {"modelControlMode": "poll"},
            r"server\.committedState\.enabled: needs server\.modelControlMode=explicit",
        ),
        (
            {"modelControlMode": "none", "committedState": {"enabled": False}},
            r"server\.loadModels: --load-model needs",
        ),
    ],
    ids=["committed-state-needs-explicit", "load-models-needs-explicit"],
)
def test_control_mode_guards(render_with, server, message):
    from tritonops import errors

    with pytest.raises(errors.RenderError, match=message):
        render_with("dev", {"server": server})


def test_scripts_configmap_ships_the_launcher_and_readiness_check(rendered):
    (scripts,) = [m.body for m in rendered["dev"].of_kind("ConfigMap") if m.name == "triton-scripts"]
    data = scripts["data"]
    assert set(data) == {"agent.py", "committed_state.py", "launch.py", "ready.py"}
    assert "os.execvp" in data["launch.py"]
