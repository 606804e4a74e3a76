"""A FAKE Kubernetes API server: just enough of `GET /apis/discovery.k8s.io/v1/namespaces/NS/
endpointslices?labelSelector=...` for the real `kubernetes` client to list EndpointSlices from it.

No cluster runs on these machines, so discovery is tested against this fake; everything on the
client side (kubeconfig loading, the request, JSON decoding into models, paging, errors) is the
real client. The fake filters by namespace and by an exact `key=value` label selector, pages with
`continue` tokens when told to, and answers with a status code on demand (403, 404, 500).
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

PATH = re.compile(r"^/apis/discovery\.k8s\.io/v1/namespaces/([^/]+)/endpointslices$")
TOKEN = "fake-token"


@dataclass
class FakeApiServer:
    """Serves `slices` (namespace -> list of EndpointSlice dicts) on loopback; records each request."""

    slices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fail_with: int | None = None  # answer every request with this status
    page_size: int | None = None  # serve that many slices per page, with continue tokens
    requests: list[str] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)

    def start(self) -> FakeApiServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append(self.path)
                fake.authorizations.append(self.headers.get("Authorization", ""))
                status, body = fake.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        parsed = urllib.parse.urlsplit(path)
        match = PATH.match(parsed.path)
        if self.fail_with is not None:
            return self.fail_with, status_body(self.fail_with, "the fake was told to fail")
        if not match:
            return 404, status_body(404, f"the fake serves no {parsed.path}")
        namespace = match.group(1)
        query = urllib.parse.parse_qs(parsed.query)
        selector = query.get("labelSelector", [""])[0]
        key, _, value = selector.partition("=")
        items = [
            item
            for item in self.slices.get(namespace, [])
            if not selector or item["metadata"].get("labels", {}).get(key) == value
        ]
        start = int(query.get("continue", ["0"])[0])
        end = len(items) if self.page_size is None else start + self.page_size
        metadata: dict[str, Any] = {"resourceVersion": "1"}
        if end < len(items):
            metadata["continue"] = str(end)
        return 200, {
            "kind": "EndpointSliceList",
            "apiVersion": "discovery.k8s.io/v1",
            "metadata": metadata,
            "items": items[start:end],
        }


def status_body(code: int, message: str) -> dict[str, Any]:
    reasons = {403: "Forbidden", 404: "NotFound", 500: "InternalError"}
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reasons.get(code, "Unknown"),
        "code": code,
    }


def endpoint_slice(
    name: str,
    service: str,
    endpoints: list[dict[str, Any]],
    *,
    namespace: str = "ml",
    ports: tuple[tuple[str, int], ...] = (("http", 8000), ("grpc", 8001), ("metrics", 8002)),
    address_type: str = "IPv4",
) -> dict[str, Any]:
    """An EndpointSlice as the EndpointSlice controller writes it for `service`."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"} for port_name, port in ports],
    }


def pod_endpoint(
    pod: str,
    address: str,
    *,
    ready: bool | None = True,
    serving: bool | None = None,
    terminating: bool | None = None,
) -> dict[str, Any]:
    """One endpoint for `pod`; a condition left None is omitted (the API's unknown)."""
    conditions = {
        key: value
        for key, value in (("ready", ready), ("serving", serving), ("terminating", terminating))
        if value is not None
    }
    return {
        "addresses": [address],
        "conditions": conditions,
        "targetRef": {"kind": "Pod", "name": pod, "namespace": "ml"},
        "nodeName": "node-1",
    }


def write_kubeconfig(path: Path, server: str, *, namespace: str | None = None) -> Path:
    """A kubeconfig whose only context points at `server` with a bearer token."""
    context: dict[str, Any] = {"cluster": "fake", "user": "fake"}
    if namespace:
        context["namespace"] = namespace
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "fake", "user": {"token": TOKEN}}],
        "contexts": [{"name": "fake", "context": context}],
        "current-context": "fake",
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path
