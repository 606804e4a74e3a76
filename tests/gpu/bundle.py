"""What `make test-gpu` needs on a GPU machine, prepared where the project's environment is.

Rendering needs Helm's engine (helm-python-sdk), which a GPU machine without this project's venv
does not have (this workplace's GPU machines reach no package registry either), so everything a
render decides is prepared here and travels as one folder (git-ignored, 64 MiB at most):

    .gpu-bundle/
      plan.json            the prod pod's Triton container as `tritonops up` plans it (podspec):
                           the launcher, its arguments, env, ports, the startup probe and the
                           readiness script; paths are @TOKENS@ the GPU run fills in (`TOKENS`)
      pod/volumes/...      the pod's volumes: the chart's scripts ConfigMap (launch.py, ready.py),
                           the repository API key Secret, the emptyDirs
      models/              the model repository: tests/gpu/models, committed (current.json with
                           each version's digest, which the launcher verifies)
      observability.json   the prod rules, the GPU panels' queries and the scrape's target labels
                           (tests/observability/gpu_series.Inputs)
      tritonserver.tar.xz  the wheel's server, trimmed as RUNTIME.md verified on an H200: bin,
                           backends/python, the Python backend stubs and nvidia_pytriton.libs
      promtool.xz          this machine's promtool (a Go binary that needs only libc), when it has one
      bundle.json          what was prepared, from what

    python -m tests.gpu.bundle [--bundle DIR]      (scripts/test-gpu.sh prepare)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from tests import committing
from tests.observability import gpu_series
from tritonops.chart import render
from tritonops.observability import dashboard, prometheus, rule_file
from tritonops.runtime import podspec
from tritonops.triton import server as triton_server

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BUNDLE = ROOT / ".gpu-bundle"
HERE = Path(__file__).parent
GPU_VALUES = HERE / "resources" / "gpu-values.yaml"
MODELS = HERE / "models"
MODEL = "torch_gpu"
# The rendered ports (8000-8002) shifted, as `tritonops up` shifts them, clear of common services.
PORT_OFFSET = 10000
# Placeholders for what only the GPU machine knows: where the bundle was copied to, its Python (the
# one with torch: launch.py, ready.py and the model's stub all run under it, as under the image's
# python3 in the pod), and where the trimmed server was unpacked.
TOKENS = {
    "bundle": "@BUNDLE@",
    "python": "@PYTHON@",
    "tritonserver": "@TRITONSERVER@",
    "backends": "@BACKENDS@",
}
# The pod the replayed series are scraped from (a Deployment's pod name shape) and its metrics address.
REPLAY_POD = "triton-7d9f8c6b5-a1b2c"
REPLAY_ADDRESS = "10.0.0.1:8002"
# The Python backend stubs that travel: the GPU machine copies the one of its own Python's version.
STUB_VERSIONS = ("3.10", "3.11", "3.12", "3.13")
SERVER_ARCHIVE = "tritonserver.tar.xz"
PROMTOOL_ARCHIVE = "promtool.xz"
# The device's limit on what travels with the working tree.
CARRY_LIMIT_BYTES = 64 * 1024 * 1024


def render_gpu() -> render.Rendering:
    """values/base.yaml + values/prod.yaml + the GPU check's startup model."""
    return render.render("prod", extra_files=[GPU_VALUES])


def write_plan(item: render.Rendering, bundle: Path, port_offset: int = PORT_OFFSET) -> dict[str, Any]:
    """The prod pod's Triton container planned into `bundle` (volumes, key, scripts) and written to
    plan.json with this machine's paths replaced by `TOKENS`; the plan as written. The agent
    sidecar stays out: the GPU check is about the Triton container."""
    pod_dir = bundle / "pod"
    if pod_dir.exists():
        shutil.rmtree(pod_dir)
    (plan,) = podspec.plan_replicas(
        item,
        replicas=1,
        repository=bundle / "models",
        work_dir=pod_dir,
        port_offset=port_offset,
        backends=Path(TOKENS["backends"]),
    )
    # The pod's folders travel even where a copy drops empty ones (the emptyDirs start empty).
    for folder in [pod_dir, *pod_dir.rglob("*")]:
        if folder.is_dir() and not any(folder.iterdir()):
            (folder / ".keep").touch()
    data = plan.to_dict()
    data.pop("sidecars")
    text = json.dumps(data, indent=2, sort_keys=True)
    for local, token in (
        (str(bundle), TOKENS["bundle"]),
        (str(triton_server.binary()), TOKENS["tritonserver"]),
        (sys.executable, TOKENS["python"]),
    ):
        text = text.replace(json.dumps(local)[1:-1], token)
    (bundle / "plan.json").write_text(text + "\n", encoding="utf-8")
    return dict(json.loads(text))


def write_models(bundle: Path) -> Path:
    """tests/gpu/models copied into the bundle and committed the way the promotion tool leaves a
    repository (version pinned, current.json with its digest), so the launcher's --verify-digest
    and the readiness script's committed-version check both run on the GPU."""
    repository = bundle / "models"
    if repository.exists():
        shutil.rmtree(repository)
    shutil.copytree(MODELS, repository, ignore=shutil.ignore_patterns("__pycache__"))
    committing.commit(repository, MODEL, 1)
    # The commit's files come from mkstemp (0600); the pod reads the repository as another user.
    for path in repository.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return repository


def observability_inputs(item: render.Rendering) -> gpu_series.Inputs:
    """The rendered rules, the GPU-memory threshold, the labels the rendered ServiceMonitor's scrape
    gives a pod's series, and every target of the shipped dashboard that reads nv_gpu_* series."""
    job = prometheus.scrape_config(item, [prometheus.Target(REPLAY_POD, REPLAY_ADDRESS)])
    (targets,) = job["static_configs"]
    board = json.loads(dashboard.DASHBOARD_FILE.read_text(encoding="utf-8"))
    units = {panel["title"]: panel["fieldConfig"]["defaults"]["unit"] for panel in dashboard.panels(board)}
    return gpu_series.Inputs(
        rules=rule_file.rule_file(item, annotations=False),
        threshold=float(item.values["monitoring"]["prometheusRule"]["alerts"]["gpuMemory"]["threshold"]),
        target={**targets["labels"], "instance": targets["targets"][0]},
        scrape_interval=job["scrape_interval"],
        panels=tuple(
            gpu_series.Panel(title, units[title], expr)
            for title, expr, reads_gpu in dashboard.panel_queries(board)
            if reads_gpu
        ),
    )


def server_members() -> list[str]:
    """The paths, relative to site-packages, of the trimmed server: the binary, the Python backend,
    the stubs and the wheel's bundled libraries (their RPATHs point at each other through
    $ORIGIN, so the two folders stay side by side)."""
    site = triton_server.wheel_root().parents[1]
    server = triton_server.wheel_root().relative_to(site)
    members = [server / "bin", *[server / "python_backend_stubs" / version for version in STUB_VERSIONS]]
    python = server / "backends" / "python"
    # Not the stub link the local runtime adds (it points at this machine's Python's stub).
    members += [python / name for name in ("libtriton_python.so", triton_server.UTILS_NAME)]
    members.append(Path("nvidia_pytriton.libs"))
    missing = [str(member) for member in members if not (site / member).exists()]
    if missing:
        raise FileNotFoundError(f"nvidia-pytriton in {site} lacks {missing}")
    return [str(member) for member in members]


def write_server_archive(bundle: Path) -> Path:
    site = triton_server.wheel_root().parents[1]
    archive = bundle / SERVER_ARCHIVE
    command = ["tar", "--use-compress-program=xz -T0 -6", "-cf", str(archive), "-C", str(site)]
    subprocess.run([*command, *server_members()], check=True)
    return archive


def write_promtool(bundle: Path) -> Path | None:
    promtool = shutil.which("promtool")
    if promtool is None:
        (bundle / PROMTOOL_ARCHIVE).unlink(missing_ok=True)
        return None
    archive = bundle / PROMTOOL_ARCHIVE
    with archive.open("wb") as out:
        subprocess.run(["xz", "-T0", "-6", "-c", promtool], stdout=out, check=True)
    return archive


def prepare(bundle: Path = DEFAULT_BUNDLE, *, archives: bool = True) -> Path:
    """Write the whole bundle; the archives are rebuilt only when the wheel or promtool changed."""
    bundle.mkdir(parents=True, exist_ok=True)
    item = render_gpu()
    write_models(bundle)
    write_plan(item, bundle)
    (bundle / "observability.json").write_text(observability_inputs(item).to_json(), encoding="utf-8")
    sources = {"nvidia-pytriton": metadata.version("nvidia-pytriton"), "promtool": _promtool_version()}
    manifest_path = bundle / "bundle.json"
    before = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else {}
    if archives and (before.get("sources") != sources or not (bundle / SERVER_ARCHIVE).exists()):
        write_server_archive(bundle)
        write_promtool(bundle)
    manifest = {
        "prepared": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": item.environment.name,
        "values": [os.path.relpath(path, ROOT) for path in (*item.environment.values_files, GPU_VALUES)],
        "model": MODEL,
        "sources": sources,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    size = sum(path.stat().st_size for path in bundle.rglob("*") if path.is_file() and not path.is_symlink())
    if size > CARRY_LIMIT_BYTES:
        raise SystemExit(f"{bundle}: {size / 2**20:.0f} MiB, over the 64 MiB a device run carries")
    return bundle


def _promtool_version() -> str | None:
    promtool = shutil.which("promtool")
    if promtool is None:
        return None
    result = subprocess.run([promtool, "--version"], capture_output=True, text=True, check=False)
    return (result.stdout or result.stderr).splitlines()[0] if result.returncode == 0 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.gpu.bundle", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundle", type=Path, default=DEFAULT_BUNDLE, help="where to write (default .gpu-bundle)"
    )
    parser.add_argument(
        "--no-archives", action="store_true", help="leave out the server and promtool archives"
    )
    args = parser.parse_args(argv)
    bundle = prepare(args.bundle.resolve(), archives=not args.no_archives)
    size = sum(path.stat().st_size for path in bundle.rglob("*") if path.is_file() and not path.is_symlink())
    print(f"prepared {bundle} ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
