"""GPU scheduling: resources, node selection, taint toleration, runtime class; nothing when off."""

from __future__ import annotations

from tests.chart.helpers import pod_spec, triton_container

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
