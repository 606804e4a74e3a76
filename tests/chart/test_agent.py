"""The agent sidecar as every environment renders it: the same image and hardening as Triton, the
repository and the key mounted read-only, a liveness probe on its own port that tolerates a slow
Triton, that port in the Service, the ServiceMonitor (under a job of its own) and the
NetworkPolicy, its grace before narrowing, an NFS mount that shows a new promotion lock at once,
and a render-time refusal without the committed state it converges to."""

from __future__ import annotations

import ast
from typing import Any

import pytest

from tests.chart.helpers import pod_spec, triton_container
from tests.conftest import ROOT
from tritonops import errors
from tritonops.chart import environments, render

ENVIRONMENTS = tuple(environments.ENVIRONMENTS)
AGENT_SCRIPT = ROOT / "charts" / "triton" / "files" / "agent.py"


def agent_container(item: render.Rendering) -> dict[str, Any]:
    (agent,) = [c for c in pod_spec(item)["containers"] if c["name"] == "agent"]
    return agent


def agent_args(item: render.Rendering) -> dict[str, str]:
    """The agent's `--flag=value` arguments as a mapping."""
    return dict(arg.removeprefix("--").split("=", 1) for arg in agent_container(item)["args"])


@pytest.fixture(scope="module")
def every_environment() -> dict[str, render.Rendering]:
    return {name: render.render(name) for name in ENVIRONMENTS}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_environment_runs_the_agent_beside_triton_with_the_same_image_and_hardening(
    every_environment, env
):
    item = every_environment[env]
    agent, triton = agent_container(item), triton_container(item)
    assert agent["image"] == triton["image"]
    assert agent["imagePullPolicy"] == triton["imagePullPolicy"]
    assert agent["securityContext"] == triton["securityContext"]
    assert agent["securityContext"]["readOnlyRootFilesystem"] is True
    assert agent["command"] == ["python3", "/opt/tritonops/agent.py"]
    args = agent_args(item)
    assert args["committed-state"] == "/models/current.json"
    assert args["repository"] == "/models"
    assert args["port"] == "8000"  # its own Triton, over loopback
    assert args["metrics-port"] == "8003"
    assert args["fallback-marker"] == "/tmp/tritonops/readiness-fallback"
    # Narrowing waits longer than NFS caching (60 s) plus an interval: a promotion's lock shows first.
    # The local runtime's and the kind tier's repositories are local folders, with no such cache.
    if env in ("local", "ci-kind"):
        assert args["narrow-after"] == "0"
    else:
        assert float(args["narrow-after"]) > 60 + float(args["interval"])
    assert float(args["lock-stale-after"]) >= 30
    # The readiness check keeps its local copy in the same folder as the marker.
    probe = " ".join(triton["readinessProbe"]["exec"]["command"])
    assert "--state-cache=/tmp/tritonops/committed-state.json" in probe
    assert args["api-header"] == "admin-key"
    assert args["api-key-file"] == "/var/run/secrets/tritonops/repository-api/key"
    # It needs no GPU: the image's NVIDIA_VISIBLE_DEVICES=all must not hand it any, even in prod.
    assert {e["name"]: e["value"] for e in agent["env"]}["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert not {
        name for section in ("requests", "limits") for name in agent["resources"][section] if "gpu" in name
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_agent_mounts_the_repository_the_key_and_tmp_read_only(every_environment, env):
    item = every_environment[env]
    mounts = {m["name"]: m for m in agent_container(item)["volumeMounts"]}
    assert set(mounts) == {"scripts", "tmp", "repository-api-key", "models"}
    assert all(mount["readOnly"] is True for mount in mounts.values()), mounts
    triton_mounts = {m["name"]: m["mountPath"] for m in triton_container(item)["volumeMounts"]}
    assert {name: m["mountPath"] for name, m in mounts.items()}.items() <= triton_mounts.items()


def test_the_repository_stays_read_only_for_the_agent_when_triton_may_write(render_with):
    item = render_with("dev", {"modelRepository": {"pvc": {"readOnly": False, "subPath": "repo"}}})
    models = {m["name"]: m for m in agent_container(item)["volumeMounts"]}["models"]
    assert models == {"name": "models", "mountPath": "/models", "readOnly": True, "subPath": "repo"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_agent_has_a_liveness_probe_on_its_health_endpoint_and_no_readiness_probe(every_environment, env):
    agent = agent_container(every_environment[env])
    assert agent["ports"] == [{"name": "agent-metrics", "containerPort": 8003, "protocol": "TCP"}]
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "agent-metrics"}
    # Pod readiness is Triton's (ready.py): an agent readiness probe would add its own failures.
    assert "readinessProbe" not in agent and "startupProbe" not in agent
    # A restarting agent does take the pod out of the Service (a pod is ready only while all its
    # containers run): the probe restarts it only after a minute of failures on top of /healthz's
    # own minute without a sync, never for one slow sync.
    probe = agent["livenessProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 60, probe


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_agent_port_is_in_the_service_and_the_network_policy(every_environment, env):
    item = every_environment[env]
    ports = {p["name"]: p for p in item.one("Service")["spec"]["ports"]}
    assert ports["agent-metrics"]["port"] == 8003 and ports["agent-metrics"]["targetPort"] == "agent-metrics"
    policy = item.one("NetworkPolicy")["spec"]
    (metrics,) = [
        rule for rule in policy["ingress"] if {"port": "metrics", "protocol": "TCP"} in rule["ports"]
    ]
    assert {"port": "agent-metrics", "protocol": "TCP"} in metrics["ports"]
    # Only the metrics sources reach it, never the inference clients.
    inference = [rule for rule in policy["ingress"] if {"port": "http", "protocol": "TCP"} in rule["ports"]]
    assert all({"port": "agent-metrics", "protocol": "TCP"} not in rule["ports"] for rule in inference)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_service_monitor_scrapes_the_agent_under_its_own_job(every_environment, env):
    monitor = every_environment[env].one("ServiceMonitor")
    endpoints = {endpoint["port"]: endpoint for endpoint in monitor["spec"]["endpoints"]}
    assert set(endpoints) == {"metrics", "agent-metrics"}
    assert endpoints["agent-metrics"]["interval"] == endpoints["metrics"]["interval"]
    assert endpoints["agent-metrics"]["relabelings"] == [
        {"targetLabel": "job", "replacement": "triton-agent"}
    ]
    assert "relabelings" not in endpoints["metrics"]


def test_the_agent_follows_its_values(render_with):
    item = render_with(
        "dev",
        {
            "agent": {
                "intervalSeconds": 2.5,
                "readTimeoutSeconds": 1,
                "loadTimeoutSeconds": 900,
                "backoffMaxSeconds": 120,
                "lockStaleSeconds": 45,
                "narrowAfterSeconds": 0,
                "resources": {
                    "requests": {"cpu": "20m", "memory": "48Mi"},
                    "limits": {"cpu": "1", "memory": "96Mi"},
                },
            },
            "ports": {"agentMetrics": 9103},
            "repositoryApi": {"restricted": {"header": "x-key", "secretKey": "token"}},
        },
    )
    args = agent_args(item)
    assert (args["interval"], args["read-timeout"], args["load-timeout"], args["backoff-max"]) == (
        "2.5",
        "1",
        "900",
        "120",
    )
    assert (args["lock-stale-after"], args["narrow-after"]) == ("45", "0")
    assert args["metrics-port"] == "9103" and args["api-header"] == "x-key"
    assert args["api-key-file"].endswith("/token")
    agent = agent_container(item)
    assert agent["ports"][0]["containerPort"] == 9103
    assert agent["resources"]["limits"] == {"cpu": "1", "memory": "96Mi"}
    service = {p["name"]: p["port"] for p in item.one("Service")["spec"]["ports"]}
    assert service["agent-metrics"] == 9103


def test_the_default_nfs_mount_shows_a_new_promotion_lock_at_once(rendered, render_with):
    # lookupcache=all (the client's default) would cache the lock's "no such file" for up to 60 s.
    (volume,) = rendered["dev"].of_kind("PersistentVolume")
    assert "lookupcache=positive" in volume.body["spec"]["mountOptions"]
    assert {"nfsvers=4.1", "hard"} <= set(volume.body["spec"]["mountOptions"])
    options = {"modelRepository": {"pvc": {"nfs": {"mountOptions": ["nfsvers=4.2"]}}}}
    (volume,) = render_with("dev", options).of_kind("PersistentVolume")
    assert volume.body["spec"]["mountOptions"] == ["nfsvers=4.2"], "the user's list wins whole"


def test_turning_the_agent_off_removes_it_everywhere(render_with):
    item = render_with("dev", {"agent": {"enabled": False}})
    assert [c["name"] for c in pod_spec(item)["containers"]] == ["triton"]
    assert "agent-metrics" not in {p["name"] for p in item.one("Service")["spec"]["ports"]}
    assert [e["port"] for e in item.one("ServiceMonitor")["spec"]["endpoints"]] == ["metrics"]
    ports = [p["port"] for rule in item.one("NetworkPolicy")["spec"]["ingress"] for p in rule["ports"]]
    assert "agent-metrics" not in ports


def test_the_agent_without_triton_metrics_still_gets_its_network_policy_rule(render_with):
    item = render_with(
        "dev",
        {"server": {"metrics": {"enabled": False}}, "monitoring": {"serviceMonitor": {"enabled": False}}},
    )
    rules = item.one("NetworkPolicy")["spec"]["ingress"]
    (agent_rule,) = [rule for rule in rules if {"port": "agent-metrics", "protocol": "TCP"} in rule["ports"]]
    assert agent_rule["ports"] == [{"port": "agent-metrics", "protocol": "TCP"}]
    assert agent_rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


def test_the_agent_without_the_committed_state_fails_the_render_naming_the_value(render_with):
    with pytest.raises(errors.RenderError, match=r"^agent\.enabled: .*server\.committedState\.enabled=true"):
        render_with("dev", {"server": {"committedState": {"enabled": False}}})


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"agent": {"intervalSeconds": 0}}, r"agent\.intervalSeconds"),
        ({"agent": {"loadTimeout": 30}}, r"agent.*loadTimeout"),
        ({"ports": {"agentMetrics": 70000}}, r"ports\.agentMetrics"),
        # Two 5 s heartbeats of slow NFS must never make a live promotion's lock stale.
        ({"agent": {"lockStaleSeconds": 20}}, r"agent\.lockStaleSeconds"),
        ({"agent": {"narrowAfterSeconds": -1}}, r"agent\.narrowAfterSeconds"),
    ],
    ids=["zero-interval", "unknown-key", "port-out-of-range", "lock-stale-too-soon", "negative-grace"],
)
def test_bad_agent_values_fail_the_schema(render_with, values, path):
    with pytest.raises(errors.ValuesError, match=path):
        render_with("dev", values)


def test_the_scripts_config_map_ships_the_agent_and_it_reads_as_python_3_8():
    item = render.render("dev")
    (scripts,) = [m.body for m in item.of_kind("ConfigMap") if m.name == "triton-scripts"]
    assert scripts["data"]["agent.py"] == AGENT_SCRIPT.read_text(encoding="utf-8")
    tree = ast.parse(AGENT_SCRIPT.read_text(encoding="utf-8"), feature_version=(3, 8))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    import sys

    assert imported - {"__future__", "committed_state"} <= sys.stdlib_module_names, imported
