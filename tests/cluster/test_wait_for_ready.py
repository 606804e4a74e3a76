"""`--wait-for-ready SECONDS` with `--service`: a promotion started with its Service (a first
install, an Argo CD sync: the Job and the Deployment in one apply) waits for a ready pod, saying who
is not ready, instead of failing for good; past the wait it exits 1 having changed nothing. And
SIGTERM during that wait ends the process at once (exit 143): as a container's PID 1 it would
otherwise be ignored until the grace period ran out."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.fake_apiserver import FakeApiServer, endpoint_slice, pod_endpoint
from tests.conftest import ROOT
from tritonops import errors
from tritonops.cluster import endpoints


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll the fake every 50 ms, so that a test waits a few polls, not a few times 5 s."""
    monkeypatch.setattr(endpoints, "POLL_S", 0.05)


def not_ready_then_ready(fake: FakeApiServer, monkeypatch: pytest.MonkeyPatch, *, after: int) -> None:
    """The Service's pod is not ready for the first `after` reads of its slices, then ready."""
    fake.slices["ml"] = [endpoint_slice("t", "triton", [pod_endpoint("triton-0", "127.0.0.1", ready=False)])]
    answer = fake.answer

    def counted(path: str) -> tuple[int, dict]:
        if len(fake.requests) > after:
            fake.slices["ml"] = [endpoint_slice("t", "triton", [pod_endpoint("triton-0", "127.0.0.1")])]
        return answer(path)

    monkeypatch.setattr(fake, "answer", counted)


def test_a_pod_that_becomes_ready_during_the_wait_is_used(
    run_cli, fake_api, kubeconfig, tmp_path, monkeypatch
):
    not_ready_then_ready(fake_api, monkeypatch, after=3)
    result = run_cli(
        "reconcile", "--service", "triton", "--repository", str(tmp_path), "--wait-for-ready", "60"
    )
    assert result.returncode == 0, result.stderr
    # It said who it waited for, and went on with the pod once ready.
    assert (
        "Service ml/triton: no ready endpoint yet (not ready: triton-0; terminating: none)" in result.stderr
    )
    assert "reconcile reconciled" in result.stdout and len(fake_api.requests) == 4


def test_the_wait_comes_from_the_environment_too(run_cli, fake_api, kubeconfig, tmp_path, monkeypatch):
    not_ready_then_ready(fake_api, monkeypatch, after=2)
    monkeypatch.setenv("TRITONOPS_WAIT_FOR_READY", "60")
    result = run_cli("reconcile", "--service", "triton", "--repository", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert len(fake_api.requests) == 3


def test_without_a_wait_no_ready_pod_fails_at_once(run_cli, fake_api, kubeconfig, tmp_path, monkeypatch):
    not_ready_then_ready(fake_api, monkeypatch, after=3)
    result = run_cli("reconcile", "--service", "triton", "--repository", str(tmp_path))
    assert result.returncode == 1 and len(fake_api.requests) == 1
    assert "no ready endpoint (not ready: triton-0; terminating: none); nothing was changed" in result.stderr
    assert "give --wait-for-ready SECONDS" in result.stderr


def test_a_pod_never_ready_exits_1_after_the_wait_saying_nothing_changed(
    run_cli, fake_api, kubeconfig, tmp_path
):
    fake_api.slices["ml"] = [
        endpoint_slice("t", "triton", [pod_endpoint("triton-0", "10.0.0.10", ready=False)])
    ]
    (tmp_path / "repo").mkdir()
    result = run_cli(
        "promote", "linear", "--version", "2", "--service", "triton", "--repository", str(tmp_path / "repo"),
        "--wait-for-ready", "0.5",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith(
        "tritonops: Service ml/triton: no ready endpoint after waiting 0.5 s (--wait-for-ready) "
        "(not ready: triton-0; terminating: none); nothing was changed"
    ), result.stderr
    assert len(fake_api.requests) > 1 and list((tmp_path / "repo").iterdir()) == []
    assert "Traceback" not in result.stderr


def test_a_slice_that_appears_during_the_wait_is_used(fake_api, kubeconfig, monkeypatch):
    answer = fake_api.answer

    def late(path: str) -> tuple[int, dict]:
        if len(fake_api.requests) > 2:
            fake_api.slices["ml"] = [endpoint_slice("t", "triton", [pod_endpoint("triton-0", "10.0.0.10")])]
        return answer(path)

    monkeypatch.setattr(fake_api, "answer", late)
    found = endpoints.discover("triton", wait_s=60)
    assert [endpoint.name for endpoint in found.ready] == ["triton-0"] and len(fake_api.requests) == 3


def test_a_refusal_is_not_waited_out(fake_api, kubeconfig):
    fake_api.fail_with = 403
    with pytest.raises(errors.InputError) as caught:
        endpoints.discover("triton", wait_s=60)
    assert "(403 Forbidden)" in str(caught.value) and len(fake_api.requests) == 1


def test_an_api_failing_past_the_wait_is_temporary_and_says_nothing_changed(fake_api, kubeconfig):
    fake_api.fail_with = 500
    with pytest.raises(errors.TemporaryError) as caught:
        endpoints.discover("triton", wait_s=0.3)
    assert str(caught.value).endswith(
        "still so after waiting 0.3 s (--wait-for-ready); nothing was changed"
    ), str(caught.value)
    assert len(fake_api.requests) > 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "argument --wait-for-ready: '-1': give 0 or more seconds"),
        ("soon", "argument --wait-for-ready: 'soon' is not a number of seconds"),
    ],
    ids=["negative", "not-a-number"],
)
def test_a_bad_wait_is_refused(run_cli, tmp_path, value, message):
    result = run_cli(
        "reconcile", "--service", "triton", "--repository", str(tmp_path), "--wait-for-ready", value
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_sigterm_during_the_wait_exits_143_at_once(fake_api, kubeconfig, tmp_path):
    # A real process, as the Job's PID 1 is: its SIGTERM (pod deleted, deadline) must end the wait.
    fake_api.slices["ml"] = [
        endpoint_slice("t", "triton", [pod_endpoint("triton-0", "10.0.0.10", ready=False)])
    ]
    command = [
        sys.executable, "-m", "tritonops.cli", "promote", "linear", "--version", "2",
        "--service", "triton", "--repository", str(tmp_path), "--wait-for-ready", "600",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        seen = [process.stderr.readline()]  # the first "waiting" line: it is in the wait
        assert "no ready endpoint yet" in seen[0], seen
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)  # far less than the 600 s wait
    finally:
        process.kill()
    assert process.returncode == 143, [*seen, stderr]
    assert stderr.splitlines()[-1] == (
        "tritonops: terminated (SIGTERM) before the promote started; nothing was changed"
    )
    assert "Traceback" not in stderr and stdout == ""


def test_main_leaves_the_sigterm_handler_as_it_found_it(run_cli, tmp_path: Path):
    # main() run in-process (the tests, an orchestrator) puts back the caller's handler.
    before = signal.getsignal(signal.SIGTERM)
    run_cli("status", "--repository", str(tmp_path))
    assert signal.getsignal(signal.SIGTERM) is before
