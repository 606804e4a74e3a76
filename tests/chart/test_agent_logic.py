"""The agent script's decisions without a server: it judges the promotion lock by its own clock
(stale when its holder is gone from this host, or its heartbeat stopped changing for a minute) and
logs it only when its state or owner changes, backs off by doubling up to its cap, counts a failed load it sees in Triton's
index once (and never what the index held when it started), and writes a metrics page the
project's Prometheus parser reads."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from tests import committing
from tests.conftest import ROOT
from tritonops.triton import client as triton_client

SCRIPT = ROOT / "charts" / "triton" / "files" / "agent.py"


@pytest.fixture(scope="module")
def agent() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tritonops_chart_agent", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dead_pid() -> int:
    return int(
        subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        ).stdout
    )


def _garbage(repository: Path) -> None:
    path = repository / committing.LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")


# Every lock reads as live at first sight unless its holder is provably gone from this host: the
# holder's timestamps are never compared with the agent's clock (they may disagree).
LOCKS = {
    "live-here": (lambda repo: committing.write_lock(repo), False),
    "live-elsewhere": (lambda repo: committing.write_lock(repo, host="promoter-1", pid=1), False),
    "old-stamp-elsewhere": (
        lambda repo: committing.write_lock(repo, host="promoter-1", pid=1, heartbeat_age_s=900),
        False,
    ),
    "dead-here": (lambda repo: committing.write_lock(repo, pid=_dead_pid()), True),
    "unreadable": (_garbage, False),
}


@pytest.mark.parametrize("case", list(LOCKS), ids=list(LOCKS))
def test_a_lock_first_seen_is_stale_only_when_its_holder_is_gone_from_this_host(agent, tmp_path, case):
    write, stale = LOCKS[case]
    write(tmp_path)
    content = (tmp_path / committing.LOCK).read_bytes()
    view = agent.judge_lock(content, socket.gethostname(), 0.0)
    assert (view.live, view.stale) == (not stale, stale), view
    assert agent.judge_lock(None, socket.gethostname(), 0.0) == agent.LockView()


@pytest.mark.parametrize("case", ["live-elsewhere", "old-stamp-elsewhere", "live-here", "unreadable"])
def test_a_lock_whose_heartbeat_stops_changing_on_the_agents_clock_goes_stale(agent, tmp_path, case):
    LOCKS[case][0](tmp_path)
    path = tmp_path / committing.LOCK
    watch = agent.LockWatch()
    host = socket.gethostname()

    def judged(at: float):
        content = path.read_bytes()
        return agent.judge_lock(content, host, watch.unchanged_for(content, at))

    assert judged(1000.0).live and judged(1000.0 + agent.LOCK_STALE_S).live
    assert judged(1000.0 + agent.LOCK_STALE_S + 1).stale
    # A new heartbeat (even a stamp that looks old to us) makes it live again, for another minute.
    path.write_bytes(path.read_bytes() + b" ")
    assert judged(2000.0).live and judged(2000.0 + agent.LOCK_STALE_S).live
    assert judged(2000.0 + agent.LOCK_STALE_S + 1).stale


def test_the_agent_logs_the_lock_only_when_its_state_or_owner_changes(agent, tmp_path, capsys, monkeypatch):
    repository = tmp_path / "models"
    repository.mkdir()
    options = agent.parse_options(
        ["--repository", str(repository), "--committed-state", str(tmp_path / "current.json")]
    )
    watcher = agent.Agent(options, agent.Metrics())
    clock = [1000.0]
    monkeypatch.setattr(agent, "time", SimpleNamespace(monotonic=lambda: clock[0], time=time.time))

    def lines() -> list[str]:
        return [line.split(" agent: ", 1)[1] for line in capsys.readouterr().err.splitlines()]

    for age in (0, 5, 10, 15):  # a promotion heartbeating: one line
        committing.write_lock(repository, host="promoter-1", pid=1, heartbeat_age_s=100 - age)
        assert watcher._read_lock().live
        clock[0] += 5
    said = lines()
    assert len(said) == 1 and said[0].startswith(
        "promotion in progress (`tritonops promote` by tests@promoter-1"
    )
    committing.write_lock(repository, host="promoter-2", pid=2)  # another owner: one more line
    watcher._read_lock()
    assert [line.split(" (", 1)[1].split(")")[0] for line in lines()] == [
        "`tritonops promote` by tests@promoter-2 pid 2 for model linear"
    ]
    clock[0] += agent.LOCK_STALE_S + 1
    for _ in range(3):  # silent: stale, said once
        assert watcher._read_lock().stale
        clock[0] += 5
    said = lines()
    assert len(said) == 1 and said[0].startswith(f"stale promotion lock {repository / committing.LOCK}")
    committing.remove_lock(repository)
    for _ in range(3):
        assert not watcher._read_lock().live
    assert lines() == ["no promotion lock: converging"]


def test_the_back_off_doubles_per_version_up_to_its_cap_and_a_success_clears_it(agent):
    backoff = agent.Backoff(1.0, 4.0)
    key, other = ("linear", 3), ("linear", 4)
    assert [backoff.failed(key, 0.0) for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    assert not backoff.due(key, 3.9) and backoff.due(key, 4.0)
    assert backoff.due(other, 0.0), "a version's failures never hold back another"
    backoff.succeeded(key)
    assert backoff.due(key, 0.0) and backoff.failed(key, 0.0) == 1.0


def _index(*entries: tuple[str, int, str, str]) -> list[dict[str, str]]:
    return [
        {"name": name, "version": str(version), "state": state, **({"reason": reason} if reason else {})}
        for name, version, state, reason in entries
    ] + [{"name": "mlp"}]  # a model never loaded: no version, no state


BROKEN = "Internal: TritonModelException: unable to load model 'linear': INVALID_PROTOBUF"


def test_a_failed_load_in_the_index_is_counted_once_and_the_starting_index_is_a_baseline(agent):
    options = agent.parse_options(["--repository=/nowhere", "--committed-state=/nowhere/current.json"])
    metrics = agent.Metrics()
    watcher = agent.Agent(options, metrics)

    def failures(version: int) -> float:
        return (
            metrics.value(
                "tritonops_model_load_failures_total", agent._labels(model="linear", version=version)
            )
            or 0
        )

    # What the index shows when the agent starts (an earlier failure of version 2) is not new.
    watcher._observe(_index(("linear", 1, "READY", ""), ("linear", 2, "UNAVAILABLE", BROKEN)), set())
    assert failures(2) == 0
    # A candidate loads, then fails: one failure; the same entry at later syncs adds nothing.
    watcher._observe(_index(("linear", 1, "READY", ""), ("linear", 3, "LOADING", "")), set())
    for _ in range(3):
        watcher._observe(_index(("linear", 1, "READY", ""), ("linear", 3, "UNAVAILABLE", BROKEN)), set())
    assert failures(3) == 1
    # Narrowing a version away is not a failure.
    watcher._observe(
        _index(("linear", 1, "UNAVAILABLE", "unloaded"), ("linear", 3, "UNAVAILABLE", BROKEN)), set()
    )
    assert failures(1) == 0
    # A second failure of version 3 with another error counts again; a model with the agent's own
    # load in flight is left to that load.
    watcher._observe(_index(("linear", 3, "UNAVAILABLE", BROKEN + " again")), set())
    assert failures(3) == 2
    watcher._observe(_index(("linear", 3, "UNAVAILABLE", "yet another error")), {"linear"})
    assert failures(3) == 2


def test_the_metrics_page_reads_back_with_the_project_parser(agent):
    metrics = agent.Metrics()
    metrics.set("tritonops_committed_version", 3, agent._labels(model='we"ird\\name'))
    metrics.ensure("tritonops_agent_loads_total", agent._labels(model="linear", outcome="failed"))
    metrics.inc("tritonops_committed_state_read_errors_total")
    samples = triton_client.parse_metrics(metrics.render())
    assert samples[("tritonops_committed_version", (("model", 'we"ird\\name'),))] == 3
    assert samples[("tritonops_agent_loads_total", (("model", "linear"), ("outcome", "failed")))] == 0
    assert samples[("tritonops_committed_state_read_errors_total", ())] == 1
    page = metrics.render()
    for name, (kind, _) in agent.METRICS.items():
        assert f"# TYPE {name} {kind}\n" in page
