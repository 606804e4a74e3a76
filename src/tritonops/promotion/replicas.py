"""The replicas a promotion addresses one by one (a load sent through a Service reaches only one of
them), and the restricted-API key that opens their repository API.

A replica comes from an endpoint list (`--endpoints`) here; the CLI builds them from the local
runtime's status, and the cluster issue adds EndpointSlice discovery behind the same type.

An endpoint is `http://HOST:PORT` (or `HOST:PORT`), with `?grpc=PORT` or `?grpc=HOST:PORT` when the
replica's gRPC port is known: repository calls then go over gRPC, which does not hold the HTTP
workers that probes and inference need while a model loads (tests/triton/test_slow_load.py).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tritonops import errors
from tritonops.triton import client as triton_client

KEY_ENV = "TRITONOPS_API_KEY"
DEFAULT_HEADER = "admin-key"
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Replica:
    """One Triton server: a name for messages, its HTTP host:port and, when known, its gRPC host:port."""

    name: str
    http_address: str
    grpc_address: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"name": self.name, "http": self.http_address, "grpc": self.grpc_address}


@dataclass(frozen=True)
class ApiKey:
    """The restricted-API header and its key (never printed: repr shows only where it came from)."""

    header: str | None
    key: str | None = field(default=None, repr=False)
    source: str = "none"


def from_endpoints(endpoints: str | Iterable[str]) -> tuple[Replica, ...]:
    """Replicas from `http://h:8000?grpc=8001,http://h2:8000,...` (a string or a list of entries)."""
    entries = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    entries = [entry.strip() for entry in entries if entry.strip()]
    if not entries:
        raise errors.InputError("--endpoints: no endpoint given; pass http://HOST:PORT[?grpc=PORT],...")
    replicas = tuple(_replica(entry) for entry in entries)
    seen: set[str] = set()
    for replica in replicas:
        if replica.http_address in seen:
            raise errors.InputError(f"--endpoints: {replica.http_address} is listed twice")
        seen.add(replica.http_address)
    return replicas


def _replica(entry: str) -> Replica:
    parsed = urllib.parse.urlsplit(entry if "://" in entry else f"http://{entry}")
    if parsed.scheme not in ("http", "") or not parsed.hostname or parsed.path not in ("", "/"):
        raise errors.InputError(
            f"--endpoints: {entry!r} is not an endpoint; write http://HOST:PORT[?grpc=PORT] (plain HTTP, "
            "no path)"
        )
    try:
        port = parsed.port
    except ValueError:
        port = None
    if port is None:
        raise errors.InputError(f"--endpoints: {entry!r} has no valid port; write http://HOST:PORT")
    if parsed.hostname.endswith((".svc", ".svc.cluster.local")) or ".svc." in parsed.hostname:
        # A Service spreads calls over its pods: a load would reach one replica, a check another.
        raise errors.InputError(
            f"--endpoints: {parsed.hostname} is a Kubernetes Service name, which sends each call to one "
            "pod it picks; list every pod's own address (kubectl get endpointslices -l "
            "kubernetes.io/service-name=SERVICE, or port-forward each pod)"
        )
    http_address = f"{parsed.hostname}:{port}"
    query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"grpc"})
    if unknown:
        raise errors.InputError(f"--endpoints: {entry!r}: unknown option {unknown[0]!r} (only ?grpc=PORT)")
    grpc_address = None
    if "grpc" in query:
        grpc = query["grpc"][-1]
        grpc_address = grpc if ":" in grpc else f"{parsed.hostname}:{grpc}"
        if not grpc_address.rsplit(":", 1)[1].isdigit():
            raise errors.InputError(f"--endpoints: {entry!r}: grpc={grpc!r} is not a port or HOST:PORT")
    return Replica(http_address, http_address, grpc_address)


def api_key(
    header: str | None = DEFAULT_HEADER,
    key_file: Path | None = None,
    *,
    environ: dict[str, str] | None = None,
) -> ApiKey:
    """The key from `key_file` when given, else from $TRITONOPS_API_KEY, else none (an open API)."""
    env = os.environ if environ is None else environ
    if key_file is not None:
        try:
            key = Path(key_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise errors.InputError(
                f"--api-key-file {key_file}: cannot read it ({error.strerror or error})"
            ) from error
        if not key:
            raise errors.InputError(f"--api-key-file {key_file}: the file is empty")
        return ApiKey(header, key, f"file {key_file}")
    if env.get(KEY_ENV, "").strip():
        return ApiKey(header, env[KEY_ENV].strip(), f"${KEY_ENV}")
    return ApiKey(header, None)


def connect(replica: Replica, key: ApiKey, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> triton_client.Client:
    """A client for `replica`: repository calls over gRPC when its gRPC address is known."""
    return triton_client.Client(
        replica.http_address,
        grpc_address=replica.grpc_address,
        api_header=key.header,
        api_key=key.key,
        timeout_s=timeout_s,
    )


def names(replicas: Sequence[Replica]) -> str:
    return ", ".join(replica.name for replica in replicas)
