"""Readiness check: the server is live and every committed model version is ready.

    python3 ready.py --port 8000 [--committed-state FILE] [--model NAME ...]

It does not use `/v2/health/ready`: with strict readiness that endpoint stays 400 after one
failed candidate load until restart, which would pull every pod out of the Service. Instead it
asks for the exact committed versions, so a candidate that fails to load leaves the pod ready
(its committed version still serves) and a pod restarted without its committed models stays out.
Exit 0 ready, 1 not ready (the message lands in the pod's events).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import committed_state  # noqa: E402


def _status(url: str, timeout: float) -> int | str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))


def _endpoints(options: argparse.Namespace) -> list[str]:
    paths = ["/v2/health/live"]
    if options.committed_state:
        committed = committed_state.read(options.committed_state)
        paths += [f"/v2/models/{name}/versions/{version}/ready" for name, version in sorted(committed.items())]
    paths += [f"/v2/models/{name}/ready" for name in options.model]
    return paths


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ready")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--committed-state")
    parser.add_argument("--model", action="append", default=[])
    options = parser.parse_args(argv)
    try:
        paths = _endpoints(options)
    except committed_state.CommittedStateError as error:
        print(f"not ready: {error}")
        return 1
    base = f"http://{options.host}:{options.port}"
    # One deadline for all calls: the kubelet's timeoutSeconds covers the whole check, Python's
    # start-up included, so keep half a second back for it and for printing the reason.
    deadline = time.monotonic() + max(0.5, options.timeout - 0.5)
    failures = []
    for path in paths:
        status = _status(base + path, max(0.1, deadline - time.monotonic()))
        if status != 200:
            failures.append((path, status))
    if failures:
        print("not ready: " + "; ".join(f"{path} -> {status}" for path, status in failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
