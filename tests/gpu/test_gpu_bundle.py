"""`make test-gpu` without a GPU: what the GPU run will start is the prod render's Triton container,
its model repository passes the repository checks for prod, the GPU machine's runner starts the
prepared pod (here with a CPU stand-in for the torch model, on the installed wheel's server), and
where no GPU is visible the target is one skip that says why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import committing
from tests.conftest import ROOT
from tests.gpu import bundle, node
from tests.observability import gpu_series
from tests.runtime.conftest import free_port_offset
from tritonops.triton import server as triton_server

SCRIPT = ROOT / "scripts" / "test-gpu.sh"
CHART_FILES = ROOT / "charts" / "triton" / "files"
NGC_ENTRYPOINT = "/opt/nvidia/nvidia_entrypoint.sh"


@pytest.fixture(scope="module")
def rendered():
    return bundle.render_gpu()


@pytest.fixture(scope="module")
def prepared(rendered, tmp_path_factory) -> Path:
    """A bundle without its archives (the server and promtool travel only to a GPU machine)."""
    folder = tmp_path_factory.mktemp("bundle")
    bundle.write_models(folder)
    bundle.write_plan(rendered, folder)
    return folder


def test_the_plan_is_the_prod_pods_triton_container(rendered, prepared):
    container = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    plan = json.loads((prepared / "plan.json").read_text(encoding="utf-8"))
    words = plan["command"]
    # K1: the image entrypoint is recorded, and runs first on a machine that has it (node.command).
    assert container["command"] == plan["skipped_entrypoint"] == [NGC_ENTRYPOINT]
    assert words[:2] == ["@PYTHON@", "@BUNDLE@/pod/volumes/scripts/launch.py"]
    split = words.index("--")
    assert words[split + 1 : split + 6] == [
        "@TRITONSERVER@",
        "--backend-directory=@BACKENDS@",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
    ]
    # Every rendered argument, in order: paths mapped to the bundle, ports shifted, nothing else changed.
    args = container["args"]
    mapped = [
        word.replace("/opt/tritonops", "@BUNDLE@/pod/volumes/scripts")
        .replace("/var/run/secrets/tritonops/repository-api", "@BUNDLE@/pod/volumes/repository-api-key")
        .replace("/models", "@BUNDLE@/models")
        .replace("/tmp", "@BUNDLE@/pod/replicas/0/volumes/tmp")
        for word in args[1:]
    ]
    for port in ("8000", "8001", "8002"):
        mapped = [word.replace(f"-port={port}", f"-port={int(port) + bundle.PORT_OFFSET}") for word in mapped]
    mapped[mapped.index("tritonserver")] = "@TRITONSERVER@"
    local_only = {
        "--backend-directory=@BACKENDS@",
        *(f"--{k}-address=127.0.0.1" for k in ("http", "grpc", "metrics")),
    }
    assert [word for word in words[1:] if word not in local_only] == mapped
    assert {"--allow-gpu-metrics=true", "--load-model=torch_gpu", "--metrics-interval-ms=2000"} <= set(words)
    assert plan["readiness"]["command"][:2] == ["@PYTHON@", "@BUNDLE@/pod/volumes/scripts/ready.py"]
    assert "--model=torch_gpu" in plan["readiness"]["command"]
    assert plan["startup"]["url"].endswith(f":{8000 + bundle.PORT_OFFSET}/v2/health/live")


def test_the_bundle_carries_the_charts_scripts_and_key_and_no_path_of_this_machine(prepared):
    scripts = prepared / "pod" / "volumes" / "scripts"
    for name in ("launch.py", "ready.py", "committed_state.py"):
        assert (scripts / name).read_bytes() == (CHART_FILES / name).read_bytes(), name
    assert (prepared / "pod" / "volumes" / "repository-api-key" / "key").read_text(encoding="utf-8").strip()
    text = (prepared / "plan.json").read_text(encoding="utf-8")
    for local in (str(ROOT), str(prepared), sys.executable, str(triton_server.wheel_root())):
        assert local not in text, local
    assert bundle.TOKENS == node.TOKENS
    assert {token for token in bundle.TOKENS.values() if token in text} == set(bundle.TOKENS.values())


def test_the_gpu_model_repository_passes_the_repository_checks_for_prod(prepared, run_cli):
    repository = prepared / "models"
    result = run_cli("repo", "validate", str(repository), "--env", "prod")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 error(s), 0 warning(s)" in result.stdout
    # dev has no GPUs: the same repository is refused there, so the check above is a real one.
    result = run_cli("repo", "validate", str(repository), "--env", "dev")
    assert result.returncode == 1 and "KIND_GPU" in result.stdout + result.stderr
    state = json.loads((repository / "current.json").read_text(encoding="utf-8"))
    assert state["models"][bundle.MODEL]["version"] == 1
    assert state["models"][bundle.MODEL]["digest"].startswith("sha256:")


def test_the_server_archive_holds_what_the_gpu_machine_unpacks():
    site = triton_server.wheel_root().parents[1]
    members = bundle.server_members()
    server = str(node.SERVER)
    assert f"{server}/bin" in members and "nvidia_pytriton.libs" in members
    assert f"{server}/python_backend_stubs/3.12" in members  # the GPU image's Python (RUNTIME.md)
    assert (site / server / "backends" / "python" / "libtriton_python.so").is_file()
    for version in bundle.STUB_VERSIONS:
        assert (site / server / "python_backend_stubs" / version / node.STUB).is_file()


def test_the_entrypoint_runs_first_only_where_it_exists():
    plan = {"skipped_entrypoint": ["/usr/bin/env"], "command": ["python3", "launch.py"]}
    assert node.command(plan) == ["/usr/bin/env", "python3", "launch.py"]
    plan["skipped_entrypoint"] = ["/nonexistent/entrypoint.sh"]
    assert node.command(plan) == ["python3", "launch.py"]


def test_the_gpu_runner_starts_the_prepared_pod_here_with_a_cpu_stand_in_model(rendered, backends, tmp_path):
    """node.py as the GPU machine runs it, on the installed wheel's server: the launcher verifies the
    committed model and restricts the repository API, the startup probe and the readiness script
    pass, inference answers. The torch model needs a GPU, so a numpy model with its inputs, outputs
    and constants (KIND_CPU) stands in for it."""
    prepared = tmp_path / "bundle"
    repository = bundle.write_models(prepared)
    _cpu_stand_in(repository / bundle.MODEL)
    bundle.write_plan(rendered, prepared, port_offset=free_port_offset(1))
    facts = node.python_facts(sys.executable)
    tokens = {
        node.TOKENS["bundle"]: str(prepared),
        node.TOKENS["python"]: sys.executable,
        node.TOKENS["tritonserver"]: str(triton_server.binary()),
        node.TOKENS["backends"]: str(backends),
    }
    plan = node.fill(json.loads((prepared / "plan.json").read_text(encoding="utf-8")), tokens)
    started = node.start(plan, facts, tmp_path)
    try:
        assert f"launch: committed model {bundle.MODEL} version 1: files match sha256:" in started.log()
        index = f"{started.http}/v2/repository/index"
        assert node.request("POST", index, {})[0] == 403
        key = Path(started.option("api-key-file")).read_text(encoding="utf-8").strip()
        assert node.request("POST", index, {}, {started.option("api-header"): key})[0] == 200
        outputs = node.infer(started, bundle.MODEL, [[1.0, 2.0, 3.0, 4.0]])
        assert outputs["OUTPUT0"]["data"] == [1.0, 6.0, 10.0, 15.5]
        assert bytes(outputs["COMPUTED_ON"]["data"]).decode() == "cpu|stand-in"
    finally:
        started.stop()


def _cpu_stand_in(model: Path) -> None:
    """The torch model's folder with a numpy model.py (same constants, inputs and outputs) on
    KIND_CPU, committed again."""
    source = (model / "1" / "model.py").read_text(encoding="utf-8")
    constants = source[source.index("WEIGHT = [") : source.index("class TritonPythonModel")]
    (model / "1" / "model.py").write_text(
        "import numpy as np\nimport triton_python_backend_utils as pb_utils\n\n"
        + constants
        + """
class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            y = (x @ np.array(WEIGHT, np.float32) + np.array(BIAS, np.float32)).astype(np.float32)
            where = np.tile(np.frombuffer(b"cpu|stand-in", dtype=np.uint8), (x.shape[0], 1))
            outputs = [pb_utils.Tensor("OUTPUT0", y), pb_utils.Tensor("COMPUTED_ON", where)]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
""",
        encoding="utf-8",
    )
    config = model / "config.pbtxt"
    config.write_text(config.read_text(encoding="utf-8").replace("KIND_GPU", "KIND_CPU"), encoding="utf-8")
    committing.commit(model.parent, model.name, 1)


def _script(tmp_path: Path, fake_nvidia_smi: str | None) -> subprocess.CompletedProcess[str]:
    """scripts/test-gpu.sh with a PATH of this machine's tools less any nvidia-smi, plus, when
    given, a fake nvidia-smi (this machine has no GPU driver to ask)."""
    path = [
        folder
        for folder in os.environ["PATH"].split(os.pathsep)
        if not (Path(folder) / "nvidia-smi").exists()
    ]
    if fake_nvidia_smi is not None:
        fake = tmp_path / "bin"
        fake.mkdir()
        (fake / "nvidia-smi").write_text(f"#!/bin/sh\n{fake_nvidia_smi}\n", encoding="utf-8")
        (fake / "nvidia-smi").chmod(0o755)
        path.insert(0, str(fake))
    env = {**os.environ, "PATH": os.pathsep.join(path)}
    return subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("fake_nvidia_smi", "reason"),
    [
        (None, "no NVIDIA GPU visible: nvidia-smi is not installed"),
        ("echo 'No devices were found'; exit 6", "no NVIDIA GPU visible: `nvidia-smi -L` lists none"),
    ],
    ids=["no-driver", "no-device"],
)
def test_without_a_gpu_make_test_gpu_reports_one_skip_with_the_reason(tmp_path, fake_nvidia_smi, reason):
    assert shutil.which("nvidia-smi") is None, "this test describes a machine without a GPU"
    result = _script(tmp_path, fake_nvidia_smi)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout and "passed" not in result.stdout
    assert reason in result.stdout


def test_every_capture_says_where_it_comes_from_and_every_gpu_run_passed():
    """The README names every file of tests/resources/gpu/; a GPU run's verdicts say every check
    passed on a named GPU, and its two captures are there."""
    folder = gpu_series.CAPTURES
    readme = (folder / "README.md").read_text(encoding="utf-8")
    for path in sorted(folder.glob("*")):
        if path.name == "README.md":
            continue
        assert f"`{path.name}`" in readme, f"{path.name}: say in README.md where it comes from"
    for verdicts_file in folder.glob("*-verdicts.json"):
        found = json.loads(verdicts_file.read_text(encoding="utf-8"))
        assert found["gpus"] and found["computed_on"].startswith("cuda:"), verdicts_file.name
        assert set(found["checks"].values()) == {"passed"}, found["checks"]
        prefix = verdicts_file.name.removesuffix("-verdicts.json")
        for phase in ("idle", "busy"):
            assert (folder / f"{prefix}-metrics-{phase}.txt").is_file(), (prefix, phase)


def test_captures_are_read_under_the_names_triton_exposes():
    """prometheus_client renames counters `<name>_total`; Prometheus stores Triton's own names."""
    capture = gpu_series.CAPTURES / "h200-triton-2.51-metrics-busy.txt"
    names = {sample.name for sample in gpu_series.read(capture.read_text(encoding="utf-8"))}
    assert {"nv_inference_request_success", "nv_energy_consumption", "nv_gpu_utilization"} <= names
    assert not {name for name in names if name.endswith("_total") and "bytes" not in name}
