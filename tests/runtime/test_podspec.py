"""The rendered pod, mapped to local processes: nothing invented, only images, paths and ports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tritonops.chart import render
from tritonops.runtime import podspec
from tritonops.triton import server as triton_server


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    work = tmp_path_factory.mktemp("plan")
    repository = work / "models"
    repository.mkdir()
    item = render.render("local", set_values=["replicaCount=2"])
    return (
        item,
        podspec.plan_replicas(
            item,
            replicas=2,
            repository=repository,
            work_dir=work,
            port_offset=100,
            backends=work / "backends",
        ),
        work,
    )


def test_command_is_the_rendered_one_with_the_image_swapped(plans):
    item, (first, _), work = plans
    command = list(first.command)
    assert command[:2] == [sys.executable, str(work / "volumes" / "scripts" / "launch.py")]
    server = command[command.index("--") + 1 :]
    assert server[0] == str(triton_server.binary())
    assert server[1] == f"--backend-directory={work / 'backends'}"
    assert "--http-address=127.0.0.1" in server and "--grpc-address=127.0.0.1" in server
    rendered = item.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    rendered_server = rendered[rendered.index("--") + 1 :]
    kept = [
        arg
        for arg in rendered_server
        if not arg.startswith(
            ("--http-port", "--grpc-port", "--metrics-port", "--model-repository", "tritonserver")
        )
    ]
    assert kept, "the rendered command line has arguments besides ports and repository"
    assert all(arg in server for arg in kept), "every other rendered argument is passed unchanged"


def test_volumes_are_mapped_to_local_folders(plans):
    _, (first, _), work = plans
    command = " ".join(first.command)
    assert f"--model-repository={work / 'models'}" in command
    assert f"--committed-state={work / 'models' / 'current.json'}" in command
    assert f"--api-key-file={work / 'volumes' / 'repository-api-key' / 'key'}" in command
    assert (work / "volumes" / "scripts" / "ready.py").is_file()
    key = (work / "volumes" / "repository-api-key" / "key").read_text()
    assert (
        len(key) == 40 and oct((work / "volumes" / "repository-api-key" / "key").stat().st_mode)[-3:] == "400"
    )
    assert first.env["HOME"] == str(Path(first.work_dir) / "volumes" / "tmp")


def test_each_replica_gets_its_own_ports(plans):
    _, (first, second), _ = plans
    assert first.ports == {"http": 8100, "grpc": 8101, "metrics": 8102}
    assert second.ports == {"http": 8110, "grpc": 8111, "metrics": 8112}
    assert "--http-port=8110" in second.command and "--metrics-port=8112" in second.command
    assert second.work_dir != first.work_dir


def test_probes_keep_their_rendered_timings_and_target_the_replica(plans):
    item, (_, second), _ = plans
    container = item.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert second.startup.url == "http://127.0.0.1:8110/v2/health/live"
    assert second.startup.period_s == container["startupProbe"]["periodSeconds"]
    assert second.startup.failure_threshold == container["startupProbe"]["failureThreshold"]
    assert second.liveness.url == "http://127.0.0.1:8110/v2/health/live"
    assert second.readiness.kind == "exec"
    assert "--port=8110" in second.readiness.command
    assert second.readiness.command[0] == sys.executable
    assert (
        second.grace_s == item.one("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    )


def test_the_agent_sidecar_is_mapped_like_the_triton_container(plans):
    item, (first, second), work = plans
    (agent,) = second.sidecars
    assert agent.name == "agent"
    command = list(agent.command)
    assert command[:2] == [sys.executable, str(work / "volumes" / "scripts" / "agent.py")]
    # Every port of the pod it names moves with the replica: its own, and its Triton's HTTP port.
    assert agent.ports == {"agent-metrics": 8113}
    assert "--metrics-port=8113" in command and "--port=8110" in command
    assert "--metrics-address=127.0.0.1" in command  # local processes listen on loopback only
    assert f"--committed-state={work / 'models' / 'current.json'}" in command
    assert f"--api-key-file={work / 'volumes' / 'repository-api-key' / 'key'}" in command
    # The readiness check's marker, in the replica's own /tmp (the same folder as Triton's).
    tmp = Path(second.work_dir) / "volumes" / "tmp"
    assert f"--fallback-marker={tmp / 'tritonops' / 'readiness-fallback'}" in command
    assert second.env["HOME"] == str(tmp) == agent.env["HOME"]
    assert agent.liveness is not None and agent.liveness.url == "http://127.0.0.1:8113/healthz"
    assert first.sidecars[0].ports == {"agent-metrics": 8103}
    # The Triton container's own plan is unchanged by the sidecar.
    assert second.ports == {"http": 8110, "grpc": 8111, "metrics": 8112}
    assert podspec.pod_ports(item, replicas=2, port_offset=100)[1] == {**second.ports, **agent.ports}
    assert podspec.ReplicaPlan.from_dict(second.to_dict()) == second


def test_kubernetes_variable_expansion():
    assert podspec._expand("--key=$(API_KEY)", {"API_KEY": "s3cr3t"}) == "--key=s3cr3t"
    assert podspec._expand("$(MISSING)", {}) == "$(MISSING)"


def test_init_container_runs_only_where_its_command_exists(tmp_path):
    sha = "a" * 64
    item = render.render(
        "local",
        set_values=[
            "modelRepository.pvc.enabled=false",
            "modelRepository.download.enabled=true",
            f"modelRepository.download.artifacts[0].url=https://example.invalid/m.onnx,modelRepository.download.artifacts[0].sha256={sha},modelRepository.download.artifacts[0].path=m/1/model.onnx",
        ],
    )
    (plan,) = podspec.plan_replicas(
        item, replicas=1, repository=tmp_path, work_dir=tmp_path, port_offset=0, backends=tmp_path / "b"
    )
    (init,) = plan.init
    assert init.name == "fetch-models"
    assert init.command[0] == "sh" and init.runnable
    assert str(tmp_path / "replicas" / "0" / "volumes" / "models") in init.command[2]


def test_plan_round_trips_through_json(plans):
    _, (first, _), _ = plans
    assert podspec.ReplicaPlan.from_dict(first.to_dict()) == first


def test_prod_gpu_request_and_placement_are_named_as_not_applied():
    lines = podspec.not_applied(render.render("prod"))
    assert lines == [
        "resources nvidia.com/gpu: 1 (gpu.enabled: true in values/prod.yaml) not applied: the replicas "
        "run on this machine's CPU (the local ONNX Runtime backend is CPU-only)",
        "tolerations (nvidia.com/gpu Exists:NoSchedule) not applied: there is no scheduler here; every "
        "replica runs on this machine",
        "topologySpreadConstraints (topology.kubernetes.io/zone, kubernetes.io/hostname) not applied: "
        "there is no scheduler here; every replica runs on this machine",
    ]


def test_gpu_pool_mig_slice_and_runtime_class_are_named_with_their_values():
    item = render.render(
        "prod",
        set_values=[
            "gpu.resourceName=nvidia.com/mig-1g.10gb",
            "gpu.product=NVIDIA-A100-SXM4-80GB-MIG-1g.10gb",
            "gpu.runtimeClassName=nvidia",
        ],
    )
    lines = podspec.not_applied(item)
    assert lines[0].startswith("resources nvidia.com/mig-1g.10gb: 1 (gpu.enabled: true in values/prod.yaml)")
    assert "nodeSelector (nvidia.com/gpu.product=NVIDIA-A100-SXM4-80GB-MIG-1g.10gb) not applied" in lines[1]
    assert lines[-1] == (
        "runtimeClassName (nvidia) not applied: the replicas start as plain processes, with no container runtime"
    )


@pytest.mark.parametrize("env", ["local", "dev"])
def test_cpu_environments_drop_nothing(env):
    assert podspec.not_applied(render.render(env)) == []
