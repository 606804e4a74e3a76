"""The agent script's decisions without a server: it judges the promotion lock by its own clock
(stale when its holder is gone from this host, or its heartbeat stopped changing for a minute) and
logs it only when its state or owner changes, backs off by doubling up to its cap, counts a failed load it sees in Triton's
index once (and never what the index held when it started), and writes a metrics page the
project's Prometheus parser reads. Driven through its sync against a fake of its loopback Triton
client, on an injected clock: it narrows a served version that is not committed only after seeing
it so for its grace (and keeps it in the pin of any load meanwhile), runs one load at a time per
pod with models taking turns, and asks Triton one thing per sync whatever the number of models."""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from tests import committing
from tests.conftest import ROOT
from tritonops.repository import example_repository
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


# --- the sync against a fake Triton, on an injected clock ---------------------------------------


def as_triton_serves(config: dict[str, Any]) -> dict[str, Any]:
    """`config` (protobuf JSON, as a record holds it) the way Triton 2.51 reports it from
    /v2/models/NAME/config (seen on the server): int64 fields as numbers, and what it fills in
    itself (backend, runtime, instance group names, dynamic batching and optimization defaults)."""

    def numbers(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {inner: numbers(item, inner) for inner, item in value.items()}
        if isinstance(value, list):
            return [numbers(item, key) for item in value]
        if isinstance(value, str) and key in ("dims", "versions", "max_queue_delay_microseconds"):
            return int(value)
        return value

    served = numbers(config)
    served.setdefault("backend", "onnxruntime")
    served.setdefault("runtime", "model.py")
    served.setdefault("batch_input", [])
    served.setdefault(
        "optimization", {"priority": "PRIORITY_DEFAULT", "input_pinned_memory": {"enable": True}}
    )
    served["instance_group"] = [
        {"name": f"{config['name']}_{position}", "gpus": [], "passive": False, **group}
        for position, group in enumerate(served.get("instance_group", [{"count": 1, "kind": "KIND_CPU"}]))
    ]
    if "dynamic_batching" in served:
        served["dynamic_batching"] = {
            "preferred_batch_size": [served.get("max_batch_size", 0)],
            "preserve_ordering": False,
            "priority_levels": 0,
            **served["dynamic_batching"],
        }
    for tensor in served.get("input", []):
        tensor.setdefault("format", "FORMAT_NONE")
        tensor.setdefault("is_shape_tensor", False)
    return served


class FakeTriton:
    """A fake of the agent's loopback client of Triton's HTTP API (tests/runtime/test_agent.py runs
    the agent against the real one): the repository index lists `served` as READY, a load serves
    exactly the pin its config override says and that config (or raises `failure` for a model in
    `broken`), the config of a model is the one it serves as Triton reports it (`configs`, by
    default what the record commits), and every call is recorded. Clearing `gate` holds loads
    open."""

    def __init__(
        self,
        served: dict[str, set[int]],
        failure: type[Exception],
        broken: tuple[str, ...] = (),
        configs: dict[str, dict[str, Any]] | None = None,
    ):
        self.served = {model: set(versions) for model, versions in served.items()}
        self.failure = failure
        self.broken = broken
        self.configs = dict(configs or {})
        self.calls: list[tuple[Any, ...]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.in_flight = 0
        self.most_in_flight = 0
        self.index_fails = False
        self._guard = threading.Lock()

    def index(self) -> list[dict[str, str]]:
        with self._guard:
            self.calls.append(("index",))
            if self.index_fails:
                raise OSError("repository index: HTTP 503: fake")
            return [
                {"name": model, "version": str(version), "state": "READY"}
                for model in sorted(self.served)
                for version in sorted(self.served[model])
            ]

    def config(self, model: str, timeout: float) -> dict[str, Any]:
        with self._guard:
            self.calls.append(("config", model))
            if self.index_fails or model not in self.configs:
                raise OSError(f"{model} config: HTTP 400: fake")
            return as_triton_serves(self.configs[model])

    def load(self, model: str, config: dict[str, Any] | None, timeout: float) -> None:
        assert config is not None, "every committed record here carries its config"
        pin = sorted(int(v) for v in config["version_policy"]["specific"]["versions"])
        with self._guard:
            self.calls.append(("load", model, pin, config))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            assert self.gate.wait(20), "a held load was never released"
            if model in self.broken:
                raise self.failure("HTTP 400: failed to load (fake)")
            with self._guard:
                self.served[model] = set(pin)
                self.configs[model] = config
        finally:
            with self._guard:
                self.in_flight -= 1

    def loads(self) -> list[tuple[str, list[int]]]:
        return [(call[1], call[2]) for call in self.calls if call[0] == "load"]

    def asked(self, what: str) -> list[str]:
        """The models of every `what` call ("config", "load")."""
        return [call[1] for call in self.calls if call[0] == what]


@pytest.fixture
def repository(tmp_path) -> Path:
    """The sample repository with linear 1 and mlp 1 committed, and a version 2 of linear on disk."""
    repository = tmp_path / "models"
    shutil.copytree(example_repository.DEFAULT_OUTPUT, repository)
    committing.add_version(repository, "linear", 2)
    committing.commit(repository, "linear", 1)
    committing.commit(repository, "mlp", 1)
    return repository


@pytest.fixture
def clock(agent, monkeypatch) -> list[float]:
    """The agent's monotonic clock, set by the test (the wall clock only stamps metrics)."""
    now = [1000.0]
    monkeypatch.setattr(agent, "time", SimpleNamespace(monotonic=lambda: now[0], time=time.time))
    return now


def _watcher(agent, repository: Path, served: dict[str, set[int]], *args: str, broken: tuple[str, ...] = ()):
    options = agent.parse_options(
        [f"--repository={repository}", f"--committed-state={repository / 'current.json'}", *args]
    )
    watcher = agent.Agent(options, agent.Metrics())
    # Triton serves what config.pbtxt says, which the record commits.
    records = json.loads((repository / "current.json").read_text())["models"]
    configs = {model: records[model]["config"] for model in served if model in records}
    watcher.triton = fake = FakeTriton(served, agent.LoadFailed, broken, configs)
    return watcher, fake


def _sync(watcher) -> None:
    """One sync, then wait for the load it started (if any) to end."""
    watcher.sync()
    _loads_ended(watcher)


def _loads_ended(watcher) -> None:
    deadline = time.monotonic() + 20
    while watcher._busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not watcher._busy, "a load never ended"


def _said(capsys) -> list[str]:
    return [line.split(" agent: ", 1)[1] for line in capsys.readouterr().err.splitlines()]


def _drift(agent, watcher, model: str = "linear") -> float | None:
    return watcher.metrics.value("tritonops_model_drift", agent._labels(model=model))


GRACE_LINE = (
    "linear: serves 2 which is not committed; narrowing it away in 90 s unless a promotion lock appears"
)


def test_a_served_version_that_is_not_committed_is_narrowed_only_after_its_grace(
    agent, repository, clock, capsys
):
    # A promotion's widened pin, its lock not visible to this pod (NFS caching a "no such file").
    watcher, triton = _watcher(agent, repository, {"linear": {1, 2}, "mlp": {1}})
    while clock[0] < 1000 + agent.NARROW_AFTER_S:
        _sync(watcher)
        assert triton.loads() == [], f"narrowed {clock[0] - 1000:g} s after first seeing it"
        assert _drift(agent, watcher) == 1, "drift is real meanwhile"
        clock[0] += 5
    assert _said(capsys).count(GRACE_LINE) == 1, "the grace is logged once, when it starts"
    clock[0] = 1000 + agent.NARROW_AFTER_S + 0.5
    _sync(watcher)
    assert triton.loads() == [("linear", [1])]
    assert triton.served["linear"] == {1}
    _sync(watcher)
    assert _drift(agent, watcher) == 0


def _lock_seen(repository: Path, triton: FakeTriton) -> None:
    committing.write_lock(repository)  # held by this live process: a promotion in progress


def _index_unanswered(repository: Path, triton: FakeTriton) -> None:
    triton.index_fails = True


def _record_unreadable(repository: Path, triton: FakeTriton) -> None:
    state = repository / "current.json"
    state.rename(repository / "current.json.kept")
    state.write_text("{not json")


def _restore(repository: Path, triton: FakeTriton) -> None:
    committing.remove_lock(repository)
    triton.index_fails = False
    kept = repository / "current.json.kept"
    if kept.exists():
        kept.replace(repository / "current.json")


INTERRUPTIONS = {
    "a-live-lock": _lock_seen,
    "no-index": _index_unanswered,
    "unreadable-record": _record_unreadable,
}


@pytest.mark.parametrize("interrupt", list(INTERRUPTIONS.values()), ids=list(INTERRUPTIONS))
def test_a_sync_that_sees_a_lock_or_cannot_tell_starts_the_grace_again(agent, repository, clock, interrupt):
    watcher, triton = _watcher(agent, repository, {"linear": {1, 2}, "mlp": {1}})
    _sync(watcher)  # the grace starts at 1000
    clock[0] = 1060.0
    interrupt(repository, triton)
    _sync(watcher)
    _restore(repository, triton)
    clock[0] = 1065.0
    _sync(watcher)  # seen served and uncommitted again: a new grace from 1065
    clock[0] = 1000 + agent.NARROW_AFTER_S + 10
    _sync(watcher)
    assert triton.loads() == [], "the wait did not start again"
    clock[0] = 1065 + agent.NARROW_AFTER_S + 0.5
    _sync(watcher)
    assert triton.loads() == [("linear", [1])]


def test_a_version_committed_within_its_grace_is_never_narrowed(agent, repository, clock):
    # The promotion commits version 2 (retaining 1) before the grace ends: nothing is drift.
    watcher, triton = _watcher(agent, repository, {"linear": {1, 2}, "mlp": {1}})
    _sync(watcher)
    clock[0] += 30
    committing.commit(repository, "linear", 2, retained=(1,))
    for _ in range(30):
        clock[0] += 5
        _sync(watcher)
    assert triton.loads() == [] and _drift(agent, watcher) == 0


def test_a_load_within_the_grace_keeps_the_uncommitted_version_in_its_pin(agent, repository, clock, capsys):
    # Version 1 (committed) is not served: loaded at once, without narrowing 2 early.
    watcher, triton = _watcher(agent, repository, {"linear": {2}, "mlp": {1}})
    _sync(watcher)
    ((model, pin, config),) = [call[1:] for call in triton.calls if call[0] == "load"]
    assert (model, pin) == ("linear", [1, 2])
    record = json.loads((repository / "current.json").read_text())["models"]["linear"]["config"]
    assert config == {**record, "version_policy": {"specific": {"versions": ["1", "2"]}}}
    assert record["version_policy"] == {"specific": {"versions": ["1"]}}, "the record itself is unchanged"
    said = _said(capsys)
    assert GRACE_LINE in said
    assert (
        "linear: load version(s) 1: pin [1, 2], with the committed config as override, keeping 2 "
        "(not committed, within its grace)"
    ) in said
    assert triton.served["linear"] == {1, 2}
    clock[0] += agent.NARROW_AFTER_S + 1
    _sync(watcher)
    assert triton.loads()[1:] == [("linear", [1])]
    last_load = [call for call in triton.calls if call[0] == "load"][-1]
    assert last_load[3] == {**record}, "past the grace the record's config goes as it is"


def test_with_no_grace_a_served_version_that_is_not_committed_is_narrowed_at_once(
    agent, repository, clock, capsys
):
    watcher, triton = _watcher(agent, repository, {"linear": {1, 2}, "mlp": {1}}, "--narrow-after=0")
    _sync(watcher)
    assert triton.loads() == [("linear", [1])]
    assert not [line for line in _said(capsys) if "narrowing it away in" in line]


def test_the_agent_runs_one_load_at_a_time_per_pod_and_models_take_turns(agent, repository, clock):
    # A restarted Triton serving neither committed model: two loads are due.
    watcher, triton = _watcher(agent, repository, {})
    triton.gate.clear()
    for _ in range(4):
        watcher.sync()
        clock[0] += 5
    time.sleep(0.2)  # room for a wrongly started second load's thread to reach Triton
    assert triton.loads() == [("linear", [1])], "a second load started while one was in flight"
    triton.gate.set()
    _sync(watcher)  # the first load ends; the next sync loads the other model
    _sync(watcher)
    assert triton.loads() == [("linear", [1]), ("mlp", [1])]
    assert triton.most_in_flight == 1


def test_a_model_that_keeps_failing_does_not_starve_the_others(agent, repository, clock):
    watcher, triton = _watcher(agent, repository, {}, broken=("linear",))
    _sync(watcher)  # linear (first by name) fails and backs off for 2 intervals
    clock[0] += 2 * watcher.options.interval + 1
    _sync(watcher)  # linear is due again, but mlp's turn comes first
    _sync(watcher)
    assert triton.loads() == [("linear", [1]), ("mlp", [1]), ("linear", [1])]


def test_a_sync_asks_triton_one_thing_whatever_the_number_of_models(agent, repository, clock):
    models = [f"model-{number:02d}" for number in range(12)]
    for name in models:
        shutil.copytree(repository / "linear", repository / name)
        shutil.rmtree(repository / name / "2")
        committing.commit(repository, name, 1)
    served = {name: {1} for name in ("linear", "mlp", *models)}
    served["model-07"] = set()  # not ready: the index says so, no question per version
    watcher, triton = _watcher(agent, repository, served)
    triton.gate.clear()
    watcher.sync()
    try:
        deadline = time.monotonic() + 20
        while not triton.loads() and time.monotonic() < deadline:
            time.sleep(0.01)  # the load runs in its own thread: wait until it reached Triton
        assert triton.calls[0] == ("index",)
        # At start-up only, the served config of each model that serves its committed versions.
        assert triton.asked("config") == sorted(name for name in served if name != "model-07")
        assert [call[:3] for call in triton.calls if call[0] != "config"][1:] == [("load", "model-07", [1])]

        def ready(model: str) -> float | None:
            return watcher.metrics.value(
                "tritonops_model_version_ready", agent._labels(model=model, version=1)
            )

        assert ready("model-07") == 0
        assert all(ready(name) == 1 for name in served if name != "model-07")
    finally:
        triton.gate.set()
        _loads_ended(watcher)
    triton.calls.clear()
    for _ in range(3):
        clock[0] += 5
        _sync(watcher)
    assert triton.calls == [("index",)] * 3, "a converged pod costs one call per sync"


# --- the served config against the committed one -----------------------------------------------

# What Triton 2.51 answered on /v2/models/linear/config for the sample's linear model loaded with
# its record's config as the override (captured here): numbers as numbers, its own fields filled in.
SERVED_LINEAR = json.loads((ROOT / "tests" / "resources" / "triton-2.51-linear-config.json").read_text())
LINEAR_PBTXT = (example_repository.DEFAULT_OUTPUT / "linear" / "config.pbtxt").read_bytes()


def _committed_linear(**changes: Any) -> dict[str, Any]:
    """The sample linear model's config as a record holds it (int64 as strings), with `changes`."""
    return {**committing.config_json(LINEAR_PBTXT), **changes}


CONFIG_CASES = {
    "the-same-config": (_committed_linear(), []),
    "another-pin-is-not-compared": (
        _committed_linear(version_policy={"specific": {"versions": ["1", "2"]}}),
        [],
    ),
    "kind-auto-serves-as-the-kind-triton-picked": (
        _committed_linear(instance_group=[{"count": 1, "kind": "KIND_AUTO"}]),
        [],
    ),
    "max-batch-size": (_committed_linear(max_batch_size=4), ["max_batch_size"]),
    "a-queue-delay-as-int64-string": (
        _committed_linear(dynamic_batching={"max_queue_delay_microseconds": "500"}),
        ["dynamic_batching.max_queue_delay_microseconds"],
    ),
    "preferred-batch-sizes": (
        _committed_linear(
            dynamic_batching={"max_queue_delay_microseconds": "100", "preferred_batch_size": [2, 4]}
        ),
        ["dynamic_batching.preferred_batch_size"],
    ),
    "instance-count": (
        _committed_linear(instance_group=[{"count": 2, "kind": "KIND_CPU"}]),
        ["instance_group[0].count"],
    ),
    "a-second-instance-group": (
        _committed_linear(
            instance_group=[{"count": 1, "kind": "KIND_CPU"}, {"count": 1, "kind": "KIND_CPU"}]
        ),
        ["instance_group"],
    ),
    "a-field-triton-does-not-serve": (
        _committed_linear(sequence_batching={"max_sequence_idle_microseconds": "5000"}),
        ["sequence_batching"],
    ),
    "a-flag-turned-off": (
        _committed_linear(optimization={"input_pinned_memory": {"enable": False}}),
        ["optimization.input_pinned_memory.enable"],
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES), ids=list(CONFIG_CASES))
def test_the_served_config_differs_only_where_the_record_sets_another_value(agent, case):
    committed, differences = CONFIG_CASES[case]
    assert agent.committed_state.config_differences(committed, SERVED_LINEAR) == differences


def test_without_dynamic_batching_served_a_record_that_enables_it_differs(agent):
    served = {key: value for key, value in SERVED_LINEAR.items() if key != "dynamic_batching"}
    assert agent.committed_state.config_differences(_committed_linear(), served) == ["dynamic_batching"]
    # Numbers compare as numbers, whether the record writes them as int64 strings or not.
    assert (
        agent.committed_state.config_differences(
            {"max_batch_size": "8", "dims": [4.0]}, {"max_batch_size": 8, "dims": [4]}
        )
        == []
    )
    assert agent.committed_state.differing_fields(["instance_group[0].count", "dynamic_batching.x"]) == [
        "dynamic_batching",
        "instance_group",
    ]


def _change_config(repository: Path, model: str, old: str, new: str) -> None:
    """A config change of the committed version, as `tritonops promote --config` commits it."""
    path = repository / model / "config.pbtxt"
    path.write_text(path.read_text().replace(old, new))
    committing.commit(repository, model, 1)


def test_a_replica_serving_another_config_is_loaded_once_with_the_committed_one(
    agent, repository, clock, capsys
):
    watcher, triton = _watcher(agent, repository, {"linear": {1}, "mlp": {1}})
    _sync(watcher)
    assert triton.asked("config") == ["linear", "mlp"] and triton.loads() == [], "start-up: checked once"
    # A config promotion that did not reach this replica: same version, a new config committed.
    _change_config(repository, "linear", "max_batch_size: 8", "max_batch_size: 4")
    clock[0] += 5
    watcher.sync()
    assert _drift(agent, watcher) == 1, "drift while it serves another config"
    _loads_ended(watcher)
    ((model, pin, config),) = [call[1:] for call in triton.calls if call[0] == "load"]
    record = json.loads((repository / "current.json").read_text())["models"]["linear"]["config"]
    assert (model, pin, config) == ("linear", [1], record) and record["max_batch_size"] == 4
    said = _said(capsys)
    assert any(
        line.startswith(
            "linear: serves its committed versions [1] with a config that differs from the "
            "committed one in max_batch_size"
        )
        for line in said
    ), said
    assert any(
        "load the committed config (the served one differs in max_batch_size)" in line for line in said
    )
    # Converged: no drift, and the next syncs neither load nor fetch a config again.
    calls = len(triton.calls)
    for _ in range(5):
        clock[0] += 5
        _sync(watcher)
    assert _drift(agent, watcher) == 0
    assert triton.calls[calls:] == [("index",)] * 5
    loads = watcher.metrics.value("tritonops_agent_loads_total", agent._labels(model="linear", outcome="ok"))
    assert loads == 1


def test_a_config_triton_serves_otherwise_after_our_own_load_is_not_loaded_again(
    agent, repository, clock, capsys
):
    # A Triton that rewrites a field the record sets: loading again would change nothing.
    watcher, triton = _watcher(agent, repository, {"linear": {1}, "mlp": {1}})
    triton.configs["linear"] = {**triton.configs["linear"], "max_batch_size": "2"}
    load = triton.load

    def rewriting(model: str, config: dict[str, Any] | None, timeout: float) -> None:
        load(model, config, timeout)
        triton.configs[model] = {**triton.configs[model], "max_batch_size": "2"}

    triton.load = rewriting  # type: ignore[method-assign]
    for _ in range(15):  # past CONFIG_RECHECK_S: the served config is fetched again, not loaded
        _sync(watcher)
        clock[0] += 60
    assert triton.loads() == [("linear", [1])]
    assert triton.asked("config").count("linear") == 3, "at start-up, after the load, and once rechecked"
    assert _drift(agent, watcher) == 1, "it is not the committed config, as far as the agent can tell"
    assert any("not loading it again until the record changes" in line for line in _said(capsys))
