"""GPU scheduling: resources, node selection, taint toleration, runtime class; nothing when off."""

from __future__ import annotations

import kubernetes_validate
import yaml

from tests.chart.helpers import pod_spec, triton_container
from tritonops.chart import environments

GPU_ON = {"gpu": {"enabled": True}}


def test_gpu_off_requests_no_gpu_and_targets_no_gpu_node(rendered):
    item = rendered["dev"]
    resources = triton_container(item)["resources"]
    assert not [k for k in {**resources["limits"], **resources["requests"]} if k.startswith("nvidia.com/")]
    spec = pod_spec(item)
    assert "nodeSelector" not in spec
    assert "tolerations" not in spec
    assert "runtimeClassName" not in spec


def test_gpu_on_requests_gpus_and_tolerates_the_gpu_taint(render_with):
    item = render_with("dev", GPU_ON)
    resources = triton_container(item)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"]["nvidia.com/gpu"] == 1
    spec = pod_spec(item)
    assert "nodeSelector" not in spec, "node selection is opt-in: the GPU request places the pod (K2)"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]


def test_mig_profile_is_requested_by_its_resource_name(render_with):
    item = render_with(
        "dev", {"gpu": {"enabled": True, "resourceName": "nvidia.com/mig-1g.10gb", "count": 2}}
    )
    limits = triton_container(item)["resources"]["limits"]
    assert limits["nvidia.com/mig-1g.10gb"] == 2
    assert "nvidia.com/gpu" not in limits


def test_sku_pool_and_runtime_class(render_with):
    item = render_with(
        "dev",
        {
            "gpu": {"enabled": True, "product": "NVIDIA-L4", "runtimeClassName": "nvidia"},
            "nodeSelector": {"pool": "inference"},
        },
    )
    spec = pod_spec(item)
    assert spec["nodeSelector"] == {
        "nvidia.com/gpu.product": "NVIDIA-L4",
        "pool": "inference",
    }
    assert spec["runtimeClassName"] == "nvidia"


def test_user_tolerations_are_kept_next_to_the_gpu_one(render_with):
    extra = {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    item = render_with("dev", {**GPU_ON, "tolerations": [extra]})
    assert len(pod_spec(item)["tolerations"]) == 2
    assert extra in pod_spec(item)["tolerations"]


def test_gpu_taint_toleration_can_be_left_out(render_with):
    item = render_with("dev", {"gpu": {"enabled": True, "tolerateGpuTaint": False}})
    assert "tolerations" not in pod_spec(item)


def test_cpu_and_memory_requests_and_limits_are_always_set(rendered):
    for item in rendered.values():
        resources = triton_container(item)["resources"]
        for section in ("requests", "limits"):
            assert resources[section]["cpu"] and resources[section]["memory"]


def test_shm_is_a_memory_backed_empty_dir_of_the_configured_size(rendered):
    volumes = {v["name"]: v for v in pod_spec(rendered["prod"])["volumes"]}
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Gi"}
    mounts = {m["name"]: m["mountPath"] for m in triton_container(rendered["prod"])["volumeMounts"]}
    assert mounts["shm"] == "/dev/shm"


# --- keeping pods off GPUs the image's CUDA no longer supports -----------------------------------

PROD_VALUES = environments.VALUES_DIR / "prod.yaml"
# GPU Feature Discovery's labels for some GPUs: (nvidia.com/gpu.compute.major, .minor).
COMPUTE_CAPABILITY = {
    "P4": ("6", "1"),
    "P100": ("6", "0"),
    "V100": ("7", "0"),
    "T4": ("7", "5"),
    "A100": ("8", "0"),
    "L4": ("8", "9"),
    "H100": ("9", "0"),
    "B200": ("10", "0"),
    "RTX PRO 6000": ("12", "0"),
}


def _commented_prod_affinity() -> dict:
    """The commented `affinity:` example in values/prod.yaml, uncommented."""
    lines = PROD_VALUES.read_text(encoding="utf-8").splitlines()
    start = lines.index("# affinity:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line[2:])
    return yaml.safe_load("\n".join(block))


def _term_matches(term: dict, labels: dict[str, str]) -> bool:
    """A nodeSelectorTerm as the scheduler reads it (In and Gt, the operators the example uses)."""
    for expression in term["matchExpressions"]:
        value = labels.get(expression["key"])
        if value is None:
            return False
        if expression["operator"] == "In" and value not in expression["values"]:
            return False
        if expression["operator"] == "Gt" and not int(value) > int(expression["values"][0]):
            return False
    return True


def test_prod_example_keeps_pods_off_gpus_below_compute_capability_7_5(render_with):
    # NGC 26.09 is built on CUDA 13, which dropped Maxwell, Pascal and Volta (compute capability
    # below 7.5). The example must render, validate and admit exactly the supported GPUs.
    item = render_with("prod", _commented_prod_affinity())
    kubernetes_validate.validate(item.one("Deployment"), "1.27.0", strict=True)
    terms = pod_spec(item)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    admitted = {
        gpu
        for gpu, (major, minor) in COMPUTE_CAPABILITY.items()
        if any(
            _term_matches(
                term, {"nvidia.com/gpu.compute.major": major, "nvidia.com/gpu.compute.minor": minor}
            )
            for term in terms
        )
    }
    assert admitted == {"T4", "A100", "L4", "H100", "B200", "RTX PRO 6000"}
    assert not any(_term_matches(term, {}) for term in terms), "a node without GFD labels is not admitted"


def test_chart_readme_shows_the_prod_example():
    readme = (environments.CHART_DIR / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("**GPU generation.**") :]
    start = section.index("```yaml\n") + len("```yaml\n")
    block = section[start : section.index("```\n", start)]
    assert yaml.safe_load(block) == _commented_prod_affinity()
