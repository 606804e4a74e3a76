"""The readiness probe (charts/triton/files/ready.py), run for real against a tiny HTTP server."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from tests.chart.helpers import launcher_args, triton_container
from tritonops import errors

READY = Path(__file__).resolve().parents[2] / "charts" / "triton" / "files" / "ready.py"
LIVE = "/v2/health/live"


@dataclass
class FakeTriton:
    """Per-path status codes (default 404) and delays, set by the test; records requested paths."""

    port: int
    routes: dict[str, int] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each request
    release: threading.Event = field(default_factory=threading.Event)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeTriton

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up (the timeout test) is expected; keep the test output clean."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        fake = self.server.fake
        fake.arrivals.append(time.monotonic())
        fake.requests.append(self.path)
        delay = fake.delays.get(self.path, 0.0)
        if delay:
            fake.release.wait(delay)
        self.send_response(fake.routes.get(self.path, 404))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _start() -> tuple[_Server, threading.Thread]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = FakeTriton(port=server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread


def _stop(server: _Server, thread: threading.Thread) -> None:
    server.fake.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def triton() -> Iterator[FakeTriton]:
    server, thread = _start()
    try:
        yield server.fake
    finally:
        _stop(server, thread)


@dataclass
class Probe:
    returncode: int
    output: str
    elapsed: float


def probe(port: int, *options: str) -> Probe:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(READY), f"--port={port}", *options],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return Probe(result.returncode, result.stdout + result.stderr, time.monotonic() - started)


def probe_on_stalled_record(port: int, stalled_record: Path, cache: Path) -> Probe:
    """The probe with a shared record that never answers, a 0.5 s read bound and a local copy."""
    return probe(
        port,
        "--timeout=3",
        "--read-timeout=0.5",
        f"--committed-state={stalled_record}",
        f"--state-cache={cache}",
    )


def write_state(path: Path, models: dict[str, int], *, parents: bool = False) -> Path:
    document = {
        "apiVersion": "tritonops/v1",
        "kind": "CommittedState",
        "models": {
            name: {"version": version, "digest": "sha256:" + "0" * 64, "committedAt": "2026-11-25T22:00:00Z"}
            for name, version in models.items()
        },
    }
    if parents:
        path.parent.mkdir(parents=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_live_server_with_committed_versions_ready_is_ready(triton: FakeTriton, tmp_path: Path) -> None:
    state = write_state(tmp_path / "current.json", {"m": 2, "other": 7})
    triton.routes.update(
        {LIVE: 200, "/v2/models/m/versions/2/ready": 200, "/v2/models/other/versions/7/ready": 200}
    )

    result = probe(triton.port, f"--committed-state={state}")

    assert result.returncode == 0, result.output
    assert result.output == ""
    assert sorted(triton.requests) == sorted(
        [LIVE, "/v2/models/m/versions/2/ready", "/v2/models/other/versions/7/ready"]
    )


def test_committed_version_not_ready_makes_pod_unready_even_if_another_version_is(
    triton: FakeTriton, tmp_path: Path
) -> None:
    state = write_state(tmp_path / "current.json", {"m": 2})
    triton.routes.update(
        {
            LIVE: 200,
            "/v2/models/m/versions/1/ready": 200,
            "/v2/models/m/versions/2/ready": 400,
            "/v2/models/m/ready": 200,
        }
    )

    result = probe(triton.port, f"--committed-state={state}")

    assert result.returncode == 1
    assert result.output.strip() == "not ready: /v2/models/m/versions/2/ready -> 400"


def test_failed_candidate_version_keeps_pod_ready(triton: FakeTriton, tmp_path: Path) -> None:
    # A candidate (version 3) failed to load: with strict readiness /v2/health/ready stays 400 and the
    # candidate's version endpoint fails, but the committed version 2 still serves.
    state = write_state(tmp_path / "current.json", {"m": 2})
    triton.routes.update(
        {
            LIVE: 200,
            "/v2/health/ready": 400,
            "/v2/models/m/versions/2/ready": 200,
            "/v2/models/m/versions/3/ready": 400,
        }
    )

    result = probe(triton.port, f"--committed-state={state}")

    assert result.returncode == 0, result.output
    assert "/v2/health/ready" not in triton.requests
    assert "/v2/models/m/versions/3/ready" not in triton.requests


def test_pod_restarted_without_its_committed_model_is_not_ready(triton: FakeTriton, tmp_path: Path) -> None:
    state = write_state(tmp_path / "current.json", {"m": 2})
    triton.routes[LIVE] = 200  # the model endpoints answer the default 404

    result = probe(triton.port, f"--committed-state={state}")

    assert result.returncode == 1
    assert "/v2/models/m/versions/2/ready -> 404" in result.output


def test_server_not_live_is_not_ready(triton: FakeTriton) -> None:
    triton.routes[LIVE] = 503

    result = probe(triton.port)

    assert result.returncode == 1
    assert result.output.strip() == f"not ready: {LIVE} -> 503"


@pytest.mark.parametrize("how", ["stopped-server", "unused-port"])
def test_unreachable_server_is_not_ready(how: str) -> None:
    if how == "stopped-server":
        server, thread = _start()
        port = server.fake.port
        _stop(server, thread)
    else:
        port = unused_port()

    result = probe(port, "--timeout=1")

    assert result.returncode == 1
    assert result.output.startswith(f"not ready: {LIVE} -> ")
    assert "refused" in result.output.lower()


@pytest.mark.parametrize(("status", "expected_exit"), [(200, 0), (400, 1), (404, 1)])
def test_static_model_must_be_ready(triton: FakeTriton, status: int, expected_exit: int) -> None:
    triton.routes.update({LIVE: 200, "/v2/models/static/ready": status})

    result = probe(triton.port, "--model=static")

    assert result.returncode == expected_exit, result.output
    if expected_exit:
        assert result.output.strip() == f"not ready: /v2/models/static/ready -> {status}"


def test_every_failure_is_reported_in_one_message(triton: FakeTriton, tmp_path: Path) -> None:
    state = write_state(tmp_path / "current.json", {"a": 1, "b": 2})
    triton.routes.update(
        {LIVE: 200, "/v2/models/a/versions/1/ready": 200, "/v2/models/b/versions/2/ready": 400}
    )

    result = probe(triton.port, f"--committed-state={state}", "--model=s1", "--model=s2")

    assert result.returncode == 1
    assert result.output.strip() == (
        "not ready: /v2/models/b/versions/2/ready -> 400; "
        "/v2/models/s1/ready -> 404; /v2/models/s2/ready -> 404"
    )


def write_pending_state(path: Path, version: int, pending: int) -> Path:
    """`m` committed at `version` with a commit of `pending` under way (or cut short)."""
    digest = "sha256:" + "0" * 64
    entry = {"version": version, "digest": digest, "configDigest": digest}
    entry["pending"] = {"version": pending, "digest": digest, "configDigest": "sha256:" + "1" * 64}
    document = {"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {"m": entry}}
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.parametrize("ready_version", [2, 3], ids=["commit-point-not-reached", "commit-point-passed"])
def test_during_a_commit_either_the_committed_or_the_pending_version_ready_is_ready(
    triton: FakeTriton, tmp_path: Path, ready_version: int
) -> None:
    # The probe does not read config.pbtxt to learn which of the two is in force (see ready.py).
    state = write_pending_state(tmp_path / "current.json", version=2, pending=3)
    triton.routes.update({LIVE: 200, f"/v2/models/m/versions/{ready_version}/ready": 200})

    result = probe(triton.port, f"--committed-state={state}")

    assert result.returncode == 0, result.output


def test_during_a_commit_neither_version_ready_is_not_ready_naming_both(
    triton: FakeTriton, tmp_path: Path
) -> None:
    state = write_pending_state(tmp_path / "current.json", version=2, pending=3)
    triton.routes.update({LIVE: 200, "/v2/models/m/versions/2/ready": 400})

    result = probe(triton.port, f"--committed-state={state}")

    assert result.returncode == 1
    assert result.output.strip() == (
        "not ready: /v2/models/m/versions/2/ready -> 400; /v2/models/m/versions/3/ready -> 404"
    )


@pytest.mark.parametrize("with_state_option", [False, True], ids=["no-option", "state-file-absent"])
def test_without_committed_state_only_liveness_is_checked(
    triton: FakeTriton, tmp_path: Path, with_state_option: bool
) -> None:
    triton.routes[LIVE] = 200
    options = [f"--committed-state={tmp_path / 'current.json'}"] if with_state_option else []

    result = probe(triton.port, *options)

    assert result.returncode == 0, result.output
    assert triton.requests == [LIVE]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"apiVersion": "tritonops/v1", "kind": "Other", "models": {}}),
        json.dumps({"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {"m": {"version": 0}}}),
    ],
    ids=["not-json", "wrong-kind", "version-zero"],
)
def test_bad_committed_state_file_is_not_ready_with_reason(
    triton: FakeTriton, tmp_path: Path, content: str
) -> None:
    triton.routes[LIVE] = 200
    state = tmp_path / "current.json"
    state.write_text(content, encoding="utf-8")

    result = probe(triton.port, f"--committed-state={state}")

    assert result.returncode == 1
    assert result.output.startswith(f"not ready: {state}: ")
    assert triton.requests == []


def test_slow_endpoints_fail_within_one_timeout_budget(triton: FakeTriton, tmp_path: Path) -> None:
    # Three endpoints each hang for 3 s; the probe has one 1 s budget for all calls together, so it
    # must give up well before the kubelet's own timeout instead of taking 1 s per call.
    state = write_state(tmp_path / "current.json", {"m": 2})
    slow = [LIVE, "/v2/models/m/versions/2/ready", "/v2/models/static/ready"]
    triton.routes.update(dict.fromkeys(slow, 200))
    triton.delays.update(dict.fromkeys(slow, 3.0))

    result = probe(triton.port, "--timeout=1", f"--committed-state={state}", "--model=static")
    returned = time.monotonic()

    assert result.returncode == 1
    # One shared 1 s budget returns within it; a 1 s timeout per call would take 3 s. Every
    # endpoint is asked (at once), so the verdict names each one that did not answer.
    assert len(triton.arrivals) == len(slow)
    assert returned - triton.arrivals[0] < 2.0
    assert result.output.startswith("not ready: ")
    for path in slow:
        assert f"{path} -> " in result.output
    assert "timed out" in result.output


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (into the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("slow_start_s", [0.0, 1.5], ids=["prompt-start", "slow-start"])
def test_check_ends_within_the_timeout_counted_from_its_spawn(silent_port: int, slow_start_s: float) -> None:
    # The kubelet's timeoutSeconds runs from when it starts the command, so the check's own
    # start-up is part of the budget (seen: 4.91 s against timeoutSeconds 5 when the budget started
    # after Python's start-up). A shell that waits before it execs Python stands for a slow start
    # (a busy node, the runtime's exec): the process's age includes it. Here the behaviour is a
    # duration: the verdict must arrive inside the timeout, measured from the spawn.
    timeout = 3
    command = [sys.executable, str(READY), f"--port={silent_port}", f"--timeout={timeout}", "--model=a"]
    if slow_start_s:
        command = ["sh", "-c", f'sleep {slow_start_s}; exec "$@"', "sh", *command]

    spawned = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    elapsed = time.monotonic() - spawned

    assert result.returncode == 1
    assert result.stdout.startswith("not ready: /v2/health/live -> timed out"), result.stdout
    assert "/v2/models/a/ready -> timed out" in result.stdout
    assert elapsed < timeout, f"answered {elapsed:.2f} s after the spawn, past timeoutSeconds {timeout}"


# --- the shared record on a stalled or broken NFS: the pod's last good copy -----------------------


def _load_ready() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_ready", READY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def stalled_record(tmp_path: Path) -> Iterator[Path]:
    """A committed-state path whose open() blocks, as a read from a hung `hard` NFS mount does: a
    FIFO that nobody writes. Afterwards a writer end is opened and closed so that a reader left
    blocked in this process gets EOF and its thread ends."""
    path = tmp_path / "current.json"
    os.mkfifo(path)
    yield path
    with contextlib.suppress(OSError):  # ENXIO: no reader is left waiting
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def test_stalled_record_keeps_the_pod_ready_on_its_local_copy(
    triton: FakeTriton, stalled_record: Path, tmp_path: Path
) -> None:
    cache = write_state(tmp_path / "copy.json", {"m": 2})
    triton.routes.update({LIVE: 200, "/v2/models/m/versions/2/ready": 200})

    # The subprocess returning at all shows that the reader blocked in open() does not hold the
    # probe process open.
    result = probe_on_stalled_record(triton.port, stalled_record, cache)

    assert result.returncode == 0, result.output
    assert result.output.startswith(f"ready: using the last good committed state {cache}")
    assert f"{stalled_record}: no answer within 0.5 s" in result.output
    assert "/v2/models/m/versions/2/ready" in triton.requests


def test_stalled_record_check_returns_within_the_probe_timeout(
    triton: FakeTriton, stalled_record: Path, tmp_path: Path
) -> None:
    # Timed in-process, so Python's start-up is not part of the measured time: the check itself
    # must finish inside the kubelet's timeoutSeconds although the read never returns.
    ready = _load_ready()
    cache = write_state(tmp_path / "copy.json", {"m": 2})
    triton.routes.update({LIVE: 200, "/v2/models/m/versions/2/ready": 200})
    timeout = 2.0

    started = time.monotonic()
    code = ready.main(
        [
            f"--port={triton.port}",
            f"--timeout={timeout}",
            f"--committed-state={stalled_record}",
            f"--state-cache={cache}",
        ]
    )

    assert code == 0
    assert time.monotonic() - started < timeout


def test_stalled_record_without_a_local_copy_is_not_ready(
    triton: FakeTriton, stalled_record: Path, tmp_path: Path
) -> None:
    triton.routes[LIVE] = 200
    cache = tmp_path / "never-written.json"

    result = probe_on_stalled_record(triton.port, stalled_record, cache)

    assert result.returncode == 1
    assert result.output.strip() == (
        f"not ready: {stalled_record}: no answer within 0.5 s (is the shared repository stalled?); "
        f"and no last good copy at {cache}"
    )
    assert triton.requests == []


def test_local_copy_cannot_make_a_pod_without_its_models_ready(
    triton: FakeTriton, stalled_record: Path, tmp_path: Path
) -> None:
    cache = write_state(tmp_path / "copy.json", {"m": 2})
    triton.routes[LIVE] = 200  # version 2 answers the default 404

    result = probe_on_stalled_record(triton.port, stalled_record, cache)

    assert result.returncode == 1
    first, second = result.output.strip().splitlines()
    assert first == "not ready: /v2/models/m/versions/2/ready -> 404"
    assert second.startswith(f"(using the last good committed state {cache}")


GOOD = {"m": 2}
UNREADABLE = {
    "not-json": "{not json",
    "partially-written": '{"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {"m": {"vers',
    "wrong-kind": json.dumps({"apiVersion": "tritonops/v1", "kind": "Other", "models": {}}),
    "version-zero": json.dumps(
        {"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {"m": {"version": 0}}}
    ),
}


@pytest.mark.parametrize("content", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_unreadable_record_with_a_good_local_copy_stays_ready_and_says_so(
    triton: FakeTriton, tmp_path: Path, content: str
) -> None:
    state = tmp_path / "current.json"
    state.write_text(content, encoding="utf-8")
    cache = write_state(tmp_path / "copy.json", GOOD)
    before = cache.read_bytes()
    triton.routes.update({LIVE: 200, "/v2/models/m/versions/2/ready": 200})

    result = probe(triton.port, f"--committed-state={state}", f"--state-cache={cache}")

    assert result.returncode == 0, result.output
    assert result.output.startswith(f"ready: using the last good committed state {cache}")
    assert f": {state}: " in result.output
    assert cache.read_bytes() == before  # a bad record never replaces the good copy


@pytest.mark.parametrize("content", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_unreadable_record_without_a_local_copy_is_not_ready(
    triton: FakeTriton, tmp_path: Path, content: str
) -> None:
    state = tmp_path / "current.json"
    state.write_text(content, encoding="utf-8")
    cache = tmp_path / "never-written.json"
    triton.routes[LIVE] = 200

    result = probe(triton.port, f"--committed-state={state}", f"--state-cache={cache}")

    assert result.returncode == 1
    assert result.output.startswith(f"not ready: {state}: ")
    assert result.output.strip().endswith(f"and no last good copy at {cache}")
    assert triton.requests == []


def test_unusable_local_copy_is_named(triton: FakeTriton, stalled_record: Path, tmp_path: Path) -> None:
    cache = tmp_path / "copy.json"
    cache.write_text("{truncated", encoding="utf-8")
    triton.routes[LIVE] = 200

    result = probe_on_stalled_record(triton.port, stalled_record, cache)

    assert result.returncode == 1
    assert f"and the last good copy is unusable: {cache}: " in result.output


def test_newer_good_record_replaces_the_local_copy(triton: FakeTriton, tmp_path: Path) -> None:
    cache = write_state(tmp_path / "pod-tmp" / "copy.json", {"m": 1}, parents=True)
    state = write_state(tmp_path / "current.json", {"m": 2})
    triton.routes.update({LIVE: 200, "/v2/models/m/versions/2/ready": 200})

    result = probe(triton.port, f"--committed-state={state}", f"--state-cache={cache}")

    assert result.returncode == 0, result.output
    assert result.output == ""
    assert "/v2/models/m/versions/1/ready" not in triton.requests
    assert cache.read_bytes() == state.read_bytes()
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # written by rename, nothing left


def test_unchanged_good_record_marks_the_local_copy_confirmed(triton: FakeTriton, tmp_path: Path) -> None:
    state = write_state(tmp_path / "current.json", {"m": 2})
    cache = write_state(tmp_path / "copy.json", {"m": 2})
    an_hour_ago = time.time() - 3600
    os.utime(cache, (an_hour_ago, an_hour_ago))
    triton.routes.update({LIVE: 200, "/v2/models/m/versions/2/ready": 200})

    result = probe(triton.port, f"--committed-state={state}", f"--state-cache={cache}")

    assert result.returncode == 0, result.output
    assert cache.stat().st_mtime > an_hour_ago + 1800


def test_fallback_says_how_long_ago_the_copy_was_confirmed(
    triton: FakeTriton, stalled_record: Path, tmp_path: Path
) -> None:
    cache = write_state(tmp_path / "copy.json", {"m": 2})
    two_minutes_ago = time.time() - 120
    os.utime(cache, (two_minutes_ago, two_minutes_ago))
    triton.routes.update({LIVE: 200, "/v2/models/m/versions/2/ready": 200})

    result = probe_on_stalled_record(triton.port, stalled_record, cache)

    assert result.returncode == 0, result.output
    assert re.search(
        rf"using the last good committed state {re.escape(str(cache))} \(confirmed 12\d s ago\)",
        result.output,
    )


def test_absent_record_is_remembered_as_nothing_committed(triton: FakeTriton, tmp_path: Path) -> None:
    # No record means nothing is committed yet: a stall after that must not make the pod unready.
    cache = write_state(tmp_path / "copy.json", {"m": 1})
    triton.routes[LIVE] = 200

    result = probe(triton.port, f"--committed-state={tmp_path / 'current.json'}", f"--state-cache={cache}")

    assert result.returncode == 0, result.output
    assert json.loads(cache.read_text(encoding="utf-8"))["models"] == {}
    assert triton.requests == [LIVE]


def test_unwritable_local_copy_does_not_change_the_verdict(triton: FakeTriton, tmp_path: Path) -> None:
    state = write_state(tmp_path / "current.json", {"m": 2})
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    triton.routes.update({LIVE: 200, "/v2/models/m/versions/2/ready": 200})

    result = probe(triton.port, f"--committed-state={state}", f"--state-cache={blocker / 'copy.json'}")

    assert result.returncode == 0, result.output


# --- the chart passes the check what it needs -----------------------------------------------------


def test_chart_readiness_reads_the_launchers_local_copy_with_a_bound(rendered) -> None:
    command = triton_container(rendered["prod"])["readinessProbe"]["exec"]["command"]
    assert "--state-cache=/tmp/tritonops/committed-state.json" in command
    assert "--read-timeout=1" in command
    assert "--state-cache=/tmp/tritonops/committed-state.json" in launcher_args(rendered["prod"])


def test_chart_read_timeout_comes_from_values(render_with) -> None:
    item = render_with("dev", {"server": {"committedState": {"readTimeoutSeconds": 0.5}}})
    assert "--read-timeout=0.5" in triton_container(item)["readinessProbe"]["exec"]["command"]


def test_chart_refuses_a_read_timeout_that_leaves_no_time_for_triton(render_with) -> None:
    with pytest.raises(
        errors.RenderError, match=r"^server\.committedState\.readTimeoutSeconds: 3 is more than half"
    ):
        render_with(
            "dev",
            {
                "server": {"committedState": {"readTimeoutSeconds": 3}},
                "probes": {"readiness": {"timeoutSeconds": 5}},
            },
        )
