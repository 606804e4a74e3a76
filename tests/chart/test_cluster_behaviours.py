"""The cluster behaviours of ARCHITECTURE.md (K1-K8), one test each, on the rendered objects.

No cluster runs here, so each behaviour a cluster would show is written down as a test of what the
chart renders. K5 (scrapes of not-ready pods, series of deleted pods) belongs to the alert rules and
is tested with promtool in tests/observability.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import helm_python
import pytest
import yaml

from tests.chart.helpers import pod_spec, triton_container
from tritonops import errors
from tritonops.chart import environments, render

ENVIRONMENTS = ("dev", "prod", "local")
NGC_ENTRYPOINT = "/opt/nvidia/nvidia_entrypoint.sh"
INSTANCE = "app.kubernetes.io/instance"


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """A matchLabels selector selects these labels (every key present with the same value)."""
    return all(labels.get(key) == value for key, value in selector.items())


def pod_template_labels(item: render.Rendering) -> dict[str, str]:
    return item.one("Deployment")["spec"]["template"]["metadata"]["labels"]


# --- K1: `command:` replaces the image's ENTRYPOINT ------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_k1_ngc_entrypoint_stays_in_the_chain_before_the_launcher(rendered, env):
    container = triton_container(rendered[env])
    # `command` replaces the image's ENTRYPOINT; keeping NGC's script there keeps CUDA forward
    # compatibility, and the script execs its arguments: the launcher, which execs tritonserver.
    assert container["command"] == [NGC_ENTRYPOINT]
    assert container["args"][:2] == ["python3", "/opt/tritonops/launch.py"]
    server = container["args"][container["args"].index("--") + 1 :]
    assert server[0] == "tritonserver"


def test_k1_empty_entrypoint_leaves_the_image_entrypoint_in_place(render_with):
    container = triton_container(render_with("prod", {"image": {"entrypoint": []}}))
    assert "command" not in container, "no command: the image's own ENTRYPOINT runs the args"
    assert container["args"][:2] == ["python3", "/opt/tritonops/launch.py"]


# --- K2: GPU node labels depend on who labels the nodes --------------------------------------


def test_k2_gpu_pods_are_placed_by_the_gpu_request_not_by_operator_only_labels(rendered, render_with):
    for item in (rendered["prod"], render_with("dev", {"gpu": {"enabled": True}})):
        assert triton_container(item)["resources"]["limits"]["nvidia.com/gpu"] == 1
        selector = pod_spec(item).get("nodeSelector", {})
        # nvidia.com/gpu.present comes from the GPU Operator only: GFD alone and managed GPU pools
        # do not set it, and pods selecting it would stay Pending there.
        assert "nvidia.com/gpu.present" not in selector
        assert "nvidia.com/gpu.product" not in selector, "a SKU pin is opt-in (gpu.product)"


def test_k2_sku_pin_is_opt_in_and_takes_the_mig_product_label_as_given(render_with):
    # Under MIG `single`, GFD publishes the MIG profile in the product label itself.
    mig_product = "NVIDIA-A100-SXM4-80GB-MIG-1g.10gb"
    item = render_with("prod", {"gpu": {"product": mig_product}})
    assert pod_spec(item)["nodeSelector"] == {"nvidia.com/gpu.product": mig_product}


# --- K3: Argo CD's label tracking rewrites app.kubernetes.io/instance -----------------------


def _argocd_application(env: str) -> dict[str, Any]:
    return yaml.safe_load((environments.ARGOCD_DIR / f"triton-{env}.yaml").read_text(encoding="utf-8"))


def _as_argocd_applies_it(item: render.Rendering, application: str) -> dict[str, dict[str, Any]]:
    """Every object, with Argo CD's label tracking applied: metadata.labels[instance] = the
    Application's name. Argo CD sets only the object's own metadata (argo-cd util/kube
    SetAppInstanceLabel: "we no longer label the pod template sub resources"), so pod template
    labels and every spec field stay as rendered."""
    objects = {}
    for manifest in item.manifests:
        body = copy.deepcopy(manifest.body)
        body["metadata"].setdefault("labels", {})[INSTANCE] = application
        objects[f"{manifest.kind}/{manifest.name}"] = body
    return objects


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_k3_selectors_still_match_after_argocd_rewrites_the_instance_label(rendered, env):
    app = _argocd_application(env)
    item = rendered[env]
    assert app["spec"]["source"]["helm"]["releaseName"] == item.environment.release
    objects = _as_argocd_applies_it(item, app["metadata"]["name"])
    service = objects["Service/triton"]
    deployment = objects["Deployment/triton"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    assert matches(
        objects["ServiceMonitor/triton"]["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]
    )
    assert matches(service["spec"]["selector"], pod_labels)
    assert matches(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    assert matches(objects["NetworkPolicy/triton"]["spec"]["podSelector"]["matchLabels"], pod_labels)
    for constraint in deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
        assert matches(constraint["labelSelector"]["matchLabels"], pod_labels)
    if env == "prod":
        assert matches(objects["PodDisruptionBudget/triton"]["spec"]["selector"]["matchLabels"], pod_labels)
        target = objects["HorizontalPodAutoscaler/triton"]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_k3_the_rewrite_really_changes_the_instance_label_an_instance_selector_would_miss(rendered, env):
    app = _argocd_application(env)
    item = rendered[env]
    service = _as_argocd_applies_it(item, app["metadata"]["name"])["Service/triton"]
    assert item.one("Service")["metadata"]["labels"][INSTANCE] == "triton"
    assert service["metadata"]["labels"][INSTANCE] == f"triton-{env}"
    # The 0.1 ServiceMonitor selected name + instance (the chart's selector labels): it matched the
    # Service Helm renders and nothing once Argo CD had labelled it.
    old_selector = item.one("Deployment")["spec"]["selector"]["matchLabels"]
    assert INSTANCE in old_selector
    assert matches(old_selector, item.one("Service")["metadata"]["labels"])
    assert not matches(old_selector, service["metadata"]["labels"])
    assert INSTANCE not in item.one("ServiceMonitor")["spec"]["selector"]["matchLabels"]


def test_k3_service_monitor_tells_releases_apart_without_the_instance_label(rendered):
    selector = rendered["prod"].one("ServiceMonitor")["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "triton",
        "app.kubernetes.io/component": "inference-server",
        "release": "triton",
    }


# --- K4: the kubelet mounts NFS with the node's resolver ------------------------------------


def test_k4_dev_nfs_server_is_an_address_the_nodes_can_resolve(rendered):
    server = rendered["dev"].one("PersistentVolume")["spec"]["nfs"]["server"]
    assert not re.search(r"\.(svc|cluster\.local)$", server), server


@pytest.mark.parametrize(
    "server",
    [
        "nfs-dev.storage.svc.cluster.local",
        "nfs.storage.svc",
        "NFS.storage.SVC.cluster.local.",
        "nfs-dev.storage.pod.cluster.local",
    ],
    ids=["fqdn", "short-svc", "upper-case-trailing-dot", "cluster-domain"],
)
def test_k4_cluster_dns_nfs_server_fails_the_render(render_with, server):
    with pytest.raises(errors.RenderError) as failure:
        render_with("dev", {"modelRepository": {"pvc": {"nfs": {"server": server}}}})
    message = str(failure.value)
    assert message.startswith(f'modelRepository.pvc.nfs.server: "{server}" is a cluster DNS name')
    assert "use an IP address or a name the nodes' resolver knows" in message
    assert "(K4)" not in message, "internal tags stay out of user-facing messages"


@pytest.mark.parametrize(
    "server",
    ["10.1.2.3", "nfs.example.internal", "svc.example.com", "nfs.svc.corp.example.com", "svc"],
    ids=["ip", "host", "svc-first-label", "svc-middle-label", "bare-svc-host"],
)
def test_k4_node_resolvable_nfs_servers_render(render_with, server):
    # `.svc.` inside a name (nfs.svc.corp.example.com) is a real host name in some networks: only
    # the cluster's own suffixes are refused.
    item = render_with("dev", {"modelRepository": {"pvc": {"nfs": {"server": server}}}})
    assert item.one("PersistentVolume")["spec"]["nfs"]["server"] == server


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_k4_user_facing_values_and_manifests_carry_no_internal_tags(env):
    # K1-K8 name cluster behaviours in this project's design notes; users never see those notes.
    internal_tag = re.compile(r"\(K\d\)")
    for path in (environments.CHART_DIR / "values.yaml", *sorted(environments.VALUES_DIR.glob("*.yaml"))):
        assert not internal_tag.search(path.read_text(encoding="utf-8")), path
    environment = environments.get(env)
    values = render.merge_layers(render.load_values_file(path).values for path in environment.values_files)
    chart = helm_python.Chart.load(str(environments.CHART_DIR))
    raw = chart.render(values, name=environment.release, namespace=environment.namespace)
    tagged = sorted(path for path, text in raw.items() if internal_tag.search(text))
    assert not tagged, f"rendered with an internal tag: {tagged}"


# --- K6: a helm test pod is subject to the release's NetworkPolicies ------------------------


def _admits(policy: dict[str, Any], pod_labels: dict[str, str], port: str) -> bool:
    """Whether an ingress rule admits a pod of the policy's own namespace to `port`."""
    for rule in policy["spec"]["ingress"]:
        if port not in [p["port"] for p in rule.get("ports", [])]:
            continue
        for peer in rule.get("from", []):
            if "namespaceSelector" in peer or "ipBlock" in peer:
                continue  # other namespaces or addresses: not how the test pod is admitted here
            if matches(peer["podSelector"].get("matchLabels", {}), pod_labels):
                return True
    return False


def test_k6_prod_network_policy_admits_the_helm_test_pod_to_http(rendered):
    prod = rendered["prod"]
    test_pod = prod.one("Pod")
    policy = prod.one("NetworkPolicy")
    assert test_pod["metadata"]["namespace"] == policy["metadata"]["namespace"]
    assert matches(policy["spec"]["podSelector"]["matchLabels"], pod_template_labels(prod)), (
        "it guards Triton"
    )
    assert _admits(policy, test_pod["metadata"]["labels"], "http")
    # The inference rule alone (gateway namespace only) would have refused it.
    inference = policy["spec"]["ingress"][0]
    assert all("namespaceSelector" in peer for peer in inference["from"])


def test_k6_no_helm_test_rule_without_the_helm_test(render_with):
    policy = render_with("prod", {"helmTest": {"enabled": False}}).one("NetworkPolicy")
    assert not _admits(policy, {"app.kubernetes.io/component": "helm-test", "release": "triton"}, "http")


def test_k6_helm_test_requests_time_out(rendered):
    container = rendered["prod"].one("Pod")["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CURL_OPTIONS"] == "--connect-timeout 5 --max-time 60"
    script = container["command"][2]
    curls = [line for line in script.splitlines() if "curl " in line]
    assert len(curls) == 3 and all("curl $CURL_OPTIONS " in line for line in curls)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with the same key twice (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate keys {duplicates}", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


def test_k6_helm_test_pod_labels_hold_each_key_once():
    # The test pod's labels used to repeat app.kubernetes.io/component; a parser keeping the last
    # value hides that, so read Helm's raw output with one that refuses duplicates.
    env = environments.get("prod")
    values = render.merge_layers(render.load_values_file(path).values for path in env.values_files)
    chart = helm_python.Chart.load(str(environments.CHART_DIR))
    raw = chart.render(values, name=env.release, namespace=env.namespace)
    text = next(text for path, text in raw.items() if path.endswith("tests/test-infer.yaml"))
    pod = yaml.load(text, Loader=_UniqueKeyLoader)
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "helm-test"


# --- K7: old images and open protocols ------------------------------------------------------

# NVIDIA's Triton security bulletins, as published in github.com/NVIDIA/product-security (read on
# 2026-11-26; its newest Triton bulletin then was 2026/5865, of 2026-08-18), each with its CVEs and
# the first NGC release that fixes all of them ("Updated Version" in the bulletin's table). Key:
# the bulletin's file in that repository. The default image must be at least the newest of them.
# 2023/5509 (CVE-2023-31036) names Triton 2.40, older than every release here, and is left out.
SECURITY_FIXES = {
    "2024/5535/5535.md": (("CVE-2024-0087", "CVE-2024-0088", "CVE-2024-0100"), "24.04"),
    "2024/5546/5546.md": (("CVE-2024-0095", "CVE-2024-0103"), "24.05"),
    "2024/5565/5565.md": (("CVE-2024-0116",), "24.09"),
    "2025/5612/5612.md": (("CVE-2024-53880",), "24.12"),
    # August 2025: the unauthenticated HTTP and Python-backend chain (25.05-25.07 per CVE).
    "2025/5687/5687.md": (
        (
            "CVE-2025-23268",
            "CVE-2025-23310",
            "CVE-2025-23311",
            "CVE-2025-23317",
            "CVE-2025-23318",
            "CVE-2025-23319",
            "CVE-2025-23320",
            "CVE-2025-23321",
            "CVE-2025-23322",
            "CVE-2025-23323",
            "CVE-2025-23324",
            "CVE-2025-23325",
            "CVE-2025-23326",
            "CVE-2025-23327",
            "CVE-2025-23331",
            "CVE-2025-23333",
            "CVE-2025-23334",
            "CVE-2025-23335",
        ),
        "25.07",
    ),
    # Lists CVE-2025-23268 (DALI backend, fixed in 25.07) again.
    "2025/5691/5691.md": (
        ("CVE-2025-23268", "CVE-2025-23316", "CVE-2025-23328", "CVE-2025-23329", "CVE-2025-23336"),
        "25.08",
    ),
    "2025/5723/5723.md": (("CVE-2025-33202",), "25.09"),
    "2025/5734/5734.md": (("CVE-2025-33201", "CVE-2025-33211"), "25.10"),
    "2026/5790/5790.md": (("CVE-2025-33238", "CVE-2025-33254", "CVE-2026-24158"), "26.01"),
    "2026/5816/5816.md": (
        ("CVE-2026-24146", "CVE-2026-24147", "CVE-2026-24173", "CVE-2026-24174", "CVE-2026-24175"),
        "26.02",
    ),
    # May 2026: authentication bypass (CVE-2026-24207, CVSS 9.8) and path traversal.
    "2026/5828/5828.md": (
        (
            "CVE-2026-24206",
            "CVE-2026-24207",
            "CVE-2026-24208",
            "CVE-2026-24209",
            "CVE-2026-24210",
            "CVE-2026-24213",
            "CVE-2026-24214",
            "CVE-2026-24215",
        ),
        "26.03",
    ),
    "2026/5860/5860.md": (("CVE-2026-47487",), "26.03"),
    "2026/5848/5848.md": (("CVE-2026-24264", "CVE-2026-24266"), "26.04"),
    "2026/5853/5853.md": (
        (
            "CVE-2026-47476",
            "CVE-2026-47477",
            "CVE-2026-47478",
            "CVE-2026-47479",
            "CVE-2026-47480",
            "CVE-2026-47481",
            "CVE-2026-47482",
        ),
        "26.05",
    ),
    # August 2026: path traversal (CVE-2026-47627, CVSS 9.8) among five.
    "2026/5865/5865.md": (
        ("CVE-2026-47606", "CVE-2026-47627", "CVE-2026-47628", "CVE-2026-47629", "CVE-2026-47630"),
        "26.06",
    ),
}
CITED_CVES = {cve for cves, _ in SECURITY_FIXES.values() for cve in cves}


def _release(version: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{2})\.(\d{2})(-py3)?", version)
    assert match, f"not an NGC release tag: {version!r}"
    return int(match.group(1)), int(match.group(2))


@pytest.mark.parametrize(("bulletin", "fix"), SECURITY_FIXES.items(), ids=list(SECURITY_FIXES))
def test_k7_default_image_carries_the_published_security_fixes(bulletin, fix):
    cves, fixed_in = fix
    app_version = yaml.safe_load((environments.CHART_DIR / "Chart.yaml").read_text())["appVersion"]
    assert _release(app_version) >= _release(fixed_in), (
        f"{app_version} predates the fix of {bulletin} ({cves})"
    )


def test_k7_chart_names_only_cves_it_can_cite_to_a_bulletin():
    # Chart.yaml and the README tell operators which vulnerabilities the default image fixes: every
    # CVE id they name must be one of NVIDIA's Triton bulletins above (an id seen only on a
    # third-party page, such as CVE-2026-16497, is not).
    for path in (environments.CHART_DIR / "Chart.yaml", environments.CHART_DIR / "README.md"):
        named = set(re.findall(r"CVE-\d{4}-\d{4,}", path.read_text(encoding="utf-8")))
        assert named, f"{path.name} names no CVE"
        assert named <= CITED_CVES, f"{path.name} names CVEs no bulletin lists: {sorted(named - CITED_CVES)}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_k7_logging_shared_memory_and_trace_need_the_key_by_default(rendered, env):
    args = triton_container(rendered[env])["args"]
    assert "--api-protocols=model-repository,logging,shared-memory,trace" in args


@pytest.mark.parametrize(
    "protocols",
    [["health"], ["model-repository", "health"], [], ["model-repo"]],
    ids=["health", "health-among-others", "empty", "unknown"],
)
def test_k7_health_never_needs_the_key_and_the_list_is_closed(render_with, protocols):
    with pytest.raises(errors.ValuesError, match=r"repositoryApi\.restricted\.protocols"):
        render_with("dev", {"repositoryApi": {"restricted": {"protocols": protocols}}})


def test_k7_the_repository_api_is_always_restricted(run_cli):
    # The list is the user's, but an open load/unload API is remote code execution: the schema
    # requires model-repository in it. Through the CLI, as a user would write it.
    result = run_cli("render", "--env", "dev", "--set", "repositoryApi.restricted.protocols={statistics}")
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    assert "repositoryApi.restricted.protocols" in result.stderr
    assert "model-repository" in result.stderr


def test_k7_helms_own_schema_check_requires_the_repository_api(tmp_path):
    # Helm itself (not only tritonops' per-file check) refuses the list: `helm install` and Argo CD
    # validate values.schema.json with their own JSON-schema library, which must know `contains`
    # (draft-06; Helm <= 3.17 uses gojsonschema, drafts 4/6/7; later Helm santhosh-tekuri/jsonschema).
    chart = helm_python.Chart.load(str(environments.CHART_DIR))
    env = environments.get("dev")
    values = render.merge_layers(render.load_values_file(path).values for path in env.values_files)
    chart.render(values, name=env.release, namespace=env.namespace)  # the committed values pass
    values["repositoryApi"]["restricted"]["protocols"] = ["statistics", "logging"]
    with pytest.raises(helm_python.HelmValuesError, match="protocols"):
        chart.render(values, name=env.release, namespace=env.namespace)


def test_k7_restricting_inference_with_the_helm_test_fails_naming_both_values(render_with):
    # The test pod's request carries no key: it would get 403 and `helm test` could never pass.
    restricted = {"repositoryApi": {"restricted": {"protocols": ["model-repository", "inference"]}}}
    with pytest.raises(errors.RenderError) as failure:
        render_with("prod", restricted)
    message = str(failure.value)
    assert message.startswith("helmTest.enabled: ")
    assert "repositoryApi.restricted.protocols" in message and "inference" in message
    item = render_with("prod", {**restricted, "helmTest": {"enabled": False}})
    assert "--api-protocols=model-repository,inference" in triton_container(item)["args"]


def test_k7_chosen_protocols_reach_the_launcher(render_with):
    item = render_with(
        "dev", {"repositoryApi": {"restricted": {"protocols": ["model-repository", "statistics"]}}}
    )
    assert "--api-protocols=model-repository,statistics" in triton_container(item)["args"]


# --- K8: Triton copies object-store repositories into a local folder -------------------------

OBJECT_STORE = {
    "modelRepository": {
        "pvc": {"enabled": False},
        "objectStore": {"enabled": True, "uri": "s3://models/triton", "localCache": {"sizeLimit": "30Gi"}},
    },
    "server": {"committedState": {"enabled": False}},
    "agent": {"enabled": False},
}
MOUNT_DIRECTORY_VARIABLES = (
    "TRITON_AWS_MOUNT_DIRECTORY",
    "TRITON_GCS_MOUNT_DIRECTORY",
    "TRITON_AZURE_MOUNT_DIRECTORY",
)


def test_k8_object_store_downloads_into_their_own_sized_volume(render_with):
    item = render_with("dev", OBJECT_STORE)
    container = triton_container(item)
    volumes = {v["name"]: v for v in pod_spec(item)["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert volumes["object-store"] == {"name": "object-store", "emptyDir": {"sizeLimit": "30Gi"}}
    # Triton's core reads one variable per store (src/filesystem/implementations/{s3,gcs,as}.h)
    # and falls back to /tmp; each points at the object-store volume, not at /tmp.
    for variable in MOUNT_DIRECTORY_VARIABLES:
        assert env[variable] == mounts["object-store"] != "/tmp"
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "4Gi"}


def test_k8_filesystem_repositories_get_no_object_store_volume(rendered):
    container = triton_container(rendered["dev"])
    assert not [e for e in container["env"] if e["name"] in MOUNT_DIRECTORY_VARIABLES]
    assert "object-store" not in [v["name"] for v in pod_spec(rendered["dev"])["volumes"]]


def test_k8_tmp_size_is_a_value(render_with):
    volumes = {v["name"]: v for v in pod_spec(render_with("dev", {"tmp": {"sizeLimit": "12Gi"}}))["volumes"]}
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "12Gi"}


def test_k6_no_selector_of_the_release_picks_the_helm_test_pod(rendered):
    # A test pod matching name + instance would count in the PDB and in the HPA's pod metrics.
    for env in ("dev", "prod"):
        item = rendered[env]
        labels = item.one("Pod")["metadata"]["labels"]
        selectors = [
            item.one("Deployment")["spec"]["selector"]["matchLabels"],
            item.one("Service")["spec"]["selector"],
            item.one("ServiceMonitor")["spec"]["selector"]["matchLabels"],
        ]
        selectors += [m.body["spec"]["selector"]["matchLabels"] for m in item.of_kind("PodDisruptionBudget")]
        assert selectors and not any(matches(selector, labels) for selector in selectors), env
