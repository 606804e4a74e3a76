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

The whole check ends inside the kubelet's `timeoutSeconds` (`--timeout`), counted from when the
process was created, not from when Python got to run this file: interpreter start-up on a busy
node takes a good part of a second, and a check that started its clock late answered after the
kubelet had given up. The process's age comes from /proc (its start time against the system's
uptime); where that cannot be read, a fixed margin is kept back instead. The endpoints are asked
at once, each with what is left of the budget, so one that does not answer cannot starve the rest.

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


# Kept back from the budget for printing the verdict and exiting.
EXIT_MARGIN_S = 0.25
# What start-up is assumed to have taken where the process's age cannot be read from /proc.
STARTUP_MARGIN_S = 0.5


def _age() -> float | None:
    """Seconds since this process was created (at fork: a shell that execs Python counts too), from
    /proc/self/stat's start time and /proc/uptime; None where they cannot be read or disagree."""
    try:
        with open("/proc/self/stat", encoding="utf-8", errors="replace") as handle:
            stat = handle.read()
        with open("/proc/uptime", encoding="ascii") as handle:
            uptime = float(handle.read().split()[0])
        # Field 22 (starttime, in clock ticks since boot); the fields after the ")" of the command
        # name start at field 3.
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
        age = uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return age if age >= 0 else None


def _process_start(timeout: float) -> float:
    """The monotonic time this process was created; where /proc cannot tell (or tells an age the
    kubelet would not have waited for), now less a typical start-up."""
    now = time.monotonic()
    age = _age()
    if age is None or age >= timeout:
        return now - STARTUP_MARGIN_S
    return now - age


def _statuses(base: str, paths: list[str], deadline: float) -> dict[str, int | str]:
    """Each path's status code (or why there is none), all asked at once and given up on at the
    deadline. A request still running then is left behind in its daemon thread (see the end)."""
    results: dict[str, int | str] = {}

    def ask(path: str) -> None:
        results[path] = _status(base + path, max(0.01, deadline - time.monotonic()))

    threads = [threading.Thread(target=ask, args=(path,), daemon=True) for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    answered = dict(results)
    return {path: answered.get(path, "timed out (no answer within the probe's timeout)") for path in paths}


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


def _acceptable(records: dict[str, committed_state.ModelRecord]) -> dict[str, list[int]]:
    """{model: the versions any one of which, ready, makes the model ready}: the committed version,
    and while a commit is pending (current.json names it, between the commit's first and last
    write, or after a crash until `finalize`) the pending version too.

    Which of the two is in force depends on config.pbtxt (committed_state.effective_record), but
    the probe does not read it: that would be a second read from a possibly stalled shared mount
    inside the probe's budget, and the local copy cannot stand in for it. Accepting either is safe:
    the promotion tool loads the candidate beside the committed version before it writes anything,
    so while `pending` is set both are the versions this pod is meant to serve, and a pod that
    restarted mid-commit was started by the launcher on the effective one.
    """
    return {
        name: sorted({record.version} | ({record.pending.version} if record.pending else set()))
        for name, record in records.items()
    }


def _committed(path: str, cache: str | None, timeout: float) -> tuple[dict[str, list[int]], str]:
    """{model: acceptable versions} from the shared record, or from the local copy when the record
    does not answer or is unreadable; the second item says which copy was used and why ('' for the
    record)."""
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
            _mark_fallback(cache, False)
            return _acceptable(records), note
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
    _mark_fallback(cache, True)
    return _acceptable(copy), note


# Beside the local copy while the check answers from it: the agent exports it (tritonops_readiness_fallback).
FALLBACK_MARKER = "readiness-fallback"


def _mark_fallback(cache: str | None, on: bool) -> None:
    """Create or remove the fallback marker beside the local copy; best effort, never a verdict."""
    if not cache:
        return
    marker = os.path.join(os.path.dirname(cache) or ".", FALLBACK_MARKER)
    try:
        if on:
            with open(marker, "a", encoding="utf-8"):
                pass
        elif os.path.exists(marker):
            os.unlink(marker)
    except OSError:
        pass


def main(argv: list[str], *, whole_process: bool = False) -> int:
    """The check. Its budget counts from the process's creation with `whole_process` (the script),
    else from now (a caller in another program)."""
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
    # One deadline for the whole check, counted from the process's creation: the kubelet's
    # timeoutSeconds covers Python's start-up too. Reading the record gets at most half of what is
    # left, so the HTTP calls always keep time of their own.
    started = _process_start(options.timeout) if whole_process else time.monotonic()
    deadline = started + max(0.1, options.timeout - EXIT_MARGIN_S)
    paths = ["/v2/health/live"]
    # Groups of paths of which one answering 200 is enough (a model's committed or pending version).
    either: list[list[str]] = []
    note = ""
    if options.committed_state:
        read_timeout = max(0.0, min(options.read_timeout, (deadline - time.monotonic()) / 2))
        try:
            committed, note = _committed(options.committed_state, options.state_cache, read_timeout)
        except NotReady as error:
            print(f"not ready: {error}")
            return 1
        for name, versions in sorted(committed.items()):
            either.append([f"/v2/models/{name}/versions/{version}/ready" for version in versions])
    either += [[f"/v2/models/{name}/ready"] for name in options.model]
    base = f"http://{options.host}:{options.port}"
    statuses = _statuses(base, paths + [path for group in either for path in group], deadline)
    failures = [(path, statuses[path]) for path in paths if statuses[path] != 200]
    for group in either:
        if all(statuses[path] != 200 for path in group):
            failures += [(path, statuses[path]) for path in group]
    if failures:
        print("not ready: " + "; ".join(f"{path} -> {status}" for path, status in failures))
        if note:
            print(f"({note})")
        return 1
    if note:
        print(f"ready: {note}")
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:], whole_process=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: skip interpreter shutdown, which has nothing to gain from a reader thread stuck
    # on a hung mount. The kernel's exit kills it (NFS waits are killable since Linux 2.6.25).
    os._exit(code)
