"""`up`, `status`, `logs` and `down`: start the rendered pod's replicas under a supervisor, wait for
them, report them, and stop them leaving no process behind."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonops import errors
from tritonops.chart import environments, render
from tritonops.runtime import podspec, ports, replica_logs, startup_models, workspace
from tritonops.runtime.supervisor import State
from tritonops.triton import server as triton_server

log = logging.getLogger(__name__)

SAMPLE_REPOSITORY = environments.PROJECT_ROOT / "examples" / "model-repository"
POLL_S = 0.2


@dataclass(frozen=True)
class SidecarStatus:
    """One of the pod's other containers (the agent) beside a replica's Triton."""

    name: str
    state: str
    reason: str
    restarts: int
    pid: int | None
    ports: dict[str, int]
    log: str

    def url(self, port: str) -> str:
        return f"http://{triton_server.LOOPBACK}:{self.ports.get(port)}"


@dataclass(frozen=True)
class ReplicaStatus:
    index: int
    state: str
    reason: str
    restarts: int
    last_restart: str
    pid: int | None
    ports: dict[str, int]
    log: str
    # The log line that says why the replica's last start ended (Triton's first error), if any.
    log_line: str = ""
    sidecars: tuple[SidecarStatus, ...] = ()

    def sidecar(self, name: str) -> SidecarStatus:
        found = [sidecar for sidecar in self.sidecars if sidecar.name == name]
        if not found:
            raise errors.InputError(f"replica {self.index} runs no container named {name!r}")
        return found[0]

    @property
    def url(self) -> str:
        return f"http://{triton_server.LOOPBACK}:{self.ports.get('http')}"

    @property
    def grpc_address(self) -> str:
        return f"{triton_server.LOOPBACK}:{self.ports.get('grpc')}"

    @property
    def metrics_url(self) -> str:
        return f"http://{triton_server.LOOPBACK}:{self.ports.get('metrics')}/metrics"


@dataclass(frozen=True)
class RuntimeStatus:
    work_dir: Path
    running: bool
    replicas: tuple[ReplicaStatus, ...]
    api_header: str | None = None
    api_key_file: Path | None = None
    # The model repository every replica serves (None before the first `up`).
    repository: Path | None = None
    # `tritonops up` with the --work-dir and --port-offset this runtime was started with.
    start_command: str = "tritonops up"

    @property
    def all_ready(self) -> bool:
        return bool(self.replicas) and all(r.state == State.READY for r in self.replicas)

    @property
    def failed(self) -> list[ReplicaStatus]:
        return [r for r in self.replicas if r.state == State.FAILED]

    def api_key(self) -> str | None:
        return self.api_key_file.read_text(encoding="utf-8").strip() if self.api_key_file else None


@dataclass(frozen=True)
class Stopped:
    """What `down` found and did: whether anything was started in the folder, how many replicas
    a running supervisor stopped, and how many leftover process groups had to be killed."""

    work_dir: Path
    started: bool
    was_running: bool
    replicas: int = 0
    killed: int = 0


def up(
    env_name: str = "local",
    *,
    work_dir: Path = Path(workspace.DEFAULT_DIR),
    replicas: int | None = None,
    repository: Path | None = None,
    port_offset: int = 0,
    set_values: tuple[str, ...] = (),
    extra_files: tuple[Path, ...] = (),
    timeout_s: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> RuntimeStatus:
    """Render, start every replica under a supervisor, and wait until all are Ready or one Failed."""
    if replicas is not None and replicas < 1:
        raise errors.InputError(f"--replicas {replicas}: run at least one replica")
    space = workspace.Workspace(work_dir.resolve())
    if space.supervisor_alive():
        raise errors.InputError(
            f"{space.root}: a runtime is already running here; run "
            f"`{workspace.command_hint('down', work_dir)}` first"
        )
    overrides = list(set_values) + ([f"replicaCount={replicas}"] if replicas else [])
    item = render.render(env_name, extra_files=extra_files, set_values=overrides)
    # With an HPA the Deployment renders no replicas field (replicaCount is not used): start the
    # HPA's minimum, unless --replicas says otherwise.
    count = replicas or int(
        item.one("Deployment")["spec"].get("replicas") or item.values["autoscaling"]["minReplicas"]
    )
    # Before anything starts: a port another process holds would answer this replica's probes.
    ports.check(podspec.pod_ports(item, replicas=count, port_offset=port_offset), port_offset)
    # And before anything is written: a model the pod cannot load would only fail after three restarts.
    startup_models.check(item, _repository_source(repository))
    model_dir = _prepare_repository(space, repository)
    _reset(space)
    backends = triton_server.assemble_backends(space.root)
    plans = podspec.plan_replicas(
        item,
        replicas=count,
        repository=model_dir,
        work_dir=space.root,
        port_offset=port_offset,
        backends=backends,
    )
    # Said like the skipped entrypoint and init containers: what of the pod spec does not run here.
    for line in podspec.not_applied(item):
        if progress:
            progress(line)
    for plan in plans[:1]:
        if progress and plan.skipped_entrypoint:
            progress(
                f"entrypoint {' '.join(plan.skipped_entrypoint)} skipped: it does not exist on this "
                "machine; the container's args run directly"
            )
        for init in plan.init:
            if progress and not init.runnable:
                progress(f"init container {init.name} skipped: {init.reason}")
    restricted = item.values["repositoryApi"]["restricted"]
    space.write_json(
        space.plan_file,
        {
            "environment": env_name,
            "repository": str(model_dir),
            "port_offset": port_offset,
            # Never the caller's whole environment (it may hold secrets): only the search-path
            # entries the local server needs; the pod spec's env is in each replica's plan, and
            # the supervisor adds both to its own environment when it starts a replica.
            "search_path_prepend": triton_server.search_path_additions(),
            "api_header": restricted["header"] if restricted["enabled"] else None,
            "api_key_file": str(space.root / "volumes" / "repository-api-key" / restricted["secretKey"])
            if restricted["enabled"]
            else None,
            "replicas": [plan.to_dict() for plan in plans],
        },
    )
    supervisor = _spawn_supervisor(space)
    space.write_json(space.plan_file, {**space.read_plan(), "supervisor_pid": supervisor.pid})
    budget = timeout_s if timeout_s is not None else _startup_budget(plans)
    try:
        return _wait_until_settled(space, supervisor, budget, progress)
    except BaseException:
        down(work_dir=space.root)
        raise


def status(work_dir: Path = Path(workspace.DEFAULT_DIR)) -> RuntimeStatus:
    space = workspace.Workspace(work_dir.resolve())
    plan = space.read_plan()
    state = space.read_state() or {"replicas": []}
    running = space.supervisor_alive() is not None
    offset = plan.get("port_offset")
    start = workspace.command_hint("up", work_dir) + (f" --port-offset {offset}" if offset else "")
    stopped = f"the supervisor is not running (`{start}` to start)"
    replicas = tuple(
        ReplicaStatus(
            index=r["index"],
            state=r["state"] if running else (State.STOPPED if r["state"] != State.FAILED else r["state"]),
            reason=r["reason"] if running else stopped,
            restarts=r["restarts"],
            last_restart=r.get("last_restart", ""),
            pid=r["pid"] if running else None,
            ports=r["ports"],
            log=r["log"],
            log_line=r.get("log_line", ""),
            sidecars=tuple(_sidecar_status(c, running) for c in r.get("containers", ())),
        )
        for r in state["replicas"]
    )
    key_file = Path(plan["api_key_file"]) if plan.get("api_key_file") else None
    repository = Path(plan["repository"]) if plan.get("repository") else None
    return RuntimeStatus(space.root, running, replicas, plan.get("api_header"), key_file, repository, start)


def running_status(work_dir: Path, *, otherwise: str) -> RuntimeStatus:
    """status() of a runtime whose supervisor runs, else an InputError: none started there, give
    `otherwise` (what the caller could use instead: "--endpoints ...") or start one; one there
    but stopped (or not started yet), start it."""
    space = workspace.Workspace(work_dir.resolve())
    if not space.plan_file.is_file():
        start = workspace.command_hint("up", work_dir)
        raise errors.InputError(f"no local runtime in {space.root}: {otherwise}, or start one (`{start}`)")
    current = status(work_dir)
    if not current.running or not current.replicas:
        raise errors.InputError(
            f"the local runtime in {current.work_dir} is not running; start it with `{current.start_command}`"
        )
    return current


def _sidecar_status(container: dict[str, Any], running: bool) -> SidecarStatus:
    return SidecarStatus(
        name=container["name"],
        state=container["state"] if running else State.STOPPED,
        reason=container["reason"] if running else "the supervisor is not running",
        restarts=container["restarts"],
        pid=container["pid"] if running else None,
        ports=container["ports"],
        log=container["log"],
    )


def logs(work_dir: Path = Path(workspace.DEFAULT_DIR), replica: int | None = None, lines: int = 50) -> str:
    current = status(work_dir)
    chosen = [r for r in current.replicas if replica is None or r.index == replica]
    if replica is not None and not chosen:
        raise errors.InputError(f"replica {replica}: no such replica (0..{len(current.replicas) - 1})")
    parts = []
    for entry in chosen:
        text = (
            Path(entry.log).read_text(encoding="utf-8", errors="replace") if Path(entry.log).exists() else ""
        )
        parts.append(f"==> replica {entry.index} ({entry.log}) <==\n" + "\n".join(text.splitlines()[-lines:]))
    return "\n".join(parts)


def failure_text(replica: ReplicaStatus, work_dir: Path | None = None) -> str:
    """Why a replica failed, each fact once: the supervisor's short reason, the log line that says
    why (not Triton's option table), what to do about ports in use, and where the whole log is."""
    lines = [f"replica {replica.index} failed: {replica.reason}"]
    why = replica.log_line or replica_logs.first_error_line(Path(replica.log))
    if why:
        lines.append(f"  its log says: {why}")
        if "already in use" in why:
            lines.append(f"  another process holds that port: {ports.OFFSET_HINT}")
    logs_command = workspace.command_hint(f"logs {replica.index}", work_dir) if work_dir else "tritonops logs"
    lines.append(f"  full log: {replica.log} (`{logs_command}`)")
    return "\n".join(lines)


def down(work_dir: Path = Path(workspace.DEFAULT_DIR), *, timeout_s: float | None = None) -> Stopped:
    """SIGTERM the supervisor (which stops each replica within its grace period), then make sure no
    process of this runtime is left. Says whether anything was started or running there."""
    space = workspace.Workspace(work_dir.resolve())
    if not space.plan_file.exists():
        return Stopped(space.root, started=False, was_running=False)
    plan = space.read_plan()
    grace = max((r.get("grace_s", 30.0) for r in plan.get("replicas", [])), default=30.0)
    pid = space.supervisor_alive()
    replicas = 0
    if pid is not None:
        replicas = len((space.read_state() or {}).get("replicas", []))
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else grace + 15)
        while workspace._alive(pid) and time.monotonic() < deadline:
            time.sleep(POLL_S)
    killed = _kill_leftovers(space, pid)
    return Stopped(space.root, started=True, was_running=pid is not None, replicas=replicas, killed=killed)


def _kill_leftovers(space: workspace.Workspace, supervisor_pid: int | None) -> int:
    """Anything still running from this work folder (supervisor, replicas, stubs) gets SIGKILL."""
    killed = 0
    groups = {supervisor_pid} if supervisor_pid else set()
    for replica in (space.read_state() or {}).get("replicas", []):
        for process in [replica, *replica.get("containers", ())]:
            if process.get("pid"):
                groups.add(process["pid"])
    for group in groups:
        # A recorded pid may have been reused by an unrelated process: only ours mention the work folder.
        if not _belongs_to(group, space.root):
            continue
        try:
            os.killpg(group, signal.SIGKILL)
            killed += 1
        except (ProcessLookupError, PermissionError):
            pass
    return killed


def _belongs_to(pid: int, root: Path) -> bool:
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return str(root) in command_line


def _repository_source(repository: Path | None) -> Path:
    """The folder the replicas' repository comes from: `--repository`, else the sample."""
    if repository is not None:
        if not repository.is_dir():
            raise errors.InputError(f"--repository {repository}: no such folder")
        return repository.resolve()
    if not SAMPLE_REPOSITORY.is_dir():
        raise errors.InputError(f"{SAMPLE_REPOSITORY}: the sample repository is missing; run `make setup`")
    return SAMPLE_REPOSITORY


def _prepare_repository(space: workspace.Workspace, repository: Path | None) -> Path:
    source = _repository_source(repository)
    if repository is not None:
        return source
    if space.repository.exists():
        shutil.rmtree(space.repository)
    shutil.copytree(source, space.repository)
    return space.repository


def _reset(space: workspace.Workspace) -> None:
    """Forget the previous run's state and replica folders (the API key and repository stay)."""
    space.root.mkdir(parents=True, exist_ok=True)
    for stale in (space.state_file, space.plan_file):
        stale.unlink(missing_ok=True)
    shutil.rmtree(space.root / "replicas", ignore_errors=True)


def _spawn_supervisor(space: workspace.Workspace) -> subprocess.Popen[bytes]:
    with space.supervisor_log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "tritonops.runtime.supervisor", str(space.root)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _startup_budget(plans: list[podspec.ReplicaPlan]) -> float:
    """What the rendered probes allow for a start: startup budget + readiness threshold, and margin."""
    worst = 0.0
    for plan in plans:
        startup = plan.startup.period_s * plan.startup.failure_threshold if plan.startup else 0.0
        readiness = (
            plan.readiness.period_s * (plan.readiness.failure_threshold + 1) if plan.readiness else 0.0
        )
        worst = max(worst, startup + readiness)
    return worst + 10.0


def _wait_until_settled(
    space: workspace.Workspace,
    supervisor: subprocess.Popen[bytes],
    budget_s: float,
    progress: Callable[[str], None] | None,
) -> RuntimeStatus:
    deadline = time.monotonic() + budget_s
    seen: dict[int, tuple[str, str]] = {}
    while True:
        if supervisor.poll() is not None:
            raise errors.ServerError(
                f"the supervisor exited with code {supervisor.returncode}; see {space.supervisor_log}"
            )
        current = status(space.root)
        for replica in current.replicas:
            key = (replica.state, replica.reason)
            if progress and seen.get(replica.index) != key:
                progress(f"replica {replica.index}: {replica.state} ({replica.reason})")
            seen[replica.index] = key
        if current.all_ready or current.failed:
            return current
        if time.monotonic() >= deadline:
            raise errors.ServerError(
                f"replicas not Ready within {budget_s:g} s: "
                + "; ".join(f"{r.index} {r.state} ({r.reason})" for r in current.replicas)
            )
        time.sleep(POLL_S)


def describe(current: RuntimeStatus) -> list[dict[str, Any]]:
    return [
        {
            "replica": r.index,
            "state": r.state,
            "reason": r.reason,
            "restarts": r.restarts,
            "last_restart": r.last_restart,
            "pid": r.pid,
            "ports": r.ports,
            "log": r.log,
            "log_line": r.log_line,
            "containers": [
                {
                    "name": c.name,
                    "state": c.state,
                    "reason": c.reason,
                    "restarts": c.restarts,
                    "pid": c.pid,
                    "ports": c.ports,
                    "log": c.log,
                }
                for c in r.sidecars
            ],
        }
        for r in current.replicas
    ]
