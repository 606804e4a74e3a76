"""The seed platform's end-to-end checklist, on the real server through the embedded runtime:
the rendered pod's replicas, its probes driven like the kubelet, restarts, and a clean `down`."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from tests import e2e
from tests.runtime.conftest import FAST_PROBES
from tritonops import errors
from tritonops.repository import checksums
from tritonops.runtime import control, workspace
from tritonops.runtime.supervisor import State
from tritonops.triton import client as triton_client
from tritonops.triton import onnx_models


def _client(current, replica=0, *, authorised=True):
    address = current.replicas[replica].url.removeprefix("http://")
    if not authorised:
        return triton_client.Client(address)
    return triton_client.Client(address, api_header=current.api_header, api_key=current.api_key())


def _repository(current) -> Path:
    return Path(workspace.Workspace(current.work_dir).read_plan()["repository"])


def _wait_for(work_dir: Path, predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        current = control.status(work_dir)
        if predicate(current):
            return current
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout_s} s; last: {control.describe(control.status(work_dir))}")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two replicas of the local render, shared by the non-destructive checks."""
    from tests.runtime.conftest import free_port_offset

    work_dir = tmp_path_factory.mktemp("pair") / "work"
    current = control.up(
        "local", work_dir=work_dir, replicas=2, port_offset=free_port_offset(2), set_values=FAST_PROBES
    )
    yield current
    control.down(work_dir)


def _deployment(current) -> e2e.Deployment:
    """The local replicas as the shared end-to-end assertions address them (tests/e2e.py)."""
    pods = [
        e2e.Pod(
            f"replica-{r.index}",
            r.url.removeprefix("http://"),
            f"http://127.0.0.1:{r.ports['metrics']}/metrics",
        )
        for r in current.replicas
    ]
    return e2e.Deployment(pods, current.api_header, current.api_key())


def test_replicas_reach_ready_through_the_rendered_probes(pair):
    assert [r.state for r in pair.replicas] == [State.READY, State.READY]
    assert len({r.ports["http"] for r in pair.replicas}) == 2
    e2e.assert_live_and_serving(_deployment(pair), "linear", 1)


def test_load_needs_the_restricted_api_header(pair):
    e2e.assert_repository_api_needs_key(_deployment(pair), "mlp")


def test_smoke_inference_matches_onnxruntime_on_every_replica(pair):
    expected = e2e.reference_output(_repository(pair) / "linear" / "1" / "model.onnx")
    e2e.assert_inference_matches(_deployment(pair), "linear", expected)


def test_metrics_counters_rise_after_inference(pair):
    e2e.assert_metrics_count_requests(_deployment(pair), "linear", requests=3)


def _readiness_probes(server_log: Path) -> int:
    """Readiness probes that reached the server so far: only ready.py asks for the static model's
    unversioned ready endpoint (Triton logs each HTTP request at --log-verbose=1)."""
    return server_log.read_text(errors="replace").count('HTTP request: 0 /v2/models/linear/ready"')


def test_failed_candidate_load_keeps_replica_ready_and_serving_the_old_version(start_runtime):
    # Its own runtime and repository copy: the broken version 2 and the config override that Triton
    # keeps for later plain loads (behaviour 12) must not reach the tests sharing `pair`.
    current = start_runtime(set_values=(*FAST_PROBES, "server.log.verbose=1"))
    repository = _repository(current)
    server_log = Path(current.replicas[0].log)
    supervisor_log = workspace.Workspace(current.work_dir).supervisor_log
    candidate = repository / "linear" / "2"
    candidate.mkdir()
    (candidate / "model.onnx").write_bytes(b"not an onnx model")
    config = {"max_batch_size": 8, "version_policy": {"specific": {"versions": [2]}}}
    expected = e2e.reference_output(repository / "linear" / "1" / "model.onnx")
    with _client(current) as client:
        with pytest.raises(errors.PermanentError):
            client.load("linear", config=config)
        probes, supervisor_seen = _readiness_probes(server_log), len(supervisor_log.read_text())
        deadline = time.monotonic() + 30
        while _readiness_probes(server_log) < probes + 3:  # three readiness periods after the failure
            assert time.monotonic() < deadline, "no three readiness probes within 30 s of the failed load"
            time.sleep(0.2)
        assert client.model_ready("linear", 1)
        assert np.allclose(client.infer("linear", {"input": e2e.BATCH})["output"], expected, rtol=1e-5)
    assert control.status(current.work_dir).replicas[0].state == State.READY
    assert "replica 0: NotReady" not in supervisor_log.read_text()[supervisor_seen:]


def test_pod_without_its_committed_models_is_kept_unready_until_they_load(start_runtime):
    # Without the agent, which would load the committed model itself (tests/runtime/test_agent.py):
    # this is the readiness check's part alone.
    current = start_runtime(set_values=(*FAST_PROBES, "agent.enabled=false"))
    repository = _repository(current)
    # The promotion tool commits `mlp` version 1: this replica has not loaded it yet.
    config = repository / "mlp" / "config.pbtxt"
    config.write_text(config.read_text() + "version_policy { specific { versions: [ 1 ] } }\n")
    state = json.loads((repository / "current.json").read_text())
    digest = checksums.version_digest(repository / "mlp" / "1")  # the launcher verifies it at restart
    state["models"]["mlp"] = {"version": 1, "digest": digest, "committedAt": "2026-11-25T00:00:00Z"}
    (repository / "current.json").write_text(json.dumps(state))
    _wait_for(current.work_dir, lambda s: s.replicas[0].state == State.NOT_READY, 10, "replica not NotReady")
    with _client(current) as client:
        client.load("mlp")
    _wait_for(current.work_dir, lambda s: s.replicas[0].state == State.READY, 10, "replica not Ready again")
    # A restart converges: the launcher loads both committed models before the pod is Ready.
    os.kill(control.status(current.work_dir).replicas[0].pid, signal.SIGKILL)
    restarted = _wait_for(
        current.work_dir,
        lambda s: s.replicas[0].restarts >= 1 and s.replicas[0].state == State.READY,
        60,
        "no restart",
    )
    with _client(restarted) as client:
        assert client.model_ready("mlp", 1) and client.model_ready("linear", 1)


def test_hung_replica_is_restarted_by_the_liveness_probe(start_runtime):
    # A stopped process ignores SIGTERM: the restart waits the whole grace period, kept short here.
    short_grace = ("server.exitTimeoutSeconds=1", "rollout.terminationGracePeriodSeconds=3")
    current = start_runtime(set_values=FAST_PROBES + short_grace)
    # The launcher execs tritonserver, so the replica's pid is the server itself.
    os.kill(current.replicas[0].pid, signal.SIGSTOP)  # alive but unresponsive: only liveness can tell
    restarted = _wait_for(
        current.work_dir, lambda s: s.replicas[0].restarts >= 1, 30, "liveness did not restart it"
    )
    assert "liveness probe failed" in restarted.replicas[0].last_restart
    _wait_for(
        current.work_dir, lambda s: s.replicas[0].state == State.READY, 60, "restarted replica not Ready"
    )


def test_down_leaves_no_process_behind(start_runtime):
    current = start_runtime(replicas=2)
    pids = [r.pid for r in current.replicas]
    control.down(current.work_dir)
    # down() SIGKILLs what is left; the kernel tears those processes down just after it returns.
    deadline = time.monotonic() + 10
    while (alive := [pid for pid in pids if _group_alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive == [], f"process groups {alive} survived down"
    assert control.status(current.work_dir).running is False


def test_second_up_in_the_same_folder_is_refused(start_runtime):
    current = start_runtime()
    with pytest.raises(errors.InputError, match="already running here"):
        control.up("local", work_dir=current.work_dir)


def test_failing_replica_is_reported_failed_with_its_reason(start_runtime, tmp_path):
    # A config naming an input the graph does not have: `up`'s checks pass (the folder is there),
    # the backend refuses the model, Triton exits, and the replica fails after three starts.
    broken = tmp_path / "broken-repo"
    onnx_models.linear(broken / "linear" / "1" / "model.onnx")
    (broken / "linear" / "config.pbtxt").write_text(
        'platform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
        'input [ { name: "nope" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        'output [ { name: "output" data_type: TYPE_FP32 dims: [ 2 ] } ]\n'
    )
    current = start_runtime(repository=broken)
    assert current.failed
    # The line that says why (not whatever the log ended with) is kept apart from the short reason.
    (replica,) = current.replicas
    assert "unexpected inference input 'nope', allowed inputs are: input" in replica.log_line, (
        replica.log_line
    )
    assert replica.reason == "exited with code 1, 3 failed starts in a row"


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
