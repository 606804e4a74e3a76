"""The promotion chain on two real replicas (the local runtime) with 8 clients inferring throughout:
successful, failed, rolled-back, canary, lower-version and no-op promotions.

Every scenario asserts what clients saw (no failed request), where every replica ends and what the
committed state says. Latency is reported (p99 during the swap vs steady), never asserted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.promotion import models
from tests.promotion.conftest import Fleet
from tritonops import errors
from tritonops.observability import prometheus as prom
from tritonops.promotion import chain, lock, smoke, state, traffic, workarea
from tritonops.promotion import fleet as fleet_module
from tritonops.runtime import control
from tritonops.triton import server as triton_server

END_STATUSES = ("ok:", "failed:", "skipped:", "degraded:")


class Marks:
    """A chain progress callback that puts each step's start and end on the traffic's clock."""

    def __init__(self, running: traffic.Traffic) -> None:
        self.running = running
        self.started: list[str] = []

    def __call__(self, step: str, message: str) -> None:
        ended = message.startswith(END_STATUSES)
        self.running.mark(f"{step} {'end' if ended else 'start'}")
        if not ended:
            self.started.append(step)


def report_swap(
    say: Callable[[str], None], name: str, report: traffic.TrafficReport, first: str, last: str
) -> dict[str, object]:
    """Report the figures of one scenario on the terminal and return the swap comparison."""
    swap = report.swap(report.mark(first), report.mark(last))
    say(
        f"[{name}] requests {len(report.answers)}, failed {len(report.failed)}, by version "
        f"{report.by_version()}; p99 steady {swap['steady_p99_ms']} ms vs during the swap "
        f"{swap['swap_p99_ms']} ms (x{swap['ratio']}, {swap['swap_requests']} requests in the window)"
    )
    return swap


def promote(fleet: Fleet, **kwargs: object) -> chain.Outcome:
    return chain.promote(
        repository=fleet.repository, replicas=fleet.replicas, key=fleet.key, model="linear", **kwargs
    )  # type: ignore[arg-type]


def test_a_promotion_under_load_commits_everywhere_with_no_failed_request(fleet_runtime: Fleet, figures):
    fleet = fleet_runtime
    before = fleet.record()
    version = fleet.new_version()
    source = fleet.candidate(version, scale=0.5)
    with fleet.traffic() as running:
        running.wait_for(100)
        outcome = promote(fleet, version=version, source=str(source), progress=Marks(running))
        running.wait_for(len(running.report().answers) + 100)
    report = running.report()
    report_swap(figures, "promote", report, "load start", "narrow end")
    assert report.failed == []
    assert (
        outcome.result == "committed"
        and outcome.version == version
        and outcome.previous_version == before.version
    )
    assert [s.name for s in outcome.steps] == [
        "materialize",
        "verify",
        "stage",
        "load",
        "check",
        "commit",
        "narrow",
    ]
    assert all(s.status == "ok" for s in outcome.steps)
    record = fleet.record()
    assert (record.version, record.pin, record.previous and record.previous.version) == (
        version,
        [version],
        before.version,
    )
    assert record.source == str(source) and record.digest and record.committed_by
    assert fleet.served() == [(version,), (version,)]
    # Requests before the load went to the old version; after the narrow, only the new one answers.
    assert {a.version for a in report.answers if a.at_s + a.seconds < report.mark("load start")} == {
        before.version
    }
    assert {a.version for a in report.answers if a.at_s > report.mark("narrow end")} == {version}
    history = state.read(fleet.repository).history[-1]
    assert (history.outcome, history.version, history.previous_version) == (
        "committed",
        version,
        before.version,
    )
    json.dumps(outcome.as_dict())  # the outcome is JSON-serialisable as it is


@pytest.fixture
def golden_of_committed(fleet_runtime: Fleet, tmp_path: Path) -> Path:
    """A golden file: the smoke inputs and what the committed version answers to them."""
    from tritonops.promotion import replicas

    fleet = fleet_runtime
    with replicas.connect(fleet.replicas[0], fleet.key) as client:
        config = client.model_config("linear", fleet.record().version)
        inputs = smoke.inputs_for(config)
        outputs = client.infer("linear", inputs, version=fleet.record().version)
    path = tmp_path / "golden.npz"
    np.savez(
        path, **{f"input:{k}": v for k, v in inputs.items()}, **{f"output:{k}": v for k, v in outputs.items()}
    )
    return path


@pytest.mark.parametrize(
    ("case", "step"),
    [("unloadable", "load"), ("wrong-outputs", "check"), ("load-timeout", "load")],
    ids=["bad-model", "wrong-outputs", "load-timeout"],
)
def test_a_failed_candidate_rolls_every_replica_back_with_no_failed_request(
    fleet_runtime: Fleet, golden_of_committed: Path, figures, case: str, step: str
):
    fleet = fleet_runtime
    before = fleet.record()
    version = fleet.new_version()
    options: dict[str, object] = {}
    if case == "unloadable":
        source = fleet.candidate(version, build="unloadable")
    elif case == "wrong-outputs":
        source = fleet.candidate(version, scale=3.0)
        options["golden"] = smoke.load_golden(golden_of_committed)
    else:
        source = fleet.candidate(version)
        options["load_deadline_s"] = 0.3
    with fleet.traffic() as running:
        running.wait_for(100)
        with pytest.raises(errors.PromotionFailed) as raised:
            promote(fleet, version=version, source=str(source), progress=Marks(running), **options)
        running.wait_for(len(running.report().answers) + 100)
    report = running.report()
    report_swap(figures, case, report, "load start", "restore end")
    outcome = raised.value.outcome
    assert isinstance(outcome, chain.Outcome)
    seen = report.by_version().get(version, 0)
    figures(
        f"[{case}] the rejected candidate answered {outcome.candidate_answered} request(s) by Triton's "
        f"statistics (read just before it was dropped), {seen} seen by the clients"
    )
    # The statistics are read before the candidate is dropped: never more than the clients saw.
    assert outcome.candidate_answered is not None and outcome.candidate_answered <= seen
    assert raised.value.step == step == outcome.failed_step and f"promotion failed at step {step}" in str(
        raised.value
    )
    assert report.failed == []
    # Every replica is back on the committed version, which did not change.
    assert fleet.record().version == before.version and fleet.record().pin == before.pin
    assert fleet.served() == [tuple(before.pin)] * 2
    assert {a.version for a in report.answers if a.at_s > report.mark("restore end")} == {before.version}
    restore = next(s for s in outcome.steps if s.name == "restore")
    assert restore.status == "ok" and all(r.ok for r in restore.replicas)
    # The candidate left the model folder for the quarantine, with its reason.
    assert not (fleet.repository / "linear" / str(version)).exists()
    reason = json.loads((Path(outcome.quarantined or "") / workarea.REASON_FILE).read_text())
    assert (reason["version"], reason["step"]) == (version, step)
    history = state.read(fleet.repository).history[-1]
    assert (history.outcome, history.version, history.step) == ("failed", version, step)


def test_a_candidate_that_disagrees_with_the_config_is_refused_before_any_replica_is_touched(
    fleet_runtime: Fleet,
):
    fleet = fleet_runtime
    before = fleet.record()
    version = fleet.new_version()
    source = fleet.candidate(version, build="mismatched")
    with pytest.raises(errors.CandidateRejected, match="input"):
        promote(fleet, version=version, source=str(source))
    assert fleet.record() == before and fleet.served() == [tuple(before.pin)] * 2
    assert not (fleet.repository / "linear" / str(version)).exists()
    assert list((workarea.quarantine_dir(fleet.repository) / "linear").glob(f"{version}-*"))
    attempt = state.read(fleet.repository).history[-1]
    assert (attempt.outcome, attempt.version, attempt.step) == ("failed", version, "verify")


def test_rollback_returns_to_the_previous_version_with_no_failed_request(fleet_runtime: Fleet, figures):
    fleet = fleet_runtime
    first = fleet.record().version
    version = fleet.new_version()
    promote(fleet, version=version, source=str(fleet.candidate(version, scale=1.5)))
    with fleet.traffic() as running:
        running.wait_for(100)
        outcome = chain.rollback(
            repository=fleet.repository,
            replicas=fleet.replicas,
            key=fleet.key,
            model="linear",
            progress=Marks(running),
        )
        running.wait_for(len(running.report().answers) + 100)
    report = running.report()
    report_swap(figures, "rollback", report, "load start", "narrow end")
    assert report.failed == []
    assert (outcome.result, outcome.version, outcome.previous_version) == ("rolled-back", first, version)
    assert fleet.record().version == first and fleet.served() == [(first,), (first,)]
    assert state.read(fleet.repository).history[-1].outcome == "rolled-back"
    # A second rollback without --to would bring back the version just rolled away from.
    with pytest.raises(
        errors.InputError, match=f"already the result of a rollback \\(from version {version}\\)"
    ):
        chain.rollback(repository=fleet.repository, replicas=fleet.replicas, key=fleet.key, model="linear")
    assert fleet.record().version == first
    # Rolling back to the version already committed is a rollback that does nothing, and says so.
    same = chain.rollback(
        repository=fleet.repository, replicas=fleet.replicas, key=fleet.key, model="linear", to=first
    )
    assert (same.command, same.result) == ("rollback", "noop")


def test_keep_previous_keeps_the_old_version_loaded_so_rollback_needs_no_load(fleet_runtime: Fleet, figures):
    fleet = fleet_runtime
    old = fleet.record().version
    version = fleet.new_version()
    outcome = promote(fleet, version=version, source=str(fleet.candidate(version)), keep_previous=True)
    assert fleet.record().pin == [old, version] and fleet.record().retained == (old,)
    assert fleet.served() == [(old, version), (old, version)] and "kept loaded" in outcome.reason
    back = chain.rollback(repository=fleet.repository, replicas=fleet.replicas, key=fleet.key, model="linear")
    load = next(s for s in back.steps if s.name == "load")
    assert all("no load needed" in r.detail for r in load.replicas)
    assert fleet.record().version == old and fleet.served() == [(old,), (old,)]
    figures(
        f"[rollback with --keep-previous] {back.seconds:.2f} s: "
        + ", ".join(f"{s.name} {s.seconds:.2f}s" for s in back.steps)
    )
    # --keep-previous with a lower candidate would leave the higher one taking the traffic: refused.
    with pytest.raises(errors.InputError, match="--keep-previous: version 1 is lower"):
        promote(fleet, version=1, keep_previous=True)


def test_a_lower_version_is_promoted_by_its_pin_and_rolled_back(fleet_runtime: Fleet):
    fleet = fleet_runtime
    higher = fleet.new_version()
    promote(fleet, version=higher, source=str(fleet.candidate(higher)))
    with fleet.traffic() as running:
        running.wait_for(100)
        lower = promote(fleet, version=1, progress=Marks(running))  # version 1's folder is still there
        running.wait_for(len(running.report().answers) + 100)
    report = running.report()
    assert report.failed == []
    # While both were loaded the higher committed version kept every unversioned request.
    assert {a.version for a in report.answers if a.at_s + a.seconds < report.mark("commit start")} == {higher}
    assert lower.version == 1 and fleet.record().pin == [1] and fleet.served() == [(1,), (1,)]
    chain.rollback(repository=fleet.repository, replicas=fleet.replicas, key=fleet.key, model="linear")
    assert fleet.record().version == higher and fleet.served() == [(higher,), (higher,)]


def test_promoting_the_committed_version_again_is_a_noop_that_says_so(fleet_runtime: Fleet):
    fleet = fleet_runtime
    record = fleet.record()
    outcome = promote(fleet, version=record.version)
    assert outcome.result == "noop" and "already committed" in outcome.reason
    assert fleet.record() == record
    assert state.read(fleet.repository).history[-1].outcome == "noop"


def test_a_second_promotion_is_refused_while_one_holds_the_lock(fleet_runtime: Fleet, run_cli):
    fleet = fleet_runtime
    version = fleet.new_version()
    in_load, release = threading.Event(), threading.Event()

    def hold_in_load(step: str, message: str) -> None:
        if step == "load" and not message.startswith(END_STATUSES):
            in_load.set()
            release.wait(60)

    result: list[object] = []
    first = threading.Thread(
        target=lambda: result.append(
            promote(fleet, version=version, source=str(fleet.candidate(version)), progress=hold_in_load)
        )
    )
    first.start()
    try:
        assert in_load.wait(60)
        second = run_cli(
            "promote",
            "linear",
            "--version",
            str(version + 100),
            "--from",
            str(fleet.candidate(version)),
            "--repository",
            str(fleet.repository),
            "--work-dir",
            str(fleet.work_dir),
        )
    finally:
        release.set()
        first.join()
    assert second.returncode == 3, second.stderr
    assert (
        "a promotion is in progress" in second.stderr
        and f"promote linear --version {version}" in second.stderr
    )
    assert "Traceback" not in second.stderr
    assert isinstance(result[0], chain.Outcome) and fleet.record().version == version


@pytest.fixture(scope="module")
def prometheus_on_replicas(fleet_runtime: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus scraping both replicas' metrics ports every 500 ms (once both are up)."""
    if not shutil.which("prometheus"):
        pytest.skip("prometheus not installed (Debian: apt-get install prometheus)")
    current = control.status(fleet_runtime.work_dir)
    targets = [r.metrics_url.removeprefix("http://").removesuffix("/metrics") for r in current.replicas]
    config = {
        "global": {"scrape_interval": "500ms", "evaluation_interval": "500ms"},
        "scrape_configs": [{"job_name": "triton", "static_configs": [{"targets": targets}]}],
    }
    (port,) = triton_server.free_ports(1)
    server = prom.Prometheus(config, tmp_path_factory.mktemp("prometheus"), port)
    try:
        server.wait_ready()
        deadline = time.monotonic() + 30
        while len(server.query('up{job="triton"} == 1')) < len(targets):
            assert time.monotonic() < deadline, "Prometheus never scraped both replicas"
            time.sleep(0.25)
        yield server.url
    finally:
        server.stop()


def test_a_canary_is_gated_on_its_replica_before_the_rest_are_promoted(
    fleet_runtime: Fleet, prometheus_on_replicas, figures
):
    fleet = fleet_runtime
    version = fleet.new_version()
    healthy = '(sum(rate(nv_inference_request_failure{model="linear"}[5s])) or vector(0)) == bool 0'
    spec = chain.GateSpec(healthy, prometheus_on_replicas, window_s=2.0, interval_s=0.5)
    with fleet.traffic() as running:
        running.wait_for(100)
        outcome = promote(
            fleet,
            version=version,
            source=str(fleet.candidate(version)),
            canary=1,
            gate_spec=spec,
            progress=Marks(running),
        )
        running.wait_for(len(running.report().answers) + 100)
    report = running.report()
    report_swap(figures, "canary", report, "load start", "narrow end")
    assert report.failed == []
    names = [
        (s.name, tuple(r.replica for r in s.replicas)) for s in outcome.steps if s.name in ("load", "check")
    ]
    assert names == [
        ("load", ("replica-0",)),
        ("check", ("replica-0",)),
        ("load", ("replica-1",)),
        ("check", ("replica-1",)),
    ]
    observe = next(s for s in outcome.steps if s.name == "observe")
    assert observe.status == "ok" and "all 1" in observe.detail
    # The rest was loaded only after the gate passed on the canary.
    assert report.mark("observe end") < [m.at_s for m in report.marks if m.label == "load start"][1]
    assert fleet.served() == [(version,), (version,)]


def test_a_canary_whose_gate_breaches_leaves_the_rest_untouched(fleet_runtime: Fleet, prometheus_on_replicas):
    fleet = fleet_runtime
    before = fleet.record()
    version = fleet.new_version()
    never = 'sum(up{job="triton"}) < bool 0'  # always 0 once scraped: a breach
    spec = chain.GateSpec(never, prometheus_on_replicas, window_s=5.0, interval_s=0.5)
    with fleet.traffic() as running:
        running.wait_for(100)
        with pytest.raises(errors.PromotionFailed, match="at step observe: gate breach"):
            promote(
                fleet,
                version=version,
                source=str(fleet.candidate(version)),
                canary=1,
                gate_spec=spec,
                progress=Marks(running),
            )
    report = running.report()
    assert report.failed == []
    assert [m.label for m in report.marks].count("load start") == 1  # replica-1 never loaded it
    assert fleet.record() == before and fleet.served() == [tuple(before.pin)] * 2


def test_if_one_replica_fails_both_roll_back(fleet_runtime: Fleet):
    """replica-1's Triton is killed as the load starts: the promotion fails at load, replica-0 is
    narrowed back, and replica-1 comes back (restarted by the supervisor) on the committed version."""
    fleet = fleet_runtime
    before = fleet.record()
    version = fleet.new_version()
    pid = control.status(fleet.work_dir).replicas[1].pid
    assert pid

    def kill_replica_1(step: str, message: str) -> None:
        if step == "load" and not message.startswith(END_STATUSES):
            os.killpg(pid, signal.SIGKILL)

    with pytest.raises(errors.PromotionFailed) as raised:
        promote(fleet, version=version, source=str(fleet.candidate(version)), progress=kill_replica_1)
    assert raised.value.step == "load" and "replica-1" in str(raised.value)
    deadline = time.monotonic() + 60
    while not control.status(fleet.work_dir).all_ready:
        assert time.monotonic() < deadline, "replica-1 did not come back"
        time.sleep(0.5)
    assert fleet.record() == before
    assert fleet.served() == [tuple(before.pin)] * 2


def test_the_first_promotion_of_a_model_commits_its_first_record(fleet_runtime: Fleet):
    fleet = fleet_runtime
    assert "fresh" not in state.effective(fleet.repository)
    outcome = chain.promote(
        repository=fleet.repository, replicas=fleet.replicas, key=fleet.key, model="fresh", version=1
    )
    assert (outcome.result, outcome.version, outcome.previous_version) == ("committed", 1, None)
    record = state.effective(fleet.repository)["fresh"]
    assert record.pin == [1] and record.previous is None
    served = fleet_module.served(fleet.replicas, fleet.key, ["fresh"])["fresh"]
    assert [seen.versions for seen in served] == [(1,), (1,)]


def test_a_failed_first_promotion_keeps_the_uncommitted_version_serving(fleet_runtime: Fleet, figures):
    # `adopted` serves version 1 from server.loadModels and has no record: the candidate loads
    # beside it, and its failure restores version 1 (pinned: its config says `latest`, which would
    # now pick the candidate) without a failed request.
    fleet = fleet_runtime
    models.unloadable_version(fleet.sources, "adopted", 2)
    with traffic.Traffic(fleet.replicas, "adopted", key=fleet.key) as running:
        running.wait_for(100)
        with pytest.raises(errors.PromotionFailed) as raised:
            chain.promote(
                repository=fleet.repository,
                replicas=fleet.replicas,
                key=fleet.key,
                model="adopted",
                version=2,
                source=str(fleet.sources / "adopted" / "2"),
            )
        running.wait_for(len(running.report().answers) + 100)
    report = running.report()
    figures(f"[first promotion, bad model] {len(report.answers)} requests, {len(report.failed)} failed")
    assert report.failed == []
    assert raised.value.step == "load"
    assert "adopted" not in state.effective(fleet.repository)
    served = fleet_module.served(fleet.replicas, fleet.key, ["adopted"])["adopted"]
    assert [seen.versions for seen in served] == [(1,), (1,)]


def test_a_gate_on_a_lower_version_is_refused_before_anything_changes(fleet_runtime: Fleet, tmp_path: Path):
    fleet = fleet_runtime
    before = fleet.record()
    lower = next(
        v for v in range(before.version - 1, 0, -1) if (fleet.repository / "linear" / str(v)).is_dir()
    )
    spec = chain.GateSpec(query="vector(1)", prometheus_url="http://127.0.0.1:9", window_s=5)
    with pytest.raises(errors.InputError, match=f"--gate: version {lower} is lower than version"):
        promote(fleet, version=lower, gate_spec=spec)
    assert fleet.record() == before
    assert lock.inspect(fleet.repository) is None
    assert fleet.served() == [tuple(before.pin), tuple(before.pin)]
