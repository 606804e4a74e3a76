"""A loopback HTTP server that answers every GET with a text page a callable returns: the tests'
stand-ins for a metrics endpoint (Triton's page, kube-state-metrics)."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator

from tritonops.triton import server as triton_server


@contextlib.contextmanager
def serve(page: Callable[[], bytes]) -> Iterator[str]:
    """Serve `page()` (fresh on every request) on a free loopback port; yields host:port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((triton_server.LOOPBACK, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{triton_server.LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
