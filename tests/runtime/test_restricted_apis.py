"""The chart's restricted APIs (K7) on the real Triton 2.51 through the local runtime: the rendered
protocol list reaches `--http-restricted-api`/`--grpc-restricted-protocol` through the launcher,
and Triton refuses logging, shared-memory, trace and repository calls without the key while
health stays open. Also what `up` says about the NGC entrypoint this machine does not have (K1)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.runtime.conftest import FAST_PROBES, free_port_offset
from tritonops.runtime import control
from tritonops.triton import server as triton_server

RESTRICTED = [
    ("GET", "/v2/logging", None),
    ("POST", "/v2/logging", {"log_verbose_level": 1}),
    ("POST", "/v2/systemsharedmemory/region/x/register", {"key": "/x", "offset": 0, "byte_size": 8}),
    ("GET", "/v2/systemsharedmemory/status", None),
    ("GET", "/v2/trace/setting", None),
    ("POST", "/v2/trace/setting", {"trace_level": ["OFF"]}),
    ("POST", "/v2/repository/index", None),
]
OPEN = [("GET", "/v2/health/live", None), ("GET", "/v2/health/ready", None)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One replica of the local render, and what `up` printed while starting it."""
    work_dir = tmp_path_factory.mktemp("restricted") / "work"
    said: list[str] = []
    current = control.up(
        "local",
        work_dir=work_dir,
        replicas=1,
        port_offset=free_port_offset(1),
        set_values=FAST_PROBES,
        progress=said.append,
    )
    yield current, said
    control.down(work_dir)


def _status(current, method: str, path: str, body, key: str | None) -> int:
    request = urllib.request.Request(
        current.replicas[0].url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={current.api_header: key} if key else {},
    )
    try:
        with triton_server.LOOPBACK_OPENER.open(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.mark.parametrize(("method", "path", "body"), RESTRICTED, ids=[f"{m} {p}" for m, p, _ in RESTRICTED])
def test_restricted_http_api_needs_the_key(server, method, path, body):
    current, _ = server
    assert _status(current, method, path, body, None) == 403
    assert _status(current, method, path, body, "not-the-key") == 403
    # With the key Triton handles the call (the shared-memory region does not exist: 4xx/5xx, not 403).
    assert _status(current, method, path, body, current.api_key()) != 403


@pytest.mark.parametrize(("method", "path", "body"), OPEN, ids=[f"{m} {p}" for m, p, _ in OPEN])
def test_health_stays_open_for_the_probes(server, method, path, body):
    current, _ = server
    assert _status(current, method, path, body, None) == 200


def test_restricted_grpc_protocol_needs_the_key(server):
    current, _ = server
    # Over gRPC Triton expects the header as triton-grpc-protocol-<header>.
    header = {f"triton-grpc-protocol-{current.api_header}": current.api_key()}
    with grpcclient.InferenceServerClient(f"127.0.0.1:{current.replicas[0].ports['grpc']}") as client:
        with pytest.raises(InferenceServerException, match="restricted"):
            client.get_log_settings()
        assert "log_verbose_level" in client.get_log_settings(headers=header, as_json=True)["settings"]
        assert client.is_server_live()


def test_up_says_the_ngc_entrypoint_was_skipped_here(server):
    _, said = server
    assert any(
        line.startswith(
            "entrypoint /opt/nvidia/nvidia_entrypoint.sh skipped: it does not exist on this machine"
        )
        for line in said
    ), said
