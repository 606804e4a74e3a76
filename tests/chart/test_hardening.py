"""Hardening: no API token, non-root, read-only root, dropped capabilities, restricted repository
API with the key only in a Secret, and a NetworkPolicy on the inference and metrics ports."""

from __future__ import annotations

import base64

import pytest
import yaml

from tests.chart.helpers import PROMOTION_JOB, job_pod, launcher_args, pod_spec, triton_container
from tritonops.chart import environments


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_pod_and_containers_are_hardened(rendered, env):
    item = rendered[env]
    spec = pod_spec(item)
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"] + spec.get("initContainers", []):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["runAsNonRoot"] is True


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_the_promotion_job_pod_is_hardened_like_tritons(render_with, env):
    spec = job_pod(render_with(env, PROMOTION_JOB))["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["runAsNonRoot"] is True
    assert "privileged" not in context and "hostNetwork" not in spec and "hostPID" not in spec
    # The read-only root leaves /tmp (an emptyDir) as HOME and working folder, and the repository.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    env_vars = {e["name"]: e.get("value") for e in container["env"]}
    assert env_vars["HOME"] == "/tmp" and container["workingDir"] == "/tmp"
    writable = {path for path, mount in mounts.items() if not mount.get("readOnly")}
    assert writable == {"/tmp", "/models"}
    # Its requests and limits are set, like every container's.
    assert set(container["resources"]) == {"requests", "limits"}


def test_service_account_never_mounts_a_token(rendered):
    assert rendered["dev"].one("ServiceAccount")["automountServiceAccountToken"] is False


def test_writable_paths_are_empty_dirs(rendered):
    mounts = {m["mountPath"]: m["name"] for m in triton_container(rendered["dev"])["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(rendered["dev"])["volumes"]}
    for path in ("/tmp", "/dev/shm"):
        assert "emptyDir" in volumes[mounts[path]]
    env = {e["name"]: e["value"] for e in triton_container(rendered["dev"])["env"]}
    assert env["HOME"] == "/tmp"


def test_repository_api_is_restricted_with_a_key_mounted_from_a_secret(rendered):
    item = rendered["dev"]
    assert "--api-key-file=/var/run/secrets/tritonops/repository-api/key" in launcher_args(item)
    assert "--api-header=admin-key" in launcher_args(item)
    secret = item.one("Secret")
    key = base64.b64decode(secret["data"]["key"]).decode()
    assert len(key) == 40
    volumes = {v["name"]: v for v in pod_spec(item)["volumes"]}
    assert volumes["repository-api-key"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert volumes["repository-api-key"]["secret"]["defaultMode"] == 0o400
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_no_values_file_can_hold_the_key(rendered):
    for path in environments.VALUES_DIR.glob("*.yaml"):
        restricted = ((yaml.safe_load(path.read_text()) or {}).get("repositoryApi") or {}).get(
            "restricted"
        ) or {}
        assert set(restricted) <= {"enabled", "header", "existingSecret", "secretKey"}, path


def test_existing_secret_is_used_and_none_generated(render_with):
    item = render_with(
        "dev", {"repositoryApi": {"restricted": {"existingSecret": "triton-api", "secretKey": "token"}}}
    )
    assert not item.of_kind("Secret")
    volumes = {v["name"]: v for v in pod_spec(item)["volumes"]}
    assert volumes["repository-api-key"]["secret"] == {
        "secretName": "triton-api",
        "defaultMode": 0o400,
        "items": [{"key": "token", "path": "token"}],
    }
    assert "--api-key-file=/var/run/secrets/tritonops/repository-api/token" in launcher_args(item)


def test_unrestricted_repository_api_drops_key_and_flags(render_with):
    item = render_with("dev", {"repositoryApi": {"restricted": {"enabled": False}}})
    assert not item.of_kind("Secret")
    assert not [a for a in launcher_args(item) if a.startswith("--api-")]


def test_network_policy_admits_chosen_sources_per_port(rendered):
    policy = rendered["prod"].one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    inference, _helm_test, metrics = policy["ingress"]
    assert [p["port"] for p in inference["ports"]] == ["http", "grpc"]
    assert inference["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "inference-gateway"}}}
    ]
    assert [p["port"] for p in metrics["ports"]] == ["metrics", "agent-metrics"]
    assert metrics["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


def test_network_policy_defaults_to_the_release_namespace_never_everyone(render_with):
    item = render_with("dev", {"networkPolicy": {"metricsFrom": []}, "helmTest": {"enabled": False}})
    policy = item.one("NetworkPolicy")["spec"]
    assert len(policy["ingress"]) == 2
    for rule in policy["ingress"]:
        assert rule["from"] == [{"podSelector": {}}]


def test_network_policy_can_be_turned_off(render_with):
    assert not render_with("dev", {"networkPolicy": {"enabled": False}}).of_kind("NetworkPolicy")
