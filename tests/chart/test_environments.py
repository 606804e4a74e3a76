"""Each environment renders what the platform expects: namespaces, labels, sizes, monitoring."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml

from tests.chart.helpers import pod_spec, triton_container
from tritonops.chart import environments, render

STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_every_object_carries_standard_and_platform_labels(rendered, env):
    for manifest in rendered[env].manifests:
        labels = manifest.body["metadata"]["labels"]
        missing = [key for key in STANDARD_LABELS if key not in labels]
        assert not missing, f"{manifest.kind}/{manifest.name} lacks {missing}"
        assert labels["app"] == "triton"
        assert labels["env"] == env
        monitored = manifest.kind in ("ServiceMonitor", "PrometheusRule")
        expected_release = f"monitoring-{env}" if monitored else "triton"
        assert labels["release"] == expected_release, f"{manifest.kind}/{manifest.name}"


LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
DIGEST = "sha256:" + "ab" * 32


def _versions(item: render.Rendering) -> set[str]:
    return {manifest.body["metadata"]["labels"]["app.kubernetes.io/version"] for manifest in item.manifests}


def test_version_label_and_notes_name_the_image_tag_the_pods_run(rendered, render_with):
    app_version = yaml.safe_load((environments.CHART_DIR / "Chart.yaml").read_text(encoding="utf-8"))[
        "appVersion"
    ]
    assert _versions(rendered["prod"]) == {app_version}
    item = render_with("prod", {"image": {"tag": "26.10-py3"}})
    assert _versions(item) == {"26.10-py3"}, "an image.tag override is the version that runs"
    assert item.notes.startswith("Triton Inference Server 26.10-py3 (nvcr.io/nvidia/tritonserver:26.10-py3)")
    assert app_version not in item.notes


def test_a_pinned_digest_keeps_the_tag_as_version_and_notes_show_the_digest(render_with):
    # A label value cannot hold a digest (a colon, and 71 characters > 63): the tag stays the
    # version, and the digest, which decides what runs, is shown next to it.
    item = render_with("prod", {"image": {"tag": "26.10-py3", "digest": DIGEST}})
    assert _versions(item) == {"26.10-py3"}
    assert f"(nvcr.io/nvidia/tritonserver@{DIGEST})" in item.notes.splitlines()[0]
    assert triton_container(item)["image"] == f"nvcr.io/nvidia/tritonserver@{DIGEST}"


def test_version_label_is_a_valid_label_value_for_any_image_tag(render_with):
    # Docker tags take up to 128 characters and may start with "_"; label values take 63.
    item = render_with("prod", {"image": {"tag": "_" + "26.10-py3-custom." * 7}})
    (version,) = _versions(item)
    assert len(version) <= 63 and LABEL_VALUE.fullmatch(version), version
    assert version.startswith("26.10-py3-custom.")


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_every_namespaced_object_sets_the_environment_namespace(rendered, env):
    namespace = environments.get(env).namespace
    for manifest in rendered[env].manifests:
        if manifest.kind == "PersistentVolume":
            assert "namespace" not in manifest.body["metadata"]
            continue
        assert manifest.body["metadata"]["namespace"] == namespace, f"{manifest.kind}/{manifest.name}"


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_selectors_carry_only_name_and_instance(rendered, env):
    item = rendered[env]
    selector_sets = [
        item.one("Deployment")["spec"]["selector"]["matchLabels"],
        item.one("Service")["spec"]["selector"],
        item.one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
    ]
    for selector in selector_sets:
        assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/instance"}


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_pod_template_carries_platform_labels_for_the_seed_platform(rendered, env):
    labels = rendered[env].one("Deployment")["spec"]["template"]["metadata"]["labels"]
    # Compared key by key: a set of the values would accept swapped labels (app=dev, env=triton).
    assert (labels["app"], labels["env"], labels["release"]) == ("triton", env, "triton")


def test_dev_is_one_cpu_replica_scraped_by_the_dev_prometheus(rendered):
    dev = rendered["dev"]
    assert dev.environment.namespace == "triton-dev"
    assert dev.one("Deployment")["spec"]["replicas"] == 1
    limits = triton_container(dev)["resources"]["limits"]
    assert not [key for key in limits if key.startswith("nvidia.com/")]
    assert dev.one("ServiceMonitor")["metadata"]["labels"]["release"] == "monitoring-dev"
    assert not dev.of_kind("HorizontalPodAutoscaler")


def test_prod_is_gpu_with_at_least_two_replicas_pdb_and_hpa(rendered):
    prod = rendered["prod"]
    assert prod.environment.namespace == "triton-prod"
    assert triton_container(prod)["resources"]["limits"]["nvidia.com/gpu"] == 1
    hpa = prod.one("HorizontalPodAutoscaler")["spec"]
    assert hpa["minReplicas"] >= 2
    assert "replicas" not in prod.one("Deployment")["spec"], "the HPA owns the replica count"
    assert prod.one("PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert prod.one("ServiceMonitor")["metadata"]["labels"]["release"] == "monitoring-prod"
    assert "nodeSelector" not in pod_spec(prod), "the nvidia.com/gpu request places the pods (K2)"


def test_local_profile_maps_the_repository_to_a_claim_the_runtime_replaces(rendered):
    local = rendered["local"]
    volumes = {v["name"]: v for v in pod_spec(local)["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "local-models"
    assert not local.of_kind("ServiceMonitor")
    assert not local.of_kind("Pod"), "no helm test pod for the embedded runtime"


def _scripts_checksum(item) -> str:
    return item.one("Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/scripts"]


def test_config_changes_roll_the_pods(render_with, tmp_path):
    """A changed script (the scripts ConfigMap) changes `checksum/scripts`, which rolls the pods;
    a values change that leaves the scripts alone leaves the checksum alone."""
    before = render_with("dev", {})
    args_only = render_with("dev", {"server": {"committedState": {"file": "state.json"}}})
    assert _scripts_checksum(args_only) == _scripts_checksum(before)
    assert before.one("Deployment")["spec"]["template"] != args_only.one("Deployment")["spec"]["template"]

    chart = tmp_path / "chart"
    shutil.copytree(environments.CHART_DIR, chart)
    ready = chart / "files" / "ready.py"
    ready.write_text(ready.read_text(encoding="utf-8") + "# changed\n", encoding="utf-8")
    edited = render.render("dev", chart_dir=chart)
    (scripts,) = [m.body for m in edited.of_kind("ConfigMap") if m.name == "triton-scripts"]
    assert scripts["data"]["ready.py"].endswith("# changed\n")
    assert re.fullmatch(r"[0-9a-f]{64}", _scripts_checksum(edited))
    assert _scripts_checksum(edited) != _scripts_checksum(before)


def test_notes_say_how_to_reach_and_check_the_server(rendered):
    notes = rendered["dev"].notes
    assert "kubectl -n triton-dev port-forward svc/triton 8000:8000 8001:8001 8002:8002" in notes
    assert "/v2/models/<MODEL>/ready" in notes
    assert "admin-key" in notes
