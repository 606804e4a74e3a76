"""The supervisor: a background process that runs the replicas and drives their probes the way
the kubelet does, restarts what fails (restartPolicy: Always) and records every replica's state in
`state.json` for `up`, `status` and `down`.

    python -m tritonops.runtime.supervisor WORK_DIR

SIGTERM (what `down` sends) stops every replica gracefully: preStop hook, SIGTERM, the rendered
grace period, then SIGKILL of the replica's whole process group.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonops.runtime import probes, replica_logs, workspace
from tritonops.runtime.podspec import ReplicaPlan, SidecarPlan
from tritonops.triton import server as triton_server

log = logging.getLogger("tritonops.supervisor")

TICK_S = 0.05
# A replica that exits or fails its startup probe this many times in a row is Failed, not retried.
MAX_START_FAILURES = 3
# CrashLoopBackOff, shortened for a workstation: 1 s doubling to 30 s (the kubelet uses 10 s to 5 min).
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0


class State:
    STARTING = "Starting"
    READY = "Ready"
    NOT_READY = "NotReady"
    RESTARTING = "Restarting"
    FAILED = "Failed"
    STOPPED = "Stopped"


@dataclass
class Replica:
    """One replica: its process, its probe trackers and what the kubelet would say about it."""

    plan: ReplicaPlan
    env: dict[str, str]
    state: str = State.STARTING
    reason: str = "not started"
    restarts: int = 0
    start_failures: int = 0
    process: subprocess.Popen[bytes] | None = None
    started: bool = False
    ready: bool = False
    backoff_until: float = 0.0
    init_done: bool = False
    last_restart: str = ""
    # The log line that says why the last start ended (kept out of `reason`, so it is shown once).
    log_line: str = ""

    def __post_init__(self) -> None:
        self.log_path = Path(self.plan.work_dir) / "triton.log"
        self.trackers: dict[str, probes.ProbeTracker] = {}
        self.in_flight: dict[str, concurrent.futures.Future[probes.ProbeResult]] = {}

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if not self.init_done and not self._run_init_containers():
            return
        log.info("replica %d: starting %s", self.plan.index, " ".join(self.plan.command))
        self.log_line = ""
        self.process = _spawn(self.plan.command, self.log_path, self.env, self.plan.work_dir)
        now = time.monotonic()
        self.trackers = {
            name: probes.ProbeTracker(spec, started_at=now)
            for name, spec in (
                ("startup", self.plan.startup),
                ("liveness", self.plan.liveness),
                ("readiness", self.plan.readiness),
            )
            if spec is not None
        }
        self.in_flight = {}
        self.started = self.plan.startup is None
        self.ready = False
        self._set(State.STARTING, "waiting for the startup probe" if self.plan.startup else "started")

    def _run_init_containers(self) -> bool:
        for init in self.plan.init:
            if not init.runnable:
                log.warning(
                    "replica %d: init container %s skipped: %s", self.plan.index, init.name, init.reason
                )
                continue
            with (Path(self.plan.work_dir) / f"init-{init.name}.log").open("wb") as sink:
                code = subprocess.run(
                    list(init.command), stdout=sink, stderr=subprocess.STDOUT, env=self.env, check=False
                ).returncode
            if code != 0:
                self._set(
                    State.FAILED,
                    f"init container {init.name} exited with code {code} (see init-{init.name}.log)",
                )
                return False
        self.init_done = True
        return True

    def stop(self, reason: str) -> None:
        """preStop hook, SIGTERM, the grace period, then SIGKILL of the process group."""
        process = self.process
        if process is None:
            return
        deadline = time.monotonic() + self.plan.grace_s
        if process.poll() is None and self.plan.pre_stop:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                subprocess.run(list(self.plan.pre_stop), timeout=self.plan.grace_s, env=self.env, check=False)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        self.process = None
        log.info("replica %d: stopped (%s)", self.plan.index, reason)

    # -- the kubelet loop ------------------------------------------------------------------------
    def tick(self, now: float, pool: concurrent.futures.Executor) -> None:
        if self.state == State.FAILED:
            return
        if self.process is None:
            if now >= self.backoff_until:
                self.start()
            return
        code = self.process.poll()
        if code is not None:
            self._exited(code, now)
            return
        self._collect(now)
        for name, tracker in self.trackers.items():
            active = name == "startup" if not self.started else name != "startup"
            if active and name not in self.in_flight and tracker.due(now):
                self.in_flight[name] = pool.submit(probes.run_probe, tracker.spec, self.env)

    def _collect(self, now: float) -> None:
        for name, future in list(self.in_flight.items()):
            if not future.done():
                continue
            del self.in_flight[name]
            tracker = self.trackers[name]
            tracker.record(future.result(), now)
            self._apply(name, tracker, now)
            if self.process is None:
                return

    def _apply(self, name: str, tracker: probes.ProbeTracker, now: float) -> None:
        detail = tracker.last.detail if tracker.last else ""
        if name == "startup":
            if tracker.succeeded:
                self.started = True
                self._set(State.STARTING, "started; waiting for readiness")
            elif tracker.failed:
                self._restart(
                    f"startup probe failed {tracker.failures} times: {detail}", now, start_failure=True
                )
        elif name == "liveness" and tracker.failed:
            self._restart(
                f"liveness probe failed {tracker.failures} times: {detail}", now, start_failure=False
            )
        elif name == "readiness":
            if tracker.succeeded and not self.ready:
                self.ready, self.start_failures = True, 0
                self._set(State.READY, "all readiness checks pass")
            elif tracker.failed and (self.ready or self.state != State.NOT_READY):
                self.ready = False
                self._set(State.NOT_READY, f"readiness probe failing: {detail}")

    def _exited(self, code: int, now: float) -> None:
        self.process = None
        self.log_line = self._why_it_exited()
        self._restart(
            f"exited with code {code}",
            now,
            start_failure=not self.ready,
            already_stopped=True,
        )

    def _restart(
        self, reason: str, now: float, *, start_failure: bool, already_stopped: bool = False
    ) -> None:
        if not already_stopped:
            self.stop(reason)
        self.ready = False
        if start_failure:
            self.start_failures += 1
        if self.start_failures >= MAX_START_FAILURES:
            self._set(State.FAILED, f"{reason}, {self.start_failures} failed starts in a row")
            return
        self.restarts += 1
        self.last_restart = reason
        delay = min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** max(0, self.start_failures - 1))
        self.backoff_until = now + delay
        self._set(State.RESTARTING, f"{reason}; restarting in {delay:g} s")

    def _set(self, state: str, reason: str) -> None:
        if (state, reason) != (self.state, self.reason):
            log.info("replica %d: %s (%s)", self.plan.index, state, reason)
        self.state, self.reason = state, reason

    def _why_it_exited(self) -> str:
        """The log line that says why (not Triton's option table), else the log's last line."""
        why = replica_logs.first_error_line(self.log_path)
        if why:
            return why
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return f"last log line: {lines[-1][-300:]}" if lines else "(empty log)"

    def snapshot(self) -> dict[str, Any]:
        return {
            "index": self.plan.index,
            "state": self.state,
            "reason": self.reason,
            "restarts": self.restarts,
            "last_restart": self.last_restart,
            "pid": self.process.pid if self.process else None,
            "ports": self.plan.ports,
            "log": str(self.log_path),
            "log_line": self.log_line,
        }


# A sidecar that ran this long before it ended starts its back-off from the beginning again.
SIDECAR_STABLE_S = 60.0


@dataclass
class Sidecar:
    """Another container of the pod (the agent) beside one replica's Triton: started with it,
    restarted on exit or failed liveness with a back-off (never Failed: the kubelet keeps trying),
    independent of Triton's own restarts, stopped by `down`."""

    plan: SidecarPlan
    env: dict[str, str]
    replica_dir: Path
    state: str = State.STARTING
    reason: str = "not started"
    restarts: int = 0
    failures: int = 0
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff_until: float = 0.0

    def __post_init__(self) -> None:
        self.log_path = self.replica_dir / f"{self.plan.name}.log"
        self.tracker: probes.ProbeTracker | None = None
        self.in_flight: concurrent.futures.Future[probes.ProbeResult] | None = None

    def start(self, now: float) -> None:
        self.process = _spawn(self.plan.command, self.log_path, self.env, self.replica_dir)
        self.started_at = now
        self.tracker = probes.ProbeTracker(self.plan.liveness, started_at=now) if self.plan.liveness else None
        self.in_flight = None
        self._set(State.READY, "running")

    def tick(self, now: float, pool: concurrent.futures.Executor) -> None:
        if self.state == State.STOPPED:
            return
        if self.process is None:
            if now >= self.backoff_until:
                self.start(now)
            return
        code = self.process.poll()
        if code is not None:
            self.process = None
            self._restart(f"exited with code {code}", now)
            return
        if self.in_flight is not None and self.in_flight.done() and self.tracker is not None:
            self.tracker.record(self.in_flight.result(), now)
            self.in_flight = None
            if self.tracker.failed:
                detail = self.tracker.last.detail if self.tracker.last else ""
                self._restart(f"liveness probe failed {self.tracker.failures} times: {detail}", now)
                return
        if self.tracker is not None and self.in_flight is None and self.tracker.due(now):
            self.in_flight = pool.submit(probes.run_probe, self.tracker.spec, self.env)

    def _restart(self, reason: str, now: float) -> None:
        self.stop(reason)
        self.failures = 1 if now - self.started_at >= SIDECAR_STABLE_S else self.failures + 1
        self.restarts += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** (self.failures - 1))
        self.backoff_until = now + delay
        self._set(State.RESTARTING, f"{reason}; restarting in {delay:g} s")

    def stop(self, reason: str) -> None:
        """SIGTERM, its grace period, then SIGKILL of its process group."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=self.plan.grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        self.process = None
        log.info("%s: %s stopped (%s)", self.replica_dir.name, self.plan.name, reason)

    def _set(self, state: str, reason: str) -> None:
        if (state, reason) != (self.state, self.reason):
            log.info("replica %s: %s %s (%s)", self.replica_dir.name, self.plan.name, state, reason)
        self.state, self.reason = state, reason

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.plan.name,
            "state": self.state,
            "reason": self.reason,
            "restarts": self.restarts,
            "pid": self.process.pid if self.process else None,
            "ports": self.plan.ports,
            "log": str(self.log_path),
        }


def _spawn(
    command: Sequence[str], log_path: Path, env: dict[str, str], cwd: str | Path
) -> subprocess.Popen[bytes]:
    """Start one container's process in its own session, appending to its log after a start marker
    (replica_logs finds the last start by it)."""
    with log_path.open("ab") as sink:
        sink.write(f"{replica_logs.START_MARKER} {time.strftime('%Y-%m-%dT%H:%M:%S')} ---\n".encode())
        sink.flush()
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


def run(work_dir: Path) -> int:
    """Run the replicas until SIGTERM/SIGINT, then stop them all and record that."""
    space = workspace.Workspace(work_dir)
    recorded = json.loads(space.plan_file.read_text())
    plans = [ReplicaPlan.from_dict(data) for data in recorded["replicas"]]
    # The process env: this environment, the search paths `up` recorded, then the pod spec's env.
    base_env = triton_server.environment(additions=recorded.get("search_path_prepend", {}))
    replicas = [Replica(plan, {**base_env, **plan.env}) for plan in plans]
    sidecars = {
        replica.plan.index: [
            Sidecar(sidecar, {**base_env, **sidecar.env}, Path(replica.plan.work_dir))
            for sidecar in replica.plan.sidecars
        ]
        for replica in replicas
    }
    every_sidecar = [sidecar for group in sidecars.values() for sidecar in group]
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    last_written: list[dict[str, Any]] = []
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=max(4, 3 * len(replicas) + len(every_sidecar))
    ) as pool:
        while not stopping.is_set():
            now = time.monotonic()
            for replica in replicas:
                replica.tick(now, pool)
            for sidecar in every_sidecar:
                sidecar.tick(now, pool)
            snapshot = [_snapshot(replica, sidecars[replica.plan.index]) for replica in replicas]
            if snapshot != last_written:
                space.write_state(os.getpid(), snapshot)
                last_written = snapshot
            stopping.wait(TICK_S)
        log.info("stopping %d replica(s)", len(replicas))
        stoppers = [threading.Thread(target=r.stop, args=("tritonops down",)) for r in replicas] + [
            threading.Thread(target=s.stop, args=("tritonops down",)) for s in every_sidecar
        ]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
    for replica in replicas:
        replica._set(State.STOPPED, "stopped by tritonops down")
    for sidecar in every_sidecar:
        sidecar._set(State.STOPPED, "stopped by tritonops down")
    final = [_snapshot(replica, sidecars[replica.plan.index]) for replica in replicas]
    space.write_state(os.getpid(), final, running=False)
    return 0


def _snapshot(replica: Replica, sidecars: list[Sidecar]) -> dict[str, Any]:
    """A replica's state, with its sidecars' under `containers` (absent when it has none)."""
    snapshot = replica.snapshot()
    if sidecars:
        snapshot["containers"] = [sidecar.snapshot() for sidecar in sidecars]
    return snapshot


def main(argv: list[str]) -> int:
    work_dir = Path(argv[0])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return run(work_dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
