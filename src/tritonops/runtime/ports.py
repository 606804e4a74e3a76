"""The ports a local runtime will listen on, checked before anything starts.

Every replica binds its rendered ports + the port offset + 10*i on loopback. A port outside
1024-65535 wraps around or needs root; a port another process holds makes Triton exit, and worse,
the probes of the new replica then reach whoever holds it (another runtime's Triton answers them,
and the replica looks Ready). So `up` refuses before starting, naming the port, the replica, and
the runtime that holds it when it is one of ours.
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
from dataclasses import dataclass
from pathlib import Path

from tritonops import errors
from tritonops.triton import server as triton_server

LOWEST, HIGHEST = 1024, 65535
SUPERVISOR_MODULE = "tritonops.runtime.supervisor"
OFFSET_HINT = "pick other ports with --port-offset N (env TRITONOPS_PORT_OFFSET)"


@dataclass(frozen=True)
class Busy:
    """A port some process holds, and the work folder of our runtime holding it (if it is ours)."""

    port: int
    replica: int
    name: str
    holder: Path | None = None


def _describe(busy: list[Busy]) -> str:
    """`replica 0's ports 8400 (http), 8401 (grpc) are in use by the tritonops runtime in DIR; ...`"""
    groups: dict[tuple[int, Path | None], list[Busy]] = {}
    for item in busy:
        groups.setdefault((item.replica, item.holder), []).append(item)
    parts = []
    for (replica, holder), items in groups.items():
        listed = ", ".join(f"{item.port} ({item.name})" for item in items)
        noun, verb = ("port", "is") if len(items) == 1 else ("ports", "are")
        who = f" by the tritonops runtime in {holder}" if holder else " by another process"
        parts.append(f"replica {replica}'s {noun} {listed} {verb} in use{who}")
    return "; ".join(parts)


def check(ports: list[dict[str, int]], port_offset: int) -> None:
    """InputError unless every replica's ports are in 1024-65535 and free on loopback now."""
    outside = [
        f"replica {index}'s {name} port {port}"
        for index, named in enumerate(ports)
        for name, port in named.items()
        if not LOWEST <= port <= HIGHEST
    ]
    if outside:
        every = [port for named in ports for port in named.values()]
        low = port_offset + LOWEST - min(every)
        high = port_offset + HIGHEST - max(every)
        allowed = f"between {low} and {high}" if low <= high else "that fits"
        raise errors.InputError(
            f"--port-offset {port_offset}: {', '.join(outside)} outside {LOWEST}-{HIGHEST} (ports "
            f"below {LOWEST} need root, above {HIGHEST} do not exist); use an offset {allowed}"
        )
    busy = [
        Busy(port, index, name)
        for index, named in enumerate(ports)
        for name, port in named.items()
        if in_use(port)
    ]
    if busy:
        holders = _our_runtimes()
        busy = [Busy(b.port, b.replica, b.name, holders.get(b.port)) for b in busy]
        stop = sorted({str(b.holder) for b in busy if b.holder})
        hint = "; ".join(f"stop it with `tritonops down --work-dir {folder}`" for folder in stop)
        raise errors.InputError(f"{_describe(busy)}: {hint + ', or ' if hint else ''}{OFFSET_HINT}")


def in_use(port: int, host: str = triton_server.LOOPBACK) -> bool:
    """Whether binding `host:port` fails because something holds it (a listener, not TIME_WAIT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return error.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def _our_runtimes() -> dict[int, Path]:
    """{port: work folder} for every running tritonops supervisor on this machine (read from
    /proc and each one's state.json; a few hundred small reads)."""
    held: dict[int, Path] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            words = (entry / "cmdline").read_bytes().split(b"\0")
            if SUPERVISOR_MODULE.encode() not in words:
                continue
            folder = Path(words[words.index(SUPERVISOR_MODULE.encode()) + 1].decode())
            with contextlib.suppress(ValueError, KeyError, TypeError):
                state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
                for replica in state["replicas"]:
                    for process in [replica, *replica.get("containers", ())]:
                        for port in process["ports"].values():
                            held[int(port)] = folder
    return held
