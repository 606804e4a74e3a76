"""The agent on real Triton: the local runtime runs it beside each replica as the chart does, and it
converges that replica to the committed state on its own: a new committed version is loaded and
the old one narrowed away; nothing happens while a live promotion lock exists; a stale lock is
treated as absent and reported; a widened pin whose lock it cannot see keeps serving for the
grace before it is narrowed, and a load it makes meanwhile keeps it; a version that fails to load is counted and backed off while the
served version keeps serving; a failed candidate the promotion tool loaded is counted once; a
Triton that lost (or never had) a committed model gets it back. Its metrics page is read with the
project's Prometheus text parser. A config committed for the version it serves (a config promotion
that did not reach it) is loaded once, and left alone after. A stalled repository never blocks it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests import committing
from tests.conftest import ROOT
from tests.runtime.conftest import FAST_PROBES, free_port_offset
from tritonops import errors
from tritonops.repository import example_repository
from tritonops.runtime import control
from tritonops.triton import client as triton_client
from tritonops.triton import server as triton_server

AGENT = ROOT / "charts" / "triton" / "files" / "agent.py"
INTERVAL_S = 0.5
# Fast syncs, a back-off that doubles from 2 x 0.5 s to at most 4 s, a lock from another host
# stale after 30 s without a heartbeat (the schema's minimum), and narrowing at once (a local
# folder shows a new lock at once; the grace has its own test) (a values file: `--set` reads 0.5
# as a string, as Helm's does).
AGENT_VALUES = {
    "agent": {
        "intervalSeconds": INTERVAL_S,
        "readTimeoutSeconds": 1,
        "backoffMaxSeconds": 4,
        "lockStaleSeconds": 30,
        "narrowAfterSeconds": 0,
    }
}
LOCK_STALE_S = AGENT_VALUES["agent"]["lockStaleSeconds"]
BATCH = np.ones((1, 4), dtype=np.float32)


def syncs(metrics_url: str, count: int) -> None:
    """Wait until the agent behind `metrics_url` has finished `count` more syncs."""

    def last_sync() -> float:
        samples = triton_client.scrape_metrics(metrics_url)
        return samples[("tritonops_agent_last_sync_timestamp_seconds", ())]

    seen: list[float] = [last_sync()]

    def advanced() -> bool:
        now = last_sync()
        if now != seen[-1]:
            seen.append(now)
        return len(seen) > count

    eventually(advanced, 30, f"{count} agent syncs")


def eventually(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout_s} s (last: {last!r})")


class Replica:
    """One replica of the runtime seen from a test: its Triton, its agent, their files."""

    def __init__(self, current: control.RuntimeStatus, repository: Path) -> None:
        self.current = current
        self.repository = repository
        replica = current.replicas[0]
        self.agent = replica.sidecar("agent")
        self.metrics_url = self.agent.url("agent-metrics") + "/metrics"
        self.address = replica.url.removeprefix("http://")

    def client(self) -> triton_client.Client:
        return triton_client.Client(
            self.address, api_header=self.current.api_header, api_key=self.current.api_key()
        )

    def metrics(self) -> triton_client.Samples:
        return triton_client.scrape_metrics(self.metrics_url)

    def metric(self, name: str, **labels: str) -> float:
        return triton_client.metric_total(self.metrics(), name, **labels)

    def served(self, model: str = "linear") -> set[int]:
        with self.client() as client:
            return {
                int(entry["version"])
                for entry in client.repository_index()
                if entry.get("name") == model and entry.get("state") == "READY"
            }

    def log(self) -> str:
        return Path(self.agent.log).read_text(encoding="utf-8", errors="replace")

    def syncs(self, count: int) -> None:
        """Wait until the agent has finished `count` more syncs."""
        syncs(self.metrics_url, count)

    def settle(self, version: int = 1) -> None:
        """The state each test starts from: `version` committed and alone served, no lock."""
        committing.remove_lock(self.repository)
        committing.commit(self.repository, "linear", version)
        eventually(lambda: self.served() == {version}, 60, f"linear {version} alone served")
        eventually(
            lambda: (
                self.metric("tritonops_model_drift", model="linear") == 0
                and self.metric("tritonops_committed_version", model="linear") == version
            ),
            30,
            "no drift",
        )


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    root = tmp_path_factory.mktemp("agent")
    repository = root / "models"
    shutil.copytree(example_repository.DEFAULT_OUTPUT, repository)
    work_dir = root / "work"
    values = root / "agent-values.yaml"
    values.write_text(yaml.safe_dump(AGENT_VALUES), encoding="utf-8")
    current = control.up(
        "local",
        work_dir=work_dir,
        replicas=1,
        repository=repository,
        port_offset=free_port_offset(1),
        set_values=FAST_PROBES,
        extra_files=(values,),
    )
    try:
        assert current.all_ready, control.describe(current)
        yield Replica(current, repository)
    finally:
        control.down(work_dir)


def test_the_runtime_runs_the_agent_beside_the_replica_and_status_lists_it(replica):
    (entry,) = control.describe(control.status(replica.current.work_dir))[0]["containers"]
    assert entry["name"] == "agent" and entry["state"] == "Ready" and entry["pid"]
    assert entry["ports"] == {"agent-metrics": replica.current.replicas[0].ports["http"] + 3}
    with urllib.request.urlopen(replica.agent.url("agent-metrics") + "/healthz", timeout=5) as answer:
        assert answer.status == 200
    # The metrics page of the committed sample repository: linear 1, served, no drift.
    eventually(lambda: replica.metric("tritonops_committed_version", model="linear") == 1, 30, "committed 1")
    samples = replica.metrics()
    assert samples[("tritonops_model_version_ready", (("model", "linear"), ("version", "1")))] == 1
    assert samples[("tritonops_model_drift", (("model", "linear"),))] == 0
    assert samples[("tritonops_promotion_in_progress", ())] == 0
    assert samples[("tritonops_readiness_fallback", ())] == 0


def test_a_new_committed_version_is_loaded_and_the_old_one_narrowed_away(replica):
    replica.settle(1)
    committing.add_version(replica.repository, "linear", 2)
    committing.commit(replica.repository, "linear", 2)
    eventually(lambda: replica.served() == {2}, 60, "linear 2 alone served")
    with replica.client() as client:
        assert client.infer("linear", {"input": BATCH}, version=2)["output"].shape == (1, 2)
        assert not client.model_ready("linear", 1)
    eventually(lambda: replica.metric("tritonops_model_drift", model="linear") == 0, 30, "no drift")
    assert replica.metric("tritonops_committed_version", model="linear") == 2
    assert replica.metric("tritonops_model_served_version", model="linear") == 2
    assert replica.metric("tritonops_agent_loads_total", model="linear", outcome="ok") >= 1
    # One load did both, with the committed config as its override.
    assert "linear: load version(s) 2 and narrow away 1: pin [2], with the committed config" in replica.log()


def test_a_live_lock_keeps_the_agent_watching_and_a_stale_one_does_not(replica):
    replica.settle(2)
    loads = replica.metric("tritonops_agent_loads_total", model="linear")
    committing.write_lock(replica.repository)  # held by this test process: live
    committing.commit(replica.repository, "linear", 1)
    eventually(
        lambda: (
            replica.metric("tritonops_promotion_in_progress") == 1
            and replica.metric("tritonops_model_drift", model="linear") == 1
        ),
        30,
        "a promotion in progress, and drift",
    )
    replica.syncs(4)
    assert replica.served() == {2}, "the agent acted while a promotion held the lock"
    assert replica.metric("tritonops_agent_loads_total", model="linear") == loads
    # The holder stops heartbeating (another host, so only the heartbeat can tell): stale once the
    # agent has seen it unchanged for agent.lockStaleSeconds (30 s here) on its own clock (its
    # stamp is never trusted).
    committing.write_lock(replica.repository, heartbeat_age_s=120, host="promoter-elsewhere", pid=1)
    replica.syncs(2)
    assert replica.metric("tritonops_promotion_in_progress") == 1, "judged stale by a stamp alone"
    eventually(lambda: replica.served() == {1}, LOCK_STALE_S + 30, "linear 1 served once the lock is stale")
    samples = replica.metrics()
    assert samples[("tritonops_promotion_lock_stale", ())] == 1
    assert samples[("tritonops_promotion_in_progress", ())] == 0
    assert "stale promotion lock" in replica.log() and "tritonops unlock --repository" in replica.log()
    committing.remove_lock(replica.repository)
    eventually(lambda: replica.metric("tritonops_promotion_lock_stale") == 0, 30, "no stale lock")


def test_a_lock_whose_holder_died_on_this_host_is_stale_at_once(replica):
    replica.settle(1)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    committing.write_lock(replica.repository, pid=int(dead.stdout))  # fresh heartbeat, pid gone
    eventually(lambda: replica.metric("tritonops_promotion_lock_stale") == 1, 30, "a stale lock")
    assert replica.metric("tritonops_promotion_in_progress") == 0
    committing.remove_lock(replica.repository)


def test_a_failing_committed_version_backs_off_and_the_served_version_keeps_serving(replica):
    replica.settle(1)
    committing.add_version(replica.repository, "linear", 3, broken=True)
    committing.commit(replica.repository, "linear", 3)
    delays = eventually(
        lambda: (
            [
                int(d)
                for d in re.findall(r"linear: load failed after .*?; next try in (\d+) s", replica.log())
            ][:4]
            if len(re.findall(r"next try in", replica.log())) >= 4
            else None
        ),
        60,
        "four failed loads",
    )
    # Doubling from 2 x the interval up to agent.backoffMaxSeconds: a broken version is not hammered.
    assert delays == [1, 2, 4, 4], delays
    failures = replica.metric("tritonops_model_load_failures_total", model="linear", version="3")
    assert failures >= 4
    assert replica.metric("tritonops_agent_loads_total", model="linear", outcome="failed") >= 4
    assert replica.metric("tritonops_model_drift", model="linear") == 1
    assert replica.served() == {1}
    with replica.client() as client:
        assert client.infer("linear", {"input": BATCH})["output"].shape == (1, 2)
    # The record goes back to version 1: nothing left to do, drift gone, failures stay counted.
    replica.settle(1)
    assert replica.metric("tritonops_model_load_failures_total", model="linear", version="3") >= failures


def test_a_failed_candidate_loaded_by_the_promotion_tool_is_counted_once(replica):
    replica.settle(1)
    loads = replica.metric("tritonops_agent_loads_total", model="linear")
    committing.write_lock(replica.repository)
    committing.add_version(replica.repository, "linear", 4, broken=True)
    config = committing.config_json((replica.repository / "linear" / "config.pbtxt").read_bytes())
    with replica.client() as client:
        # What the promotion tool does: widen the pin to committed + candidate; the candidate fails.
        widened = {**config, "version_policy": {"specific": {"versions": [1, 4]}}}
        with pytest.raises(errors.TritonOpsError):
            client.load("linear", config=widened)
        eventually(
            lambda: replica.metric("tritonops_model_load_failures_total", model="linear", version="4") == 1,
            30,
            "the failed candidate counted",
        )
        # Its rollback narrows back to the committed pin; Triton keeps the failure in its index.
        client.load("linear", config=config)
    replica.syncs(4)
    assert replica.metric("tritonops_model_load_failures_total", model="linear", version="4") == 1
    assert replica.metric("tritonops_agent_loads_total", model="linear") == loads
    assert "saw a failed load of linear version 4" in replica.log()
    committing.remove_lock(replica.repository)


def test_a_committed_model_unloaded_by_hand_is_loaded_again(replica):
    replica.settle(1)
    with replica.client() as client:
        client.unload("linear")
    eventually(lambda: replica.served() == {1}, 60, "linear 1 served again")


def test_a_config_committed_for_the_served_version_reaches_a_replica_the_promotion_missed(replica):
    replica.settle(1)
    path = replica.repository / "linear" / "config.pbtxt"
    settled = path.read_text(encoding="utf-8")

    def served() -> tuple[int, int]:
        with replica.client() as client:
            config = client.model_config("linear")
        return config.max_batch_size, config.dynamic_batching.max_queue_delay_microseconds

    assert served() == (8, 100)
    loads = replica.metric("tritonops_agent_loads_total", model="linear", outcome="ok")
    # What `tritonops promote linear --config` commits, without loading it on this replica.
    changed = settled.replace("max_batch_size: 8", "max_batch_size: 4").replace(
        "max_queue_delay_microseconds: 100", "max_queue_delay_microseconds: 500"
    )
    committing.write_atomically(path, changed.encode())
    committing.commit(replica.repository, "linear", 1)
    try:
        eventually(lambda: served() == (4, 500), 60, "the committed config served")
        eventually(lambda: replica.metric("tritonops_model_drift", model="linear") == 0, 30, "no drift")
        assert (
            "linear: serves its committed versions [1] with a config that differs from the committed one "
            "in dynamic_batching, max_batch_size"
        ) in replica.log()
        # Triton's answer after the load compares equal: the next syncs leave it alone.
        replica.syncs(6)
        assert replica.metric("tritonops_agent_loads_total", model="linear", outcome="ok") == loads + 1
        assert replica.log().count("load the committed config (the served one differs in") == 1
    finally:
        committing.write_atomically(path, settled.encode())
        committing.commit(replica.repository, "linear", 1)
        eventually(lambda: served() == (8, 100), 60, "the sample's config served again")


@pytest.fixture
def agent_process(tmp_path):
    """Run agent.py as a bare process (as the container does) and always stop it."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> tuple[str, Path, int]:
        (port,) = triton_server.free_ports(1)
        log = tmp_path / f"agent-{len(started)}.log"
        with log.open("wb") as sink:
            started.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(AGENT),
                        "--metrics-address=127.0.0.1",
                        f"--metrics-port={port}",
                        *args,
                    ],
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        url = f"http://127.0.0.1:{port}"
        eventually(lambda: _answers(url + "/healthz"), 20, "the agent's health endpoint")
        return url, log, started[-1].pid

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_a_triton_started_with_only_its_startup_models_gets_the_committed_ones(tmp_path, agent_process):
    repository = tmp_path / "models"
    shutil.copytree(example_repository.DEFAULT_OUTPUT, repository)
    committing.commit(repository, "mlp", 1)  # committed, but not among this Triton's startup models
    with triton_server.start(repository, log_path=tmp_path / "triton.log", load_models=["linear"]) as server:
        url, _, _ = agent_process(
            f"--repository={repository}",
            f"--committed-state={repository / 'current.json'}",
            f"--port={server.http_port}",
            f"--interval={INTERVAL_S}",
        )
        with triton_client.Client(server.url.removeprefix("http://")) as client:
            eventually(lambda: client.model_ready("mlp", 1), 60, "mlp 1 loaded by the agent")
            assert client.model_ready("linear", 1)

        def converged() -> triton_client.Samples | None:
            samples = triton_client.scrape_metrics(url + "/metrics")
            return samples if samples.get(("tritonops_model_drift", (("model", "mlp"),))) == 0 else None

        samples = eventually(converged, 30, "no drift for mlp")
        assert samples[("tritonops_committed_version", (("model", "mlp"),))] == 1
        assert samples[("tritonops_agent_loads_total", (("model", "mlp"), ("outcome", "ok")))] == 1


GRACE_S = 4


def test_a_widened_pin_without_a_visible_lock_serves_for_the_grace_then_is_narrowed(tmp_path, agent_process):
    repository = tmp_path / "models"
    shutil.copytree(example_repository.DEFAULT_OUTPUT, repository)
    committing.add_version(repository, "linear", 2)
    committing.commit(repository, "linear", 1)
    config = committing.config_json((repository / "linear" / "config.pbtxt").read_bytes())
    with triton_server.start(repository, log_path=tmp_path / "triton.log", load_models=["linear"]) as server:
        url, log, _ = agent_process(
            f"--repository={repository}",
            f"--committed-state={repository / 'current.json'}",
            f"--port={server.http_port}",
            f"--interval={INTERVAL_S}",
            f"--narrow-after={GRACE_S}",
        )
        grace = (
            f"linear: serves 2 which is not committed; narrowing it away in {GRACE_S} s unless a "
            "promotion lock appears"
        )
        with triton_client.Client(server.url.removeprefix("http://")) as client:

            def served() -> set[int]:
                return {
                    int(entry["version"])
                    for entry in client.repository_index()
                    if entry.get("name") == "linear" and entry.get("state") == "READY"
                }

            def drift() -> float:
                samples = triton_client.scrape_metrics(url + "/metrics")
                return samples[("tritonops_model_drift", (("model", "linear"),))]

            eventually(lambda: served() == {1} and drift() == 0, 30, "linear 1 served, no drift")
            # A promotion's widened pin whose lock this pod cannot see (NFS caching "no such file"):
            # no lock at all.
            client.load("linear", config={**config, "version_policy": {"specific": {"versions": [1, 2]}}})
            eventually(lambda: grace in log.read_text(), 20, "the grace logged")
            syncs(url + "/metrics", 2)
            assert served() == {1, 2}, "narrowed within its grace"
            assert drift() == 1, "drift is real meanwhile"
            eventually(lambda: served() == {1}, 30, "version 2 narrowed away after its grace")
            assert "linear: narrow away 2: pin [1], with the committed config as override" in log.read_text()
            # Only the candidate served (version 1 missing): 1 loads at once, and the load keeps 2
            # (a pin sent as protobuf JSON, int64 as strings) until its grace ends.
            client.load("linear", config={**config, "version_policy": {"specific": {"versions": [2]}}})
            eventually(lambda: served() == {1, 2}, 30, "version 1 loaded again, 2 kept")
            assert (
                "linear: load version(s) 1: pin [1, 2], with the committed config as override, "
                "keeping 2 (not committed, within its grace)"
            ) in log.read_text()
            eventually(lambda: served() == {1}, 30, "version 2 narrowed away after its grace")
            assert log.read_text().count(grace) == 2, "each grace logged once"


def test_a_stalled_repository_never_blocks_the_agent(tmp_path, agent_process):
    # A FIFO without a writer: open() blocks like a read from a hung `hard` NFS mount.
    stalled = tmp_path / "current.json"
    os.mkfifo(stalled)
    lock = tmp_path / "promotion.lock"
    os.mkfifo(lock)
    marker = tmp_path / "readiness-fallback"
    marker.touch()
    (closed,) = triton_server.free_ports(1)
    url, log, pid = agent_process(
        f"--repository={tmp_path}",
        f"--committed-state={stalled}",
        f"--lock={lock}",
        f"--port={closed}",
        "--interval=0.2",
        "--read-timeout=0.2",
        f"--fallback-marker={marker}",
    )
    eventually(
        lambda: (
            triton_client.scrape_metrics(url + "/metrics")[
                ("tritonops_committed_state_read_errors_total", ())
            ]
            >= 10
        ),
        30,
        "ten syncs without an answer, each counted",
    )
    assert _answers(url + "/healthz")
    # One stuck reader per file, however many syncs: main, metrics server, two readers (and maybe
    # the thread answering this scrape).
    threads = int(re.search(r"^Threads:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))
    assert threads <= 5, threads
    samples = triton_client.scrape_metrics(url + "/metrics")
    assert samples[("tritonops_readiness_fallback", ())] == 1
    assert samples[("tritonops_agent_last_sync_timestamp_seconds", ())] > time.time() - 10
    text = log.read_text()
    assert "cannot read the committed state: no answer" in text
    assert "cannot read the promotion lock: no answer" in text
    assert text.count("cannot read the committed state") == 1, "said once, not at every sync"


def test_a_killed_agent_is_restarted_and_down_stops_everything(start_runtime):
    current = start_runtime()
    first = current.replicas[0].sidecar("agent")
    os.kill(first.pid, signal.SIGKILL)

    def restarted() -> control.SidecarStatus | None:
        agent = control.status(current.work_dir).replicas[0].sidecar("agent")
        return agent if agent.restarts >= 1 and agent.pid and agent.pid != first.pid else None

    again = eventually(restarted, 30, "the agent restarted by the supervisor")
    eventually(lambda: _answers(again.url("agent-metrics") + "/healthz"), 30, "the restarted agent answering")
    assert control.status(current.work_dir).replicas[0].restarts == 0, "Triton was left alone"
    control.down(current.work_dir)
    deadline = time.monotonic() + 10
    while _alive(again.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(again.pid), "down left the agent running"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
