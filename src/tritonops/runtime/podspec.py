"""Turn the rendered pod into local processes: the Triton container's command line, environment,
ports and probes, with its volumes mapped to local folders and its ports shifted per replica.

Nothing here is invented: every argument comes from the rendered Deployment. Only the image is
swapped (`tritonserver` -> the wheel's binary plus a backends folder, `python3` -> this Python),
container paths are replaced by the folders they are mounted from, and servers bind to loopback.
An image entrypoint that wraps the arguments (the container's `command`, such as NGC's
`/opt/nvidia/nvidia_entrypoint.sh`) runs only where it exists; elsewhere it is skipped and the plan
says so, as it does for init containers that cannot run here.
"""

from __future__ import annotations

import base64
import re
import secrets
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tritonops import errors
from tritonops.chart import render
from tritonops.triton import server as triton_server

PORT_FLAGS = {"http": "--http-port=", "grpc": "--grpc-port=", "metrics": "--metrics-port="}
# Words the mapper replaces with their local equivalents: never an entrypoint to look up.
MAPPED_BINARIES = ("python3", "python", "tritonserver")
VARIABLE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
# Resources a local process shares with the host; any other (nvidia.com/gpu, a MIG slice) is a device.
HOST_RESOURCES = ("cpu", "memory", "ephemeral-storage")


@dataclass(frozen=True)
class ProbeSpec:
    """A probe as the kubelet runs it: an HTTP GET on a local port, or a command."""

    kind: str  # "http" or "exec"
    period_s: float
    timeout_s: float
    failure_threshold: int
    success_threshold: int = 1
    initial_delay_s: float = 0.0
    url: str = ""
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class InitSpec:
    name: str
    command: tuple[str, ...]
    runnable: bool
    reason: str = ""


@dataclass(frozen=True)
class SidecarPlan:
    """Another container of the rendered pod (the agent), run beside the replica's Triton as a
    process of its own, supervised and restarted on its own like the kubelet does."""

    name: str
    command: tuple[str, ...]
    env: dict[str, str]
    ports: dict[str, int]
    liveness: ProbeSpec | None
    grace_s: float = 30.0
    skipped_mounts: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SidecarPlan:
        data = dict(data)
        probe = data.get("liveness")
        data["liveness"] = ProbeSpec(**{**probe, "command": tuple(probe["command"])}) if probe else None
        for key in ("command", "skipped_mounts"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)


@dataclass(frozen=True)
class ReplicaPlan:
    """Everything needed to run one replica of the rendered pod as a local process."""

    index: int
    command: tuple[str, ...]
    env: dict[str, str]
    ports: dict[str, int]
    work_dir: str
    startup: ProbeSpec | None
    liveness: ProbeSpec | None
    readiness: ProbeSpec | None
    pre_stop: tuple[str, ...] = ()
    grace_s: float = 30.0
    init: tuple[InitSpec, ...] = ()
    skipped_mounts: tuple[str, ...] = field(default_factory=tuple)
    # The container's entrypoint (`command`) when it does not exist here and its args run directly.
    skipped_entrypoint: tuple[str, ...] = ()
    # The pod's other containers, each a process of its own beside this replica's Triton.
    sidecars: tuple[SidecarPlan, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplicaPlan:
        data = dict(data)
        for key in ("startup", "liveness", "readiness"):
            probe = data.get(key)
            data[key] = ProbeSpec(**{**probe, "command": tuple(probe["command"])}) if probe else None
        data["init"] = tuple(
            InitSpec(**{**spec, "command": tuple(spec["command"])}) for spec in data.get("init", ())
        )
        for key in ("command", "pre_stop", "skipped_mounts", "skipped_entrypoint"):
            data[key] = tuple(data.get(key, ()))
        data["sidecars"] = tuple(SidecarPlan.from_dict(sidecar) for sidecar in data.get("sidecars", ()))
        return cls(**data)


def plan_replicas(
    item: render.Rendering,
    *,
    replicas: int,
    repository: Path,
    work_dir: Path,
    port_offset: int,
    backends: Path,
) -> list[ReplicaPlan]:
    """One plan per replica; replica i's ports are the rendered ones + port_offset + 10*i."""
    deployment = item.one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "triton")
    shared = _shared_volume_folders(item, pod, work_dir, repository)
    plans = []
    all_ports = replica_ports(item, replicas=replicas, port_offset=port_offset)
    for index in range(replicas):
        replica_dir = work_dir / "replicas" / str(index)
        (replica_dir / "volumes").mkdir(parents=True, exist_ok=True)
        volumes = {**shared, **_replica_volume_folders(pod, replica_dir)}
        mounts, skipped = _mounts(container, volumes)
        offset = port_offset + 10 * index
        ports = all_ports[index]
        mapper = _Mapper(mounts, ports, offset, backends)
        env = {
            e["name"]: mapper.path(str(e.get("value", ""))) for e in container.get("env", []) if "value" in e
        }
        command, skipped_entrypoint = _container_command(container, mapper, env)
        plans.append(
            ReplicaPlan(
                index=index,
                command=tuple(command),
                env=env,
                ports=ports,
                work_dir=str(replica_dir),
                startup=_probe(container.get("startupProbe"), mapper, env),
                liveness=_probe(container.get("livenessProbe"), mapper, env),
                readiness=_probe(container.get("readinessProbe"), mapper, env),
                pre_stop=tuple(mapper.command(_pre_stop(container), env)),
                grace_s=float(pod.get("terminationGracePeriodSeconds", 30)),
                init=tuple(_init(c, volumes, mapper, env) for c in pod.get("initContainers", [])),
                skipped_mounts=tuple(skipped),
                skipped_entrypoint=tuple(skipped_entrypoint),
                sidecars=tuple(
                    _sidecar(other, volumes, offset, backends, pod)
                    for other in pod["containers"]
                    if other["name"] != "triton"
                ),
            )
        )
    return plans


def _sidecar(
    container: dict[str, Any], volumes: dict[str, Path], offset: int, backends: Path, pod: dict[str, Any]
) -> SidecarPlan:
    """A non-Triton container mapped like the Triton one: its own mounts, python3 -> this Python,
    and every port of the pod it names (its own, or Triton's in `--port=8000`) shifted by the
    replica's offset."""
    mounts, skipped = _mounts(container, volumes)
    ports = {p["name"]: int(p["containerPort"]) + offset for p in container.get("ports", [])}
    rendered = {int(p["containerPort"]) for c in pod["containers"] for p in c.get("ports", [])}
    mapper = _SidecarMapper(mounts, ports, offset, backends, rendered)
    env = {e["name"]: mapper.path(str(e.get("value", ""))) for e in container.get("env", []) if "value" in e}
    command, _ = _container_command(container, mapper, env)
    return SidecarPlan(
        name=container["name"],
        command=tuple(command),
        env=env,
        ports=ports,
        liveness=_probe(container.get("livenessProbe"), mapper, env),
        grace_s=float(pod.get("terminationGracePeriodSeconds", 30)),
        skipped_mounts=tuple(skipped),
    )


def pod_ports(item: render.Rendering, *, replicas: int, port_offset: int) -> list[dict[str, int]]:
    """Each replica's ports by name, of every container of the pod (Triton's and the sidecars'):
    what must be free before anything starts."""
    pod = item.one("Deployment")["spec"]["template"]["spec"]
    return [
        {
            p["name"]: int(p["containerPort"]) + port_offset + 10 * index
            for container in pod["containers"]
            for p in container.get("ports", [])
        }
        for index in range(replicas)
    ]


def not_applied(item: render.Rendering) -> list[str]:
    """What of the rendered pod spec needs a cluster and is left out here, one line each with the
    rendered value and why: device requests (`nvidia.com/gpu`, MIG slices), which local processes
    cannot be given, and the scheduling fields, which have no scheduler and one machine to act on.
    Empty for a CPU pod without placement rules, such as `local`'s."""
    pod = item.one("Deployment")["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "triton")
    resources = container.get("resources") or {}
    devices = {
        name: amount
        for kind in ("requests", "limits")
        for name, amount in (resources.get(kind) or {}).items()
        if name not in HOST_RESOURCES and not name.startswith("hugepages-")
    }
    lines = [
        f"resources {name}: {amount} (gpu.enabled: {str(item.values['gpu']['enabled']).lower()} in "
        f"{item.source_of('gpu.enabled')}) not applied: the replicas run on this machine's CPU "
        "(the local ONNX Runtime backend is CPU-only)"
        for name, amount in devices.items()
    ]
    scheduling: dict[str, Callable[[Any], str]] = {
        "nodeSelector": lambda v: ", ".join(f"{key}={value}" for key, value in v.items()),
        "affinity": lambda v: ", ".join(v),
        "tolerations": lambda v: ", ".join(_toleration(t) for t in v),
        "topologySpreadConstraints": lambda v: ", ".join(str(c.get("topologyKey")) for c in v),
        "runtimeClassName": str,
    }
    for field_name, describe in scheduling.items():
        value = pod.get(field_name)
        if value:
            why = (
                "the replicas start as plain processes, with no container runtime"
                if field_name == "runtimeClassName"
                else "there is no scheduler here; every replica runs on this machine"
            )
            lines.append(f"{field_name} ({describe(value)}) not applied: {why}")
    return lines


def _toleration(toleration: dict[str, Any]) -> str:
    """`key op value:effect` as kubectl describe shows a toleration."""
    value = f"={toleration['value']}" if toleration.get("value") else ""
    effect = f":{toleration['effect']}" if toleration.get("effect") else ""
    operator = " Exists" if toleration.get("operator") == "Exists" else ""
    return f"{toleration.get('key', '(any key)')}{value}{operator}{effect}"


def replica_ports(item: render.Rendering, *, replicas: int, port_offset: int) -> list[dict[str, int]]:
    """Each replica's ports by name: the rendered container ports + port_offset + 10*i."""
    container = _triton_container(item)
    return [
        {p["name"]: int(p["containerPort"]) + port_offset + 10 * index for p in container.get("ports", [])}
        for index in range(replicas)
    ]


def _triton_container(item: render.Rendering) -> dict[str, Any]:
    pod = item.one("Deployment")["spec"]["template"]["spec"]
    return dict(next(c for c in pod["containers"] if c["name"] == "triton"))


class _Mapper:
    """Rewrites container paths, ports and binaries into their local equivalents."""

    def __init__(self, mounts: dict[str, Path], ports: dict[str, int], offset: int, backends: Path) -> None:
        # Longest mount path first, so /models/x never matches a shorter /m prefix.
        self.mounts = sorted(mounts.items(), key=lambda item: -len(item[0]))
        self.ports = ports
        self.offset = offset
        self.backends = backends

    def path(self, value: str) -> str:
        """Every container mount path in `value` replaced by its local folder, in one pass (a
        replaced path is never rewritten again by a shorter mount such as /tmp)."""
        if not self.mounts:
            return value
        locals_by_path = {container_path: str(local) for container_path, local in self.mounts}
        alternation = "|".join(re.escape(container_path) for container_path, _ in self.mounts)
        pattern = re.compile(rf"(?<![\w/.-])({alternation})(?=/|$|\s|,)")
        return pattern.sub(lambda match: locals_by_path[match.group(1)], value)

    def command(self, words: list[str], env: dict[str, str]) -> list[str]:
        mapped = [self.path(_expand(word, env)) for word in words]
        if mapped and mapped[0] in ("python3", "python"):
            mapped[0] = sys.executable
        if "tritonserver" in mapped:
            at = mapped.index("tritonserver")
            mapped[at] = str(triton_server.binary())
            mapped.insert(at + 1, f"--backend-directory={self.backends}")
            # Local replicas listen on loopback only: nothing but this machine may reach them.
            loopback = [f"--{kind}-address={triton_server.LOOPBACK}" for kind in ("http", "grpc", "metrics")]
            mapped[at + 2 : at + 2] = loopback
        return [self._port(word) for word in mapped]

    def _port(self, word: str) -> str:
        for name, flag in PORT_FLAGS.items():
            if word.startswith(flag) and name in self.ports:
                return f"{flag}{self.ports[name]}"
        match = re.fullmatch(r"--port=(\d+)", word)
        if match:
            return f"--port={int(match.group(1)) + self.offset}"
        return word

    def port(self, port: Any) -> int:
        if isinstance(port, int):
            return port + self.offset
        if port not in self.ports:
            raise errors.InputError(
                f"probe port {port!r} is not a named container port ({sorted(self.ports)})"
            )
        return self.ports[port]


class _SidecarMapper(_Mapper):
    """A sidecar names ports by number in flags of its own (`--metrics-port=8003`, Triton's
    `--port=8000`): any `--...port=N` with N a port of the rendered pod moves with the replica.
    A `--...address=0.0.0.0` becomes loopback: local processes listen on nothing else."""

    def __init__(
        self, mounts: dict[str, Path], ports: dict[str, int], offset: int, backends: Path, rendered: set[int]
    ) -> None:
        super().__init__(mounts, ports, offset, backends)
        self.rendered = rendered

    def _port(self, word: str) -> str:
        match = re.fullmatch(r"(--[\w-]*port=)(\d+)", word)
        if match and int(match.group(2)) in self.rendered:
            return f"{match.group(1)}{int(match.group(2)) + self.offset}"
        address = re.fullmatch(r"(--[\w-]*address=)0\.0\.0\.0", word)
        if address:
            return f"{address.group(1)}{triton_server.LOOPBACK}"
        return word


def _container_command(
    container: dict[str, Any], mapper: _Mapper, env: dict[str, str]
) -> tuple[list[str], list[str]]:
    """The local command line, and the entrypoint left out because it does not exist here.

    With both `command` and `args`, `command` is an image entrypoint that wraps the args (K1: NGC's
    nvidia_entrypoint.sh execs them). Where it exists it runs first; where it does not, the args
    run directly. Anything else (`python3`, `tritonserver`) is mapped to its local equivalent.
    """
    entrypoint = [str(word) for word in container.get("command", [])]
    args = [str(word) for word in container.get("args", [])]
    if not entrypoint or not args or entrypoint[0] in MAPPED_BINARIES:
        return mapper.command([*entrypoint, *args], env), []
    local = [mapper.path(_expand(word, env)) for word in entrypoint]
    if shutil.which(local[0]) is None:
        return mapper.command(args, env), entrypoint
    return [*local, *mapper.command(args, env)], []


def _probe(probe: dict[str, Any] | None, mapper: _Mapper, env: dict[str, str]) -> ProbeSpec | None:
    if not probe:
        return None
    timing = {
        "period_s": float(probe.get("periodSeconds", 10)),
        "timeout_s": float(probe.get("timeoutSeconds", 1)),
        "failure_threshold": int(probe.get("failureThreshold", 3)),
        "success_threshold": int(probe.get("successThreshold", 1)),
        "initial_delay_s": float(probe.get("initialDelaySeconds", 0)),
    }
    if "httpGet" in probe:
        get = probe["httpGet"]
        url = f"http://{triton_server.LOOPBACK}:{mapper.port(get['port'])}{get.get('path', '/')}"
        return ProbeSpec("http", url=url, **timing)  # type: ignore[arg-type]
    if "exec" in probe:
        command = tuple(mapper.command(list(probe["exec"]["command"]), env))
        return ProbeSpec("exec", command=command, **timing)  # type: ignore[arg-type]
    raise errors.InputError(f"probe {sorted(probe)}: only httpGet and exec probes run locally")


def _pre_stop(container: dict[str, Any]) -> list[str]:
    return list(((container.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command", []))


def _init(
    container: dict[str, Any], volumes: dict[str, Path], mapper: _Mapper, env: dict[str, str]
) -> InitSpec:
    words = [*container.get("command", []), *container.get("args", [])]
    init_mounts, _ = _mounts(container, volumes)
    init_mapper = _Mapper(init_mounts, mapper.ports, mapper.offset, mapper.backends)
    command = init_mapper.command(words, env)
    if not command or shutil.which(command[0]) is None:
        return InitSpec(
            container["name"],
            tuple(command),
            False,
            f"{command[0] if command else '(none)'} is not installed here",
        )
    return InitSpec(container["name"], tuple(command), True)


def _expand(word: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command and args; unknown references stay as written."""
    return VARIABLE.sub(lambda match: env.get(match.group(1), match.group(0)), word)


def _shared_volume_folders(
    item: render.Rendering, pod: dict[str, Any], work_dir: Path, repository: Path
) -> dict[str, Path]:
    """Volumes every replica shares: the model repository, ConfigMaps and Secrets."""
    folders: dict[str, Path] = {}
    for volume in pod.get("volumes", []):
        name = volume["name"]
        if "persistentVolumeClaim" in volume:
            folders[name] = repository
        elif "configMap" in volume:
            folders[name] = _write_config_map(item, volume["configMap"]["name"], work_dir / "volumes" / name)
        elif "secret" in volume:
            folders[name] = _write_secret(item, volume["secret"], work_dir / "volumes" / name)
    return folders


def _replica_volume_folders(pod: dict[str, Any], replica_dir: Path) -> dict[str, Path]:
    folders: dict[str, Path] = {}
    for volume in pod.get("volumes", []):
        empty_dir = volume.get("emptyDir")
        if empty_dir is None:
            continue
        if empty_dir.get("medium") == "Memory":
            folders[volume["name"]] = Path("/dev/shm")  # the host's own memory-backed shm
        else:
            folders[volume["name"]] = replica_dir / "volumes" / volume["name"]
            folders[volume["name"]].mkdir(parents=True, exist_ok=True)
    return folders


def _mounts(container: dict[str, Any], volumes: dict[str, Path]) -> tuple[dict[str, Path], list[str]]:
    mounts, skipped = {}, []
    for mount in container.get("volumeMounts", []):
        local = volumes.get(mount["name"])
        if local is None:
            skipped.append(f"{mount['name']} at {mount['mountPath']}")
            continue
        mounts[mount["mountPath"]] = local / mount["subPath"] if mount.get("subPath") else local
    return mounts, skipped


def _write_config_map(item: render.Rendering, name: str, folder: Path) -> Path:
    config_map = next((m.body for m in item.of_kind("ConfigMap") if m.name == name), None)
    if config_map is None:
        raise errors.InputError(
            f"ConfigMap {name!r} is mounted but not rendered; it must come from the chart"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in (config_map.get("data") or {}).items():
        (folder / key).write_text(value, encoding="utf-8")
    return folder


def _write_secret(item: render.Rendering, volume: dict[str, Any], folder: Path) -> Path:
    """The rendered Secret's items; an existing Secret (not rendered) gets a fresh local key."""
    folder.mkdir(parents=True, exist_ok=True)
    secret = next((m.body for m in item.of_kind("Secret") if m.name == volume["secretName"]), None)
    for entry in volume.get("items") or [{"key": k, "path": k} for k in (secret or {}).get("data", {})]:
        target = folder / entry["path"]
        if target.exists():
            continue  # keep the key across `up` runs so clients holding it keep working
        if secret is not None and entry["key"] in secret.get("data", {}):
            target.write_bytes(base64.b64decode(secret["data"][entry["key"]]))
        else:
            target.write_text(secrets.token_urlsafe(30), encoding="utf-8")
        target.chmod(0o400)
    return folder
