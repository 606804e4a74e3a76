"""Readiness check: the server is live and every committed model version is ready.

    python3 ready.py --port 8000 [--committed-state FILE [--state-cache FILE] [--read-timeout S]] [--model NAME ...]

It does not use `/v2/health/ready`: with strict readiness that endpoint stays 400 after one
failed candidate load until restart, which would pull every pod out of the Service. Instead it
asks for the exact committed versions, so a candidate that fails to load leaves the pod ready
(its committed version still serves) and a pod restarted without its committed models stays out.

The record lives on the shared repository (NFS, mounted `hard`): a stalled server would hang a
plain read, and with it every pod's probe at once, emptying the Service while the models still
serve. So the record is read in a daemon thread with a short deadline (`--read-timeout`, well
inside the probe's own timeout), and the last good record is kept in the pod's local copy
(`--state-cache`, on the pod's /tmp emptyDir; the launcher writes it at start). A record that does
not answer in time or is unreadable (malformed, partially written) is replaced by that copy, and
the output says so; with no copy the pod is not ready. A good record refreshes the copy.

Exit 0 ready, 1 not ready (the message lands in the pod's events).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import committed_state  # noqa: E402


class NotReady(Exception):
    """The committed state cannot be known: neither the shared record nor a local copy."""


def _status(url: str, timeout: float) -> int | str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))


def _read_bounded(path: str, timeout: float) -> tuple[bool, bytes | None, str]:
    """(answered, content or None when absent, why not) for the shared record, within `timeout`.

    The read runs in a daemon thread that is never joined without a bound: a read from a hung
    `hard` NFS mount cannot be interrupted, so the process leaves it behind and exits with
    os._exit (see the end of this file).
    """
    outcome: dict[str, object] = {}
    done = threading.Event()

    def read() -> None:
        try:
            outcome["data"] = committed_state.read_bytes(path)
        except OSError as error:
            outcome["error"] = error
        finally:
            done.set()

    threading.Thread(target=read, name="read-committed-state", daemon=True).start()
    if not done.wait(timeout):
        return False, None, f"{path}: no answer within {timeout:.1f} s (is the shared repository stalled?)"
    if "error" in outcome:
        error = outcome["error"]
        return False, None, f"{path}: cannot read: {getattr(error, 'strerror', None) or error}"
    data = outcome["data"]
    return True, data if isinstance(data, bytes) else None, ""


def _committed(path: str, cache: str | None, timeout: float) -> tuple[dict[str, int], str]:
    """{model: version} from the shared record, or from the local copy when the record does not
    answer or is unreadable; the second item says which copy was used and why ('' for the record)."""
    answered, data, why = _read_bounded(path, timeout)
    if answered:
        try:
            records = committed_state.parse(data, path) if data is not None else {}
        except committed_state.CommittedStateError as error:
            why = str(error)
        else:
            note = ""
            if cache:
                try:
                    written = committed_state.write_copy(
                        cache, data if data is not None else committed_state.EMPTY_RECORD
                    )
                    if not written:
                        os.utime(cache)  # its age now says when the record was last confirmed
                except OSError as error:
                    note = f"cannot refresh the local copy {cache}: {error}"
            return {name: record.version for name, record in records.items()}, note
    if not cache:
        raise NotReady(why)
    try:
        with open(cache, "rb") as handle:
            copy = committed_state.parse(handle.read(), cache)
        age = time.time() - os.stat(cache).st_mtime
    except FileNotFoundError:
        raise NotReady(f"{why}; and no last good copy at {cache}") from None
    except (OSError, committed_state.CommittedStateError) as error:
        raise NotReady(f"{why}; and the last good copy is unusable: {error}") from None
    note = f"using the last good committed state {cache} (confirmed {age:.0f} s ago): {why}"
    return {name: record.version for name, record in copy.items()}, note


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ready")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--committed-state")
    parser.add_argument("--state-cache", help="the pod-local copy of the last good record")
    parser.add_argument(
        "--read-timeout", type=float, default=1.0, help="seconds to wait for the shared record"
    )
    parser.add_argument("--model", action="append", default=[])
    options = parser.parse_args(argv)
    # One deadline for the whole check: the kubelet's timeoutSeconds covers it, Python's start-up
    # included, so keep half a second back for that and for printing the reason. Reading the
    # record gets at most half of it, so the HTTP calls always keep time of their own.
    deadline = time.monotonic() + max(0.5, options.timeout - 0.5)
    paths = ["/v2/health/live"]
    note = ""
    if options.committed_state:
        read_timeout = min(options.read_timeout, (deadline - time.monotonic()) / 2)
        try:
            committed, note = _committed(options.committed_state, options.state_cache, read_timeout)
        except NotReady as error:
            print(f"not ready: {error}")
            return 1
        paths += [
            f"/v2/models/{name}/versions/{version}/ready" for name, version in sorted(committed.items())
        ]
    paths += [f"/v2/models/{name}/ready" for name in options.model]
    base = f"http://{options.host}:{options.port}"
    failures = []
    for path in paths:
        status = _status(base + path, max(0.1, deadline - time.monotonic()))
        if status != 200:
            failures.append((path, status))
    if failures:
        print("not ready: " + "; ".join(f"{path} -> {status}" for path, status in failures))
        if note:
            print(f"({note})")
        return 1
    if note:
        print(f"ready: {note}")
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: skip interpreter shutdown, which has nothing to gain from a reader thread stuck
    # on a hung mount. The kernel's exit kills it (NFS waits are killable since Linux 2.6.25).
    os._exit(code)
