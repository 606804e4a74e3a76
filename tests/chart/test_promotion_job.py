"""The promotion Job (`promotion.job`): `tritonops promote` run inside the cluster against the chart's
own Service, with a Role that may only read EndpointSlices, the repository mounted read-write and the
key mounted as a file; admitted by the NetworkPolicy, out of every selector of the release."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from tests.chart.helpers import PROMOTION_IMAGE, PROMOTION_JOB, job_pod, pod_spec
from tritonops import errors
from tritonops.chart import environments, render

IMAGE = PROMOTION_IMAGE
JOB = PROMOTION_JOB
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
KEY_DIR = "/var/run/secrets/tritonops/repository-api"
# The only permission the promotion needs (cluster.endpoints.PERMISSION): read EndpointSlices.
READ_ENDPOINTSLICES = {("discovery.k8s.io", "endpointslices", verb) for verb in ("get", "list", "watch")}


def with_job(**job: Any) -> dict[str, Any]:
    """The Job values with `job` merged over them; other top-level values under `extra`."""
    values = copy.deepcopy(JOB)
    extra = job.pop("extra", {})
    values["promotion"]["job"].update(job)
    return {**values, **extra}


def job_of(item: render.Rendering) -> dict[str, Any]:
    return item.one("Job")


def promote_container(item: render.Rendering) -> dict[str, Any]:
    (container,) = job_pod(item)["spec"]["containers"]
    return container


def by_name(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in entries}


def rbac_problems(manifests: list[dict[str, Any]], namespace: str) -> list[str]:
    """What the render grants beyond reading EndpointSlices in `namespace`: any ClusterRole or
    ClusterRoleBinding, a second Role, a rule with another group, resource or verb, a wildcard,
    non-resource URLs."""
    problems = []
    for body in manifests:
        kind, name = body["kind"], body["metadata"]["name"]
        if kind in ("ClusterRole", "ClusterRoleBinding"):
            problems.append(f"{kind}/{name}: cluster-wide RBAC")
    roles = [body for body in manifests if body["kind"] == "Role"]
    if len(roles) != 1:
        problems.append(f"{len(roles)} Roles, expected 1")
    for role in roles:
        if role["metadata"].get("namespace") != namespace:
            problems.append(f"Role/{role['metadata']['name']}: not in {namespace}")
        granted: set[tuple[str, str, str]] = set()
        for rule in role.get("rules") or []:
            if set(rule) - {"apiGroups", "resources", "verbs"}:
                problems.append(f"rule {rule}: {sorted(set(rule) - {'apiGroups', 'resources', 'verbs'})}")
            groups, resources, verbs = (rule.get(key) or [] for key in ("apiGroups", "resources", "verbs"))
            granted |= {(g, r, v) for g in groups for r in resources for v in verbs}
        if granted != READ_ENDPOINTSLICES:
            problems.append(f"Role grants {sorted(granted)}")
        if any("*" in part for grant in granted for part in grant):
            problems.append("a wildcard")
    return problems


# --- rendering only when enabled -------------------------------------------------------------------


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_nothing_of_the_promotion_job_renders_by_default(rendered, env):
    item = rendered[env]
    kinds = [manifest.kind for manifest in item.manifests]
    assert not {"Job", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} & set(kinds)
    assert kinds.count("ServiceAccount") == 1
    rules = item.one("NetworkPolicy")["spec"]["ingress"]
    assert not [r for r in rules if "promotion" in str(r)]


def test_enabling_it_adds_the_job_its_service_account_role_and_binding(render_with):
    item = render_with("dev", JOB)
    added = sorted(f"{m.kind}/{m.name}" for m in item.manifests if m.kind in ("Job", "Role", "RoleBinding"))
    assert added == [
        f"Job/{job_of(item)['metadata']['name']}",
        "Role/triton-promotion",
        "RoleBinding/triton-promotion",
    ]
    accounts = {m.name: m.body for m in item.of_kind("ServiceAccount")}
    assert set(accounts) == {"triton", "triton-promotion"}
    assert accounts["triton"]["automountServiceAccountToken"] is False, "Triton's account stays tokenless"
    assert accounts["triton-promotion"]["automountServiceAccountToken"] is True
    assert pod_spec(item)["automountServiceAccountToken"] is False
    assert pod_spec(item)["serviceAccountName"] == "triton"
    assert job_pod(item)["spec"]["serviceAccountName"] == "triton-promotion"
    assert job_pod(item)["spec"]["automountServiceAccountToken"] is True


# --- what the Job runs -----------------------------------------------------------------------------


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_job_promotes_on_the_charts_service_with_the_mounted_repository_and_key(render_with, env):
    item = render_with(env, JOB)
    service = item.one("Service")["metadata"]
    container = promote_container(item)
    assert container["image"] == f"{IMAGE}:0.1.0"
    assert container["command"] == ["tritonops"]
    assert container["args"] == [
        "promote",
        "linear",
        "--version=3",
        f"--service={service['name']}",
        f"--namespace={environments.get(env).namespace}",
        "--wait-for-ready=900",
        "--repository=/models",
        f"--api-key-file={KEY_DIR}/key",
        "--api-header=admin-key",
        "--load-timeout=120",
    ]
    assert service["namespace"] == environments.get(env).namespace
    # A failed pod's termination message is the tail of its log: the line that says why.
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_the_job_waits_for_a_ready_pod_as_long_as_the_value_says(render_with):
    # Created in the same apply as the Deployment (first install, Argo CD sync), the Job starts
    # before any Triton pod is ready: it waits for one instead of failing for good.
    args = promote_container(render_with("dev", with_job(waitForReadySeconds=60)))["args"]
    assert "--wait-for-ready=60" in args
    no_wait = promote_container(render_with("dev", with_job(waitForReadySeconds=0)))["args"]
    assert "--wait-for-ready=0" in no_wait


def test_the_deadline_leaves_room_for_the_wait_and_two_loads(render_with):
    # 900 s of waiting + 2 x 120 s of loading = 1140 s: a deadline of 1100 s would stop a
    # promotion that is on time; without the wait it is enough.
    with pytest.raises(errors.RenderError) as caught:
        render_with("dev", with_job(activeDeadlineSeconds=1100))
    assert str(caught.value).startswith(
        "promotion.job.activeDeadlineSeconds: 1100 must exceed promotion.job.waitForReadySeconds (900 s"
    ), str(caught.value)
    assert "plus twice promotion.job.loadTimeoutSeconds (120 s" in str(caught.value)
    item = render_with("dev", with_job(activeDeadlineSeconds=1100, waitForReadySeconds=0))
    assert job_of(item)["spec"]["activeDeadlineSeconds"] == 1100


def test_source_extra_arguments_and_timeouts_reach_the_command(render_with):
    item = render_with(
        "dev",
        with_job(
            model="resnet_50",
            version=12,
            **{"from": "models:/resnet@champion"},
            extraArgs=["--canary=1", "--gate=sum(up) > bool 0", "--keep-previous"],
            loadTimeoutSeconds=300,
            activeDeadlineSeconds=3600,
        ),
    )
    args = promote_container(item)["args"]
    assert args[:3] == ["promote", "resnet_50", "--version=12"]
    assert args[-5:] == [
        "--from=models:/resnet@champion",
        "--load-timeout=300",
        "--canary=1",
        "--gate=sum(up) > bool 0",
        "--keep-previous",
    ]
    assert job_of(item)["spec"]["activeDeadlineSeconds"] == 3600
    # SIGTERM (deadline, deletion) rolls the replicas back: the grace covers one more load.
    assert job_pod(item)["spec"]["terminationGracePeriodSeconds"] == 330


def test_notes_say_how_to_follow_the_job(render_with, rendered):
    item = render_with("dev", JOB)
    name = job_of(item)["metadata"]["name"]
    assert f"Promotion Job {name}: promotes linear to version 3 on every ready pod" in item.notes
    assert f"kubectl -n triton-dev logs -f job/{name}" in item.notes
    assert "Promotion Job" not in rendered["dev"].notes


def test_a_failed_promotion_is_never_retried_and_the_job_is_kept_by_default(render_with):
    item = render_with("dev", JOB)
    spec = job_of(item)["spec"]
    assert spec["backoffLimit"] == 0 and job_pod(item)["spec"]["restartPolicy"] == "Never"
    assert "ttlSecondsAfterFinished" not in spec
    kept = render_with("dev", with_job(ttlSecondsAfterFinished=86400))
    assert job_of(kept)["spec"]["ttlSecondsAfterFinished"] == 86400


def test_an_open_repository_api_renders_the_job_without_a_key(render_with):
    item = render_with("dev", with_job(extra={"repositoryApi": {"restricted": {"enabled": False}}}))
    container = promote_container(item)
    assert not [arg for arg in container["args"] if arg.startswith("--api-")]
    assert "repository-api-key" not in by_name(container["volumeMounts"])
    assert "repository-api-key" not in by_name(job_pod(item)["spec"]["volumes"])


def test_the_key_is_a_file_from_the_repository_api_secret_never_an_env_var_or_flag_value(render_with):
    item = render_with(
        "dev",
        with_job(
            extra={"repositoryApi": {"restricted": {"existingSecret": "triton-api", "secretKey": "token"}}}
        ),
    )
    container = promote_container(item)
    assert f"--api-key-file={KEY_DIR}/token" in container["args"]
    mount = by_name(container["volumeMounts"])["repository-api-key"]
    assert mount == {"name": "repository-api-key", "mountPath": KEY_DIR, "readOnly": True}
    volume = by_name(job_pod(item)["spec"]["volumes"])["repository-api-key"]
    assert volume == by_name(pod_spec(item)["volumes"])["repository-api-key"]
    assert volume["secret"] == {
        "secretName": "triton-api",
        "defaultMode": 0o400,
        "items": [{"key": "token", "path": "token"}],
    }
    assert not [e for e in container["env"] if "valueFrom" in e or "KEY" in e["name"]]


def test_the_generated_key_reaches_no_argument_or_variable(render_with):
    import base64

    item = render_with("dev", JOB)
    key = base64.b64decode(item.one("Secret")["data"]["key"]).decode()
    container = promote_container(item)
    assert key not in str(container["args"]) + str(container["env"])
    assert (
        by_name(job_pod(item)["spec"]["volumes"])["repository-api-key"]["secret"]["secretName"]
        == (item.one("Secret")["metadata"]["name"])
    )


@pytest.mark.parametrize(
    ("env", "overrides"),
    [("dev", {}), ("prod", {}), ("dev", {"modelRepository": {"pvc": {"subPath": "repo", "readOnly": True}}})],
    ids=["created-nfs-claim", "existing-claim", "sub-path"],
)
def test_the_repository_is_the_deployments_claim_mounted_read_write(render_with, env, overrides):
    item = render_with(env, with_job(extra=overrides))
    models = by_name(pod_spec(item)["volumes"])["models"]
    job_models = by_name(job_pod(item)["spec"]["volumes"])["models"]
    assert job_models["persistentVolumeClaim"] == {**models["persistentVolumeClaim"], "readOnly": False}
    assert models["persistentVolumeClaim"]["readOnly"] is True, "Triton's own mount stays read-only"
    triton_mount = by_name(pod_spec(item)["containers"][0]["volumeMounts"])["models"]
    mount = by_name(promote_container(item)["volumeMounts"])["models"]
    assert mount == {**triton_mount, "readOnly": False}
    assert mount["mountPath"] == item.values["modelRepository"]["path"]
    assert f"--repository={mount['mountPath']}" in promote_container(item)["args"]


def test_the_job_runs_as_tritons_user_unless_told_otherwise(render_with):
    context = job_pod(render_with("dev", JOB))["spec"]["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (1000, 1000, 1000)
    other = job_pod(render_with("dev", with_job(runAsUser=2000, runAsGroup=3000)))["spec"]["securityContext"]
    assert (other["runAsUser"], other["runAsGroup"], other["fsGroup"]) == (2000, 3000, 3000)


# --- bad values fail the render, naming the value ---------------------------------------------------


DOWNLOAD = {
    "enabled": True,
    "artifacts": [{"url": "https://models.example.com/m.onnx", "sha256": "a" * 64, "path": "m/1/model.onnx"}],
}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (with_job(image={"repository": ""}), "promotion.job.image.repository: set the image"),
        (
            with_job(image={"repository": IMAGE, "tag": ""}),
            "promotion.job.image.tag: set the tritonops image's tag",
        ),
        (with_job(model=""), "promotion.job.model: name the model to promote"),
        (with_job(version=None), "promotion.job.version: set the version to promote"),
        (
            with_job(
                extra={
                    "modelRepository": {
                        "pvc": {"enabled": False},
                        "objectStore": {"enabled": True, "uri": "s3://b/m"},
                    },
                    "server": {"committedState": {"enabled": False}},
                    "agent": {"enabled": False},
                }
            ),
            "promotion.job.enabled: the promotion writes the committed state into a shared model "
            "repository, and modelRepository.objectStore has no shared folder",
        ),
        (
            with_job(extra={"modelRepository": {"pvc": {"enabled": False}, "image": {"enabled": True}}}),
            "promotion.job.enabled: the promotion writes the committed state into a shared model "
            "repository, and modelRepository.image has no shared folder",
        ),
        (
            with_job(extra={"modelRepository": {"pvc": {"enabled": False}, "download": DOWNLOAD}}),
            "promotion.job.enabled: the promotion writes the committed state into a shared model "
            "repository, and modelRepository.download has no shared folder",
        ),
        (
            with_job(activeDeadlineSeconds=200, waitForReadySeconds=0),
            "promotion.job.activeDeadlineSeconds: 200 must exceed promotion.job.waitForReadySeconds (0 s: "
            "waiting for a ready pod) plus twice promotion.job.loadTimeoutSeconds (120 s",
        ),
        (
            with_job(extraArgs=["--endpoints=http://10.0.0.1:8000"]),
            'promotion.job.extraArgs: "--endpoints=http',
        ),
        (
            with_job(extraArgs=["--api-key-file", "/k"]),
            'promotion.job.extraArgs: "--api-key-file" is set by the chart',
        ),
        (
            with_job(extraArgs=["--wait-for-ready=5"]),
            'promotion.job.extraArgs: "--wait-for-ready=5" is set by the chart',
        ),
        (
            with_job(extraArgs=["--keep-previous", "--canary 1"]),
            'promotion.job.extraArgs: "--canary 1" is one argument holding a space after its flag; give '
            "the flag and its value as two items, or as one with `=`",
        ),
        (
            with_job(extraArgs=["--gate\tsum(up) > bool 0"]),
            'promotion.job.extraArgs: "--gate\\tsum(up) > bool 0" is one argument holding a space',
        ),
    ],
    ids=[
        "no-image",
        "no-tag-or-digest",
        "no-model",
        "no-version",
        "object-store",
        "baked-image",
        "download",
        "deadline-too-short",
        "endpoints-flag",
        "key-flag",
        "wait-flag",
        "flag-and-value-in-one-item",
        "flag-and-value-split-by-a-tab",
    ],
)
def test_bad_values_fail_the_render_naming_the_value(render_with, values, message):
    with pytest.raises(errors.RenderError) as caught:
        render_with("dev", values)
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (with_job(version=0), "promotion.job.version: 0 is less than the minimum of 1"),
        (with_job(version="3"), "promotion.job.version: '3' is not of type"),
        (with_job(model="a/b"), "promotion.job.model: 'a/b' does not match"),
        (with_job(backoffLimit=3), "promotion.job.backoffLimit: unknown key"),
        (
            with_job(waitForReadySeconds=-1),
            "promotion.job.waitForReadySeconds: -1 is less than the minimum of 0",
        ),
    ],
    ids=["version-0", "version-string", "model-with-slash", "backoff-limit-is-not-a-value", "negative-wait"],
)
def test_the_schema_refuses_malformed_job_values(render_with, values, message):
    with pytest.raises(errors.ValuesError) as caught:
        render_with("dev", values)
    assert message in str(caught.value)


def test_a_digest_is_enough_and_wins_over_the_tag(render_with):
    digest = "sha256:" + "cd" * 32
    item = render_with("dev", with_job(image={"repository": IMAGE, "tag": "", "digest": digest}))
    assert promote_container(item)["image"] == f"{IMAGE}@{digest}"


# --- RBAC: read EndpointSlices in the release namespace, and nothing else --------------------------


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_the_role_grants_exactly_get_list_watch_on_endpointslices_and_nothing_else(render_with, env):
    item = render_with(env, JOB)
    assert rbac_problems([m.body for m in item.manifests], environments.get(env).namespace) == []
    (rule,) = item.one("Role")["rules"]
    assert rule == {
        "apiGroups": ["discovery.k8s.io"],
        "resources": ["endpointslices"],
        "verbs": ["get", "list", "watch"],
    }


def _widened(change: str) -> list[dict[str, Any]]:
    role = {
        "kind": "Role",
        "metadata": {"name": "r", "namespace": "ns"},
        "rules": [
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": ["get", "list", "watch"],
            }
        ],
    }
    rule = role["rules"][0]
    extra: list[dict[str, Any]] = []
    if change == "verb":
        rule["verbs"].append("delete")
    elif change == "resource":
        rule["resources"].append("pods")
    elif change == "group":
        rule["apiGroups"].append("")
    elif change == "wildcard":
        rule["verbs"] = ["*"]
    elif change == "second-rule":
        role["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
    elif change == "non-resource":
        rule["nonResourceURLs"] = ["/metrics"]
    elif change == "cluster-role":
        extra.append({"kind": "ClusterRole", "metadata": {"name": "r"}, "rules": []})
    elif change == "cluster-binding":
        extra.append({"kind": "ClusterRoleBinding", "metadata": {"name": "r"}})
    elif change == "other-namespace":
        role["metadata"]["namespace"] = "kube-system"
    return [role, *extra]


CHANGES = [
    "verb",
    "resource",
    "group",
    "wildcard",
    "second-rule",
    "non-resource",
    "cluster-role",
    "cluster-binding",
    "other-namespace",
]


@pytest.mark.parametrize("change", CHANGES)
def test_the_rbac_check_fails_on_any_wider_grant(change):
    assert rbac_problems(_widened("none"), "ns") == []
    assert rbac_problems(_widened(change), "ns") != []


def test_the_binding_gives_that_role_to_the_jobs_service_account_only(render_with):
    item = render_with("prod", JOB)
    namespace = environments.get("prod").namespace
    binding = item.one("RoleBinding")
    assert binding["metadata"]["namespace"] == namespace
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": item.one("Role")["metadata"]["name"],
    }
    account = job_pod(item)["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
    assert account != pod_spec(item)["serviceAccountName"]


# --- the NetworkPolicy and the selectors ---------------------------------------------------------------


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _job_rules(item: render.Rendering) -> list[dict[str, Any]]:
    labels = job_pod(item)["metadata"]["labels"]
    return [
        rule
        for rule in item.one("NetworkPolicy")["spec"]["ingress"]
        for peer in rule["from"]
        if "podSelector" in peer
        and peer["podSelector"].get("matchLabels")
        and _matches(peer["podSelector"]["matchLabels"], labels)
    ]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_network_policy_admits_the_job_pod_to_http_and_grpc(render_with, env):
    # prod admits only the gateway namespace to inference: the Job needs its own rule.
    item = render_with(env, JOB)
    (rule,) = _job_rules(item)
    assert [(p["port"], p["protocol"]) for p in rule["ports"]] == [("http", "TCP"), ("grpc", "TCP")]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}, "the release namespace only: no namespaceSelector"


def _release_selectors(item: render.Rendering) -> dict[str, dict[str, str]]:
    """Every selector that picks Triton pods."""
    selectors = {
        "Deployment": item.one("Deployment")["spec"]["selector"]["matchLabels"],
        "Service": item.one("Service")["spec"]["selector"],
        "NetworkPolicy": item.one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
    }
    for budget in item.of_kind("PodDisruptionBudget"):
        selectors["PodDisruptionBudget"] = budget.body["spec"]["selector"]["matchLabels"]
    for index, spread in enumerate(pod_spec(item).get("topologySpreadConstraints", [])):
        selectors[f"spread[{index}]"] = spread["labelSelector"]["matchLabels"]
    return selectors


@pytest.mark.parametrize(
    ("env", "overrides"),
    [
        ("dev", {}),
        ("prod", {}),
        (
            "dev",
            {"commonLabels": {"app.kubernetes.io/instance": "triton", "app.kubernetes.io/component": "x"}},
        ),
        ("dev", {"nameOverride": "n" * 63}),
    ],
    ids=["dev", "prod", "common-labels", "longest-name"],
)
def test_the_job_pod_and_the_triton_pods_never_match_each_others_selectors(render_with, env, overrides):
    item = render_with(env, with_job(extra=overrides))
    job_labels = job_pod(item)["metadata"]["labels"]
    triton_labels = item.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    for name, selector in _release_selectors(item).items():
        assert _matches(selector, triton_labels), f"{name} must still select Triton's pods"
        assert not _matches(selector, job_labels), f"{name} selects the promotion Job's pod"
    (rule,) = _job_rules(item)
    job_selector = rule["from"][0]["podSelector"]["matchLabels"]
    assert not _matches(job_selector, triton_labels), "the Job's rule selects Triton's pods"
    assert all(len(value) <= 63 for value in job_labels.values())


# --- the Job's name: a new Job for a new promotion, a valid name for any model ------------------------


def _name(render_with, **job: Any) -> str:
    return str(job_of(render_with("dev", with_job(**job)))["metadata"]["name"])


def test_the_name_carries_model_and_version_and_changes_with_them(render_with):
    first = _name(render_with)
    assert re.fullmatch(r"triton-promote-linear-v3-[0-9a-f]{8}", first), first
    assert _name(render_with) == first, "the same values must name the same Job (GitOps re-syncs)"
    others = {
        _name(render_with, version=4),
        _name(render_with, model="resnet"),
        _name(render_with, extraArgs=["--keep-previous"]),
        _name(render_with, image={"repository": IMAGE, "tag": "0.2.0"}),
    }
    assert first not in others and len(others) == 4, "a Job's pod template cannot change: a new one"


def test_an_upgrade_that_changes_nothing_the_job_runs_keeps_its_name(render_with):
    # Triton's image tag is the version label of every object, but not of the Job's pod template.
    first = job_of(render_with("dev", JOB))
    upgraded = job_of(render_with("dev", with_job(extra={"image": {"tag": "26.10-py3"}})))
    assert upgraded["metadata"]["name"] == first["metadata"]["name"]
    assert upgraded["spec"]["template"] == first["spec"]["template"]


@pytest.mark.parametrize(
    "model",
    ["m" * 200, "ResNet_50.onnx-V2", "___", "a" * 30 + "_" + "b" * 30],
    ids=["long", "mixed-case-and-dots", "no-letters", "underscore"],
)
def test_the_name_is_a_dns_label_of_at_most_63_characters(render_with, model):
    name = _name(render_with, model=model, version=123456789, extra={"fullnameOverride": "f" * 63})
    assert len(name) <= 63 and DNS_LABEL.fullmatch(name), name
    short = _name(render_with, model=model)
    assert len(short) <= 63 and DNS_LABEL.fullmatch(short), short


def test_models_that_read_alike_get_different_names(render_with):
    # my_model and my-model are both `my-model` in a DNS name: the hash tells them apart.
    assert _name(render_with, model="my_model") != _name(render_with, model="my-model")
