"""The GPU machine's side of `make test-gpu`: run the prepared prod pod's Triton container on the GPU.

`tritonops up` runs a rendered pod through tritonops.runtime, but the project's package cannot be
imported where Helm's binding is missing (a GPU image with its own Python and torch), so this runs
the plan that tests/gpu/bundle.py wrote from that same runtime code (podspec), with the standard
library only: the tokens filled in, the trimmed server unpacked, the stub of the torch Python's
version in the Python backend, the container's command started, and its probes run the way the
kubelet runs them (the startup probe's HTTP GET, then the readiness script).
"""

from __future__ import annotations

import contextlib
import json
import lzma
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKENS = {
    "bundle": "@BUNDLE@",
    "python": "@PYTHON@",
    "tritonserver": "@TRITONSERVER@",
    "backends": "@BACKENDS@",
}
SERVER = Path("pytriton") / "tritonserver"
STUB = "triton_python_backend_stub"
LOG = "triton.log"
# Lets urllib ignore proxy settings: everything here is on the loopback.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# What a test waits for at most (the rendered startup budget is 10 minutes; a device run has less).
STARTUP_LIMIT_S = 300.0
READY_LIMIT_S = 120.0
# Asked of the torch Python: its version, search paths and what torch sees.
PYTHON_FACTS = """
import json, sys, sysconfig
facts = {"version": "%d.%d" % sys.version_info[:2], "scripts": sysconfig.get_path("scripts"),
         "site": list(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))}
try:
    import torch
    facts.update(torch=torch.__version__, cuda=torch.cuda.is_available(), cuda_version=torch.version.cuda)
except Exception as error:
    facts.update(torch=None, cuda=False, error=repr(error))
print(json.dumps(facts))
"""


def gpus() -> list[dict[str, str]]:
    """The GPUs `nvidia-smi` sees (name, driver, uuid, memory); empty where it is missing or sees none."""
    if shutil.which("nvidia-smi") is None:
        return []
    query = "--query-gpu=name,driver_version,uuid,memory.total"
    result = subprocess.run(
        ["nvidia-smi", query, "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        return []
    keys = ("name", "driver", "uuid", "memory")
    return [
        dict(zip(keys, (part.strip() for part in line.split(",")), strict=True))
        for line in result.stdout.splitlines()
        if line.count(",") == 3
    ]


def no_gpu_reason() -> str | None:
    """Why `make test-gpu` cannot run here, or None: `nvidia-smi -L` must list an NVIDIA GPU."""
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU visible: nvidia-smi is not installed"
    result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0 or not re.search(r"^GPU \d+:", result.stdout, re.MULTILINE):
        return f"no NVIDIA GPU visible: `nvidia-smi -L` lists none ({(result.stdout + result.stderr).strip()[:200]})"
    return None


def python_facts(python: str) -> dict[str, Any]:
    result = subprocess.run(
        [python, "-c", PYTHON_FACTS], capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        return {"torch": None, "cuda": False, "error": result.stderr.strip()[-500:]}
    return dict(json.loads(result.stdout))


@dataclass
class Node:
    """The prod pod's Triton container running from a bundle."""

    plan: dict[str, Any]
    work: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    readiness_output: str = ""

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.plan['ports']['http']}"

    @property
    def metrics(self) -> str:
        return f"http://127.0.0.1:{self.plan['ports']['metrics']}/metrics"

    def option(self, flag: str) -> str:
        """The value of `--flag=VALUE` in the container's command."""
        (value,) = [word.split("=", 1)[1] for word in self.plan["command"] if word.startswith(f"--{flag}=")]
        return str(value)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after Triton's exit timeout (the pod's preStop sleep waits for
        endpoints to drain, which a local process has none of)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=40)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def unpack(bundle: Path, work: Path, python_version: str) -> dict[str, str]:
    """The bundle copied to `work` (the pod's volumes are written to), the server unpacked beside
    it, and the stub of `python_version` put in the Python backend; the tokens' values."""
    copy = work / "bundle"
    shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns("*.xz"), symlinks=True)
    server_root = work / "server"
    server_root.mkdir()
    # The standard library's lzma: a GPU image need not have xz.
    with tarfile.open(bundle / "tritonserver.tar.xz", "r:xz") as archive:
        archive.extractall(server_root, filter="tar")
    server = server_root / SERVER
    stub = server / "python_backend_stubs" / python_version / STUB
    if not stub.is_file():
        raise FileNotFoundError(f"{stub}: the bundle has no Python backend stub for Python {python_version}")
    shutil.copy2(stub, server / "backends" / "python" / STUB)
    return {
        TOKENS["bundle"]: str(copy),
        TOKENS["tritonserver"]: str(server / "bin" / "tritonserver"),
        TOKENS["backends"]: str(server / "backends"),
    }


def unpack_promtool(bundle: Path, work: Path) -> str | None:
    """The bundle's promtool, or one on PATH; None without either."""
    archive = bundle / "promtool.xz"
    if not archive.is_file():
        return shutil.which("promtool")
    promtool = work / "promtool"
    with lzma.open(archive) as packed, promtool.open("wb") as out:
        shutil.copyfileobj(packed, out)
    promtool.chmod(0o755)
    return str(promtool)


def fill(value: Any, tokens: dict[str, str]) -> Any:
    """`value` (the plan, or any part of it) with every token replaced."""
    if isinstance(value, str):
        for token, replacement in tokens.items():
            value = value.replace(token, replacement)
        return value
    if isinstance(value, list):
        return [fill(item, tokens) for item in value]
    if isinstance(value, dict):
        return {key: fill(item, tokens) for key, item in value.items()}
    return value


def command(plan: dict[str, Any]) -> list[str]:
    """The container's command; the image entrypoint that the plan skipped where it was made (K1,
    NGC's nvidia_entrypoint.sh) runs first where it exists, as tritonops.runtime.podspec does."""
    entrypoint = list(plan.get("skipped_entrypoint") or [])
    if entrypoint and shutil.which(entrypoint[0]):
        return [*entrypoint, *plan["command"]]
    return list(plan["command"])


def environment(plan: dict[str, Any], facts: dict[str, Any]) -> dict[str, str]:
    """The container's env over this process's, with the torch Python first on PATH (the stub takes
    its prefix from the first python3 there) and its site-packages on PYTHONPATH (so the model's
    stub imports torch: RUNTIME.md's recipe)."""
    env = {**os.environ, **plan["env"]}
    for name, entries in (("PATH", [facts["scripts"]]), ("PYTHONPATH", facts["site"])):
        existing = [entry for entry in env.get(name, "").split(os.pathsep) if entry]
        env[name] = os.pathsep.join(dict.fromkeys([*entries, *existing]))
    return env


def start(plan: dict[str, Any], facts: dict[str, Any], work: Path) -> Node:
    """Start the container's command, pass its startup probe, then its readiness script."""
    log_path = work / LOG
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command(plan),
            env=environment(plan, facts),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    node = Node(plan, work, log_path, process)
    try:
        _pass_startup(node)
        node.readiness_output = _pass_readiness(node)
    except BaseException:
        node.stop()
        raise
    return node


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    return request("GET", url, None, headers, timeout)


def request(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 30.0
) -> tuple[int, bytes]:
    """(status, body) of one HTTP call; an error status is returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    call = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        call.add_header("Content-Type", "application/json")
    try:
        with OPENER.open(call, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def infer(node: Node, model: str, rows: list[list[float]]) -> dict[str, Any]:
    """One KServe v2 JSON inference: INPUT0 of shape [len(rows), 4]; the outputs by name."""
    body = {
        "inputs": [{"name": "INPUT0", "shape": [len(rows), len(rows[0])], "datatype": "FP32", "data": rows}]
    }
    status, text = request("POST", f"{node.http}/v2/models/{model}/infer", body)
    if status != 200:
        raise AssertionError(f"infer {model}: HTTP {status}: {text[:500]!r}")
    return {output["name"]: output for output in json.loads(text)["outputs"]}


def _pass_startup(node: Node) -> None:
    probe = node.plan["startup"]
    limit = min(probe["period_s"] * probe["failure_threshold"], STARTUP_LIMIT_S)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise AssertionError(
                f"the container exited ({node.process.returncode}) before its startup probe passed:\n{_tail(node)}"
            )
        with contextlib.suppress(OSError):
            if get(probe["url"], timeout=probe["timeout_s"])[0] == 200:
                return
        time.sleep(1.0)
    raise AssertionError(f"startup probe {probe['url']} not passed within {limit:.0f} s:\n{_tail(node)}")


def _pass_readiness(node: Node) -> str:
    """Run the rendered readiness script until it exits 0 (its output), like the kubelet's exec probe."""
    probe = node.plan["readiness"]
    deadline = time.monotonic() + READY_LIMIT_S
    output = ""
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise AssertionError(
                f"the container exited ({node.process.returncode}) before it was ready:\n{_tail(node)}"
            )
        result = subprocess.run(
            probe["command"], capture_output=True, text=True, timeout=probe["timeout_s"] + 5, check=False
        )
        output = (result.stdout + result.stderr).strip()
        if result.returncode == 0:
            return output
        time.sleep(1.0)
    raise AssertionError(
        f"readiness script never passed within {READY_LIMIT_S:.0f} s: {output}\n{_tail(node)}"
    )


def _tail(node: Node, lines: int = 40) -> str:
    return "\n".join(node.log().splitlines()[-lines:])
