"""The per-pod agent: converge this pod's Triton to the committed state, and export what Triton
2.51 does not (the committed version, the versions served, load failures) as Prometheus metrics.

    python3 agent.py --repository DIR --committed-state FILE --port 8000
                     [--api-key-file F --api-header H] [--interval S] [--metrics-port 8003]
                     [--lock FILE] [--fallback-marker FILE] [--read-timeout S]
                     [--load-timeout S] [--backoff-max S] [--lock-stale-after S]
                     [--narrow-after S]

It runs beside Triton in every pod (the chart's `agent` container), standard library only, and
talks to its own Triton over loopback. Every `--interval` seconds it:

1. reads the promotion lock, then the committed state (current.json), from the shared repository,
   each in a daemon thread with a deadline (`--read-timeout`): a read from a stalled `hard` NFS
   mount cannot be interrupted, so it is left behind (and reused, never duplicated) while the
   loop carries on; the metrics keep the last good record. The lock first: a record read after
   "no lock" is at least as new as that answer, so a promotion that commits and releases the lock
   between the two reads is seen committed;
2. takes each model's effective record (committed_state.effective_records: a pending record whose
   config already reached config.pbtxt is the committed one) and its expected pin, the committed
   version plus the retained ones;
3. reads Triton's repository index: the state of every version Triton has seen (READY is what
   serves; the readiness of every committed version comes from it, so a sync makes one call to
   Triton whatever the number of models, and ends within two read timeouts plus CALL_TIMEOUT_S,
   plus one more for the config fetches of 5. below when some are due), and why one is
   UNAVAILABLE;
4. unless a live promotion lock exists, converges: committed versions that are not ready are
   loaded at once, and served versions that are not committed are narrowed away once they have
   been served and uncommitted for `--narrow-after` seconds (see below), in one load that sends
   the record's `config` with the pin it means as its config override. After an override, a
   plain load may keep it or read config.pbtxt again, depending on the case (behaviour 12,
   tests/triton/test_config_override.py), so a load always says the config it means; a
   hand-written record without `config` gets a plain load (Triton then reads config.pbtxt,
   unless an earlier override sticks: then the agent says so and backs off), which waits while
   the grace keeps a version: a plain load cannot say a pin;
5. and a model that serves its committed versions with another config than the record's `config`
   (a `tritonops promote --config` that did not reach this pod) gets the same load, under the same
   lock, backoff and turns, counted in the same metrics and reported as drift while it lasts.

Comparing configs (committed_state.config_differences): every field the record's config sets must
be served with the same value (recursively, lists element by element, int64 strings equal to
numbers); what it leaves out is Triton's to fill in, `version_policy` is compared by the versions
served, and KIND_AUTO serves as the kind Triton picked. Fetching a config is one call per model, so
the agent does it only when it cannot know: at start-up, when the record's config changed, after a
live lock (a promotion loads configs) or an unanswered index (Triton may have restarted), and every
CONFIG_RECHECK_S (a load by hand); after its own loads, which tell whether the load brought the
committed config. A config still different after the agent's own load of it (Triton rewrites a field
the record sets) is reported as drift and a failed load, and not loaded again until the record
changes: never a reload loop.

Why narrowing waits: a promotion widens every replica's pin to committed + candidate while it holds
the lock, and an agent that does not see the lock takes the candidate for drift. On NFS it may not
see it for up to a minute: with the default `lookupcache=all` a cached "no such file" for the lock
stays valid until the folder's cached attributes expire (`acdirmax`, 60 s), whatever the agent
does (the chart mounts with `lookupcache=positive`, but a PVC brought by the user may not). So a
served version that is not committed is narrowed away only after the agent has seen it served and
uncommitted at every sync for `--narrow-after` seconds on its own monotonic clock (longer than
that caching plus an interval): a promotion's lock shows up, or its commit does, before then. A
sync that cannot tell (the lock or the record unreadable, Triton's index unanswered) or sees a
live lock starts every such wait again. Until then the version counts as drift (it is) and a load
that the agent makes for another reason keeps it in the pin it sends.

Who owns which transition: the promotion tool, holding the lock, makes every step of a promotion
and of its rollback; the agent restores the committed state only while nobody holds the lock (and
narrows only after the grace, for a lock it may not see yet), so the two never fight. A lock whose holder is gone (same host and its pid dead, or a heartbeat that has
not changed for LOCK_STALE_S on the agent's own monotonic clock: never by comparing the holder's
timestamps with this pod's clock, which may disagree) counts as absent, and the agent exports that
it saw one. The lock's state is logged when it changes (held, stale, absent, and by whom). The agent never writes to
the repository: the chart mounts it read-only.

One load at a time per pod, in a worker thread with a deadline (`--load-timeout`), so that a slow
load blocks neither the sync loop nor the metrics: over HTTP a load holds one of Triton's HTTP
worker threads until it ends (behaviour 14), and several at once would leave probes and inference
waiting behind them. Models take turns (round robin), and a model is never loaded twice at once. A
failed load backs off per (model, version), doubling from twice the interval up to
`--backoff-max`, so a broken version is not hammered. Each action is one line on stderr.

Load failures are counted per (model, version): the agent's own failed loads, and failures it
observes in the index. Triton 2.51 keeps a version whose load failed in its repository index as
UNAVAILABLE with the error as `reason`, and keeps it there, unchanged, after later loads that
narrow the pin; a version narrowed away becomes UNAVAILABLE with reason "unloaded". So a failure
is an entry that turns UNAVAILABLE with another reason (or changes reason), compared with the
previous sync. What the index shows when the agent starts is its baseline, not a new failure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, NamedTuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import committed_state  # noqa: E402

# The promotion tool refreshes the lock's heartbeat every 5 s; one unchanged this long (on our own
# clock) has no live holder.
LOCK_STALE_S = 60.0
# Seconds a served version must stay uncommitted (seen so at every sync) before it is narrowed away:
# more than NFS lookup/attribute caching (60 s) plus an interval, so a promotion's lock is seen first.
NARROW_AFTER_S = 90.0
# Where the promotion tool keeps its lock, under the repository (never scanned by Triton).
LOCK_PATH = os.path.join(".tritonops", "promotion.lock")
# Triton's reason for a version a load narrowed away (or an unload): not a failure.
UNLOADED = "unloaded"
# Outcomes of the agent's own loads (tritonops_agent_loads_total{outcome}).
OUTCOMES = ("ok", "failed", "timeout")
# Seconds for the one call a sync makes to Triton (the repository index): it answers in milliseconds.
CALL_TIMEOUT_S = 5.0
# Seconds after which a served config that compared equal is fetched again although the record did
# not change: what only a fetch can show (a load by hand, a Triton restart between two syncs) costs
# one call per model every this long.
CONFIG_RECHECK_S = 600.0
# How a load that Triton took but that left the served config different from the record's is told.
STILL_DIFFERS = "Triton answered 200 but serves a config that differs from the committed one"
# Syncs a loop may miss before /healthz says the agent is stuck.
HEALTHY_SYNCS = 6
HEALTHY_MIN_S = 60.0


def _log(message: str) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{stamp} agent: {message}", file=sys.stderr, flush=True)


# --- bounded reads from the shared repository ---------------------------------------------------


class BoundedReader:
    """Runs a read in a daemon thread and waits at most `timeout` seconds for it.

    A read that does not answer is left running and picked up again by the next call for the same
    name, so a stalled mount costs one stuck thread per name, never one per sync.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._pending: dict[str, dict[str, Any]] = {}

    def read(self, name: str, function: Callable[[], Any]) -> tuple[bool, Any]:
        """(True, value) or (False, why it has no value)."""
        box = self._pending.get(name)
        if box is None:
            box = {"done": threading.Event()}

            def work(box: dict[str, Any] = box) -> None:
                try:
                    box["value"] = function()
                except Exception as error:  # reported to the caller, never raised in the thread
                    box["error"] = error
                finally:
                    box["done"].set()

            self._pending[name] = box
            threading.Thread(target=work, name=f"read-{name}", daemon=True).start()
        if not box["done"].wait(self.timeout):
            return False, f"no answer within {self.timeout:g} s (is the shared repository stalled?)"
        del self._pending[name]
        if "error" in box:
            error = box["error"]
            return False, str(getattr(error, "strerror", None) or error)
        return True, box["value"]


# --- the promotion lock -------------------------------------------------------------------------


class LockView(NamedTuple):
    """What the agent knows about the promotion lock."""

    live: bool = False
    stale: bool = False
    unknown: bool = False  # the lock could not be read: act as if it were live
    detail: str = ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return False
    return True


class LockWatch:
    """How long the lock file has gone unchanged, on this agent's monotonic clock: the holder
    rewrites it with a new heartbeatAt every 5 s, so an unchanged file is a silent holder."""

    def __init__(self) -> None:
        self._seen: bytes | None = None
        self._since = 0.0

    def unchanged_for(self, content: bytes | None, now: float) -> float:
        if content != self._seen:
            self._seen, self._since = content, now
        return now - self._since


def judge_lock(
    content: bytes | None, host: str, unchanged_s: float, stale_after_s: float = LOCK_STALE_S
) -> LockView:
    """Live or stale: stale when its holder is on this host and its pid is gone, or when the file
    (its heartbeat) has not changed for `stale_after_s` seconds as the agent measured it
    (`unchanged_s`); a lock first seen is live until then, whatever its timestamps say. The
    detail names the state and the owner only, so that it reads the same while they hold."""
    if content is None:
        return LockView()
    try:
        owner = json.loads(content)
        pid = int(owner["pid"])
        holder = str(owner["host"])
        described = f"`{owner['command']}` by {owner['user']}@{holder} pid {pid}"
        str(owner["startedAt"])
        str(owner["heartbeatAt"])
    except (ValueError, KeyError, TypeError, AttributeError):
        if unchanged_s > stale_after_s:
            return LockView(stale=True, detail=f"an unreadable lock, unchanged for over {stale_after_s:g} s")
        return LockView(live=True, detail="an unreadable lock")
    if owner.get("model"):
        described += f" for model {owner['model']}"
    if holder == host and not _pid_alive(pid):
        return LockView(stale=True, detail=f"{described}: that process is gone")
    if unchanged_s > stale_after_s:
        return LockView(
            stale=True, detail=f"{described}: its heartbeat has not changed for over {stale_after_s:g} s"
        )
    return LockView(live=True, detail=described)


# --- Triton over loopback -----------------------------------------------------------------------


class LoadFailed(Exception):
    """Triton refused or failed a load; `timed_out` when the agent stopped waiting."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


# Loopback calls never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Triton:
    """This pod's Triton over HTTP on loopback, with the repository API key when there is one."""

    def __init__(self, base: str, api_header: str | None, api_key_file: str | None) -> None:
        self.base = base
        self.api_header = api_header
        self.api_key_file = api_key_file

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_header and self.api_key_file:
            # Read every time: a rotated key reaches Triton at its restart, and then the agent too.
            with open(self.api_key_file, encoding="utf-8") as handle:
                headers[self.api_header] = handle.read().strip()
        return headers

    def _call(self, method: str, path: str, body: Any, timeout: float) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=self._headers())
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read()

    def index(self) -> list[dict[str, Any]]:
        status, body = self._call("POST", "/v2/repository/index", {}, CALL_TIMEOUT_S)
        if status != 200:
            raise OSError(f"repository index: HTTP {status}: {_error_text(body)}")
        entries = json.loads(body or b"[]")
        return [entry for entry in entries if isinstance(entry, dict)]

    def config(self, model: str, timeout: float) -> dict[str, Any]:
        """The config Triton runs `model` with (its JSON: numbers as numbers, its own defaults filled)."""
        status, body = self._call("GET", f"/v2/models/{model}/config", None, timeout)
        if status != 200:
            raise OSError(f"{model} config: HTTP {status}: {_error_text(body)}")
        config = json.loads(body or b"{}")
        if not isinstance(config, dict):
            raise ValueError(f"{model} config: not a JSON object")
        return config

    def load(self, model: str, config: dict[str, Any] | None, timeout: float) -> None:
        body: dict[str, Any] = {}
        if config is not None:
            body = {"parameters": {"config": json.dumps(config)}}
        try:
            status, answer = self._call("POST", f"/v2/repository/models/{model}/load", body, timeout)
        except socket.timeout:
            raise LoadFailed(f"no answer within {timeout:g} s", timed_out=True) from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, socket.timeout):
                raise LoadFailed(f"no answer within {timeout:g} s", timed_out=True) from None
            raise LoadFailed(f"cannot reach Triton: {error.reason}") from None
        except OSError as error:
            raise LoadFailed(f"cannot reach Triton: {error}") from None
        if status != 200:
            raise LoadFailed(f"HTTP {status}: {_error_text(answer)}")


def _error_text(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()[:500]
    if isinstance(document, dict) and "error" in document:
        return str(document["error"]).strip()
    return str(document)[:500]


# --- metrics ------------------------------------------------------------------------------------

# name -> (type, help); the page lists them in this order.
METRICS = {
    "tritonops_committed_version": ("gauge", "The committed version of each model (effective record)."),
    "tritonops_model_served_version": (
        "gauge",
        "The highest version Triton serves (unversioned requests reach it); 0 when none is ready.",
    ),
    "tritonops_model_version_ready": (
        "gauge",
        "1 when the version is ready on this pod's Triton; every version the index lists, and every committed one.",
    ),
    "tritonops_model_drift": (
        "gauge",
        "1 when the versions served differ from the committed pin (the committed version plus retained ones), "
        "or the config served from the committed one.",
    ),
    "tritonops_model_load_failures_total": (
        "counter",
        "Failed loads of a version: the agent's own, and those it saw in Triton's index (a failed candidate).",
    ),
    "tritonops_agent_loads_total": ("counter", "Loads the agent made, by outcome (ok, failed, timeout)."),
    "tritonops_promotion_in_progress": (
        "gauge",
        "1 while a live promotion lock exists: the agent only observes.",
    ),
    "tritonops_promotion_lock_stale": (
        "gauge",
        "1 while a promotion lock exists whose holder is gone; `tritonops unlock` clears it.",
    ),
    "tritonops_committed_state_read_errors_total": (
        "counter",
        "Syncs that could not read the committed state (unreadable, malformed, or no answer in time).",
    ),
    "tritonops_readiness_fallback": (
        "gauge",
        "1 while the readiness check answers from the pod-local copy of the committed state.",
    ),
    "tritonops_agent_last_sync_timestamp_seconds": ("gauge", "When the agent last finished a sync."),
}

Labels = tuple  # ((name, value), ...), sorted by name


def _labels(**labels: Any) -> Labels:
    return tuple(sorted((key, str(value)) for key, value in labels.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """The agent's series, rendered in the Prometheus text format; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[str, dict[Labels, float]] = {name: {} for name in METRICS}

    def set(self, name: str, value: float, labels: Labels = ()) -> None:
        with self._lock:
            self._series[name][labels] = float(value)

    def inc(self, name: str, labels: Labels = (), by: float = 1.0) -> None:
        with self._lock:
            series = self._series[name]
            series[labels] = series.get(labels, 0.0) + by

    def ensure(self, name: str, labels: Labels) -> None:
        """A counter series at 0 until it counts, so that `increase()` sees its first step."""
        with self._lock:
            self._series[name].setdefault(labels, 0.0)

    def replace(self, name: str, series: dict[Labels, float]) -> None:
        """A gauge's whole set of series (a model that left the record leaves the page)."""
        with self._lock:
            self._series[name] = dict(series)

    def value(self, name: str, labels: Labels = ()) -> float | None:
        with self._lock:
            return self._series[name].get(labels)

    def render(self) -> str:
        lines = []
        with self._lock:
            for name, (kind, text) in METRICS.items():
                lines.append(f"# HELP {name} {text}")
                lines.append(f"# TYPE {name} {kind}")
                for labels, value in sorted(self._series[name].items()):
                    inner = ",".join(f'{key}="{_escape(val)}"' for key, val in labels)
                    lines.append(
                        f"{name}{{{inner}}} {_number(value)}" if inner else f"{name} {_number(value)}"
                    )
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) and abs(value) < 2**53 else repr(value)


# --- the agent ----------------------------------------------------------------------------------


def effective_models(data: bytes | None, path: str, repository: str) -> dict[str, tuple[Any, list[int]]]:
    """{model: (effective record, expected pin)} from the record's bytes; an absent record commits
    nothing. Reads config.pbtxt of a model with a pending commit (on the shared repository: the
    caller runs this with a deadline)."""
    if data is None:
        return {}
    records = committed_state.parse(data, path)
    effective = committed_state.effective_records(repository, records)
    return {name: (record, committed_state.expected_pin(record)) for name, record in effective.items()}


class Backoff:
    """Per (model, version): when the next load may be tried after failures."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._failures: dict[tuple[str, int], tuple[int, float]] = {}

    def due(self, key: tuple[str, int], now: float) -> bool:
        entry = self._failures.get(key)
        return entry is None or now >= entry[1]

    def failed(self, key: tuple[str, int], now: float) -> float:
        count = self._failures.get(key, (0, 0.0))[0] + 1
        delay = min(self.maximum, self.initial * 2 ** (count - 1))
        self._failures[key] = (count, now + delay)
        return delay

    def succeeded(self, key: tuple[str, int]) -> None:
        self._failures.pop(key, None)

    def waiting(self, key: tuple[str, int], now: float) -> float:
        entry = self._failures.get(key)
        return max(0.0, entry[1] - now) if entry else 0.0


class Grace:
    """Since when each served version that is not committed, (model, version), has been seen so at
    every sync, on the agent's monotonic clock: it may be narrowed away `seconds` after that (0: at
    once). Only the sync thread uses it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._since: dict[tuple[str, int], float] = {}

    def observe(self, extra: set[tuple[str, int]], now: float) -> list[tuple[str, int]]:
        """Take `extra` as what this sync saw served and uncommitted: a version missing from it
        (committed now, or no longer served) starts from zero if it comes back. The ones new here."""
        new = sorted(key for key in extra if key not in self._since)
        self._since = {key: self._since.get(key, now) for key in extra}
        return new

    def forget(self) -> None:
        """A sync that could not tell, or saw a promotion's lock: every wait starts again."""
        self._since = {}

    def left(self, key: tuple[str, int], now: float) -> float:
        """Seconds before `key` may be narrowed away; one never observed gets the whole grace."""
        return max(0.0, self._since.get(key, now) + self.seconds - now)


class ConfigSeen(NamedTuple):
    """What the agent last saw of one model's served config, against the record's config `key`."""

    key: str
    at: float  # monotonic
    differs: tuple = ()  # the paths that differ (config_differences); () when it serves the committed config
    stuck: bool = False  # a load of the committed config of our own still left them different


def config_key(record: Any) -> str | None:
    """What identifies the config a record commits (None: it has none, nothing to compare)."""
    if not isinstance(record.config, dict):
        return None
    return json.dumps(record.config, sort_keys=True)


class Configs:
    """Per model, the served config as last compared with the record's: a fetch is due only when
    the record's config changed since, at start-up, after a live lock or an unanswered index
    (a promotion or a restart may have loaded another one), or CONFIG_RECHECK_S after the last
    one. Used by the sync thread and the load threads."""

    def __init__(self, recheck_s: float = CONFIG_RECHECK_S) -> None:
        self.recheck_s = recheck_s
        self._seen: dict[str, ConfigSeen] = {}
        self._guard = threading.Lock()

    def due(self, name: str, key: str, now: float) -> bool:
        with self._guard:
            seen = self._seen.get(name)
        return seen is None or seen.key != key or now - seen.at >= self.recheck_s

    def saw(self, name: str, key: str, now: float, differs: list[str], *, loaded: bool = False) -> ConfigSeen:
        """Take `differs` as what a fetch showed; `loaded`: right after our own load of that config
        (still different: stuck, so that no load follows until the record changes)."""
        with self._guard:
            before = self._seen.get(name)
            stuck = bool(differs) and (loaded or (before is not None and before.key == key and before.stuck))
            seen = self._seen[name] = ConfigSeen(key, now, tuple(differs), stuck)
        return seen

    def differs(self, name: str, key: str | None) -> ConfigSeen | None:
        """The last comparison of `name` with this record's config, if it found differences."""
        with self._guard:
            seen = self._seen.get(name)
        return seen if seen is not None and seen.key == key and seen.differs else None

    def forget(self, name: str | None = None) -> None:
        with self._guard:
            if name is None:
                self._seen = {}
            else:
                self._seen.pop(name, None)


def _failure_reason(entry: dict[str, Any]) -> str | None:
    """The error of an index entry that records a failed load, else None."""
    if entry.get("state") != "UNAVAILABLE":
        return None
    reason = str(entry.get("reason") or "").strip()
    return reason if reason and reason != UNLOADED else None


def _version(entry: dict[str, Any]) -> int | None:
    try:
        return int(entry.get("version", ""))
    except (TypeError, ValueError):
        return None


def _versions_by_state(index: list[dict[str, Any]], model: str) -> dict[int, str]:
    found = {}
    for entry in index:
        version = _version(entry)
        if entry.get("name") == model and version is not None:
            found[version] = str(entry.get("state") or "")
    return found


def _short(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class Agent:
    def __init__(self, options: argparse.Namespace, metrics: Metrics) -> None:
        self.options = options
        self.metrics = metrics
        for counter in ("tritonops_committed_state_read_errors_total",):
            self.metrics.ensure(counter, ())
        self.triton = Triton(
            f"http://{options.host}:{options.port}", options.api_header, options.api_key_file
        )
        self.reader = BoundedReader(options.read_timeout)
        self.backoff = Backoff(2 * options.interval, options.backoff_max)
        self.host = socket.gethostname()
        self.lock_path = options.lock or os.path.join(options.repository, LOCK_PATH)
        self.lock_watch = LockWatch()
        self.grace = Grace(options.narrow_after)
        self.configs = Configs()
        self.models: dict[str, tuple[Any, list[int]]] | None = None  # the last good record
        self.last_sync = time.monotonic()
        self._busy: set[str] = set()  # the model with a load in flight (one at a time)
        self._last_loaded: str | None = None  # where the next turn starts (round robin)
        self._guard = threading.Lock()
        self._seen: dict[tuple[str, int], tuple[str, str]] | None = None  # index states, last sync
        self._said: dict[str, str] = {}  # what was last logged per topic (no repeats every sync)

    # -- logging without repeating the same state every sync --------------------------------------
    def _say(self, topic: str, message: str, recovered: str = "") -> None:
        """Log `message` once while it holds; `recovered` once when a problem ('' = none) clears."""
        before = self._said.get(topic, "")
        if before != message:
            self._said[topic] = message
            if message:
                _log(message)
            elif before and recovered:
                _log(recovered)

    # -- one sync ------------------------------------------------------------------------------------
    def sync(self) -> None:
        # The lock first: a record read after "no lock" is at least as new as that answer.
        lock = self._read_lock()
        fresh = self._read_committed()
        self.metrics.set("tritonops_promotion_in_progress", 1 if lock.live else 0)
        self.metrics.set("tritonops_promotion_lock_stale", 1 if lock.stale else 0)
        marker = self.options.fallback_marker
        self.metrics.set("tritonops_readiness_fallback", 1 if marker and os.path.exists(marker) else 0)
        with self._guard:
            busy = set(self._busy)
        try:
            index = self.triton.index()
        except (OSError, ValueError) as error:
            self._say("triton", f"cannot read Triton's repository index: {error}")
            index = None
        else:
            self._say("triton", "", recovered="Triton's repository index answers again")
        if index is None:
            # What Triton serves is unknown (starting, restarting or hung): no drift is claimed; its
            # own alerts (target down, not ready) cover it.
            self._export_committed_only()
            self.grace.forget()
            self.configs.forget()  # a Triton that restarted reads config.pbtxt: look again
        else:
            self._observe(index, busy)
            acting = fresh and not lock.live and not lock.unknown
            if acting:
                self._check_configs(index, busy)
            elif lock.live or lock.unknown:
                self.configs.forget()  # a promotion may load another config: look again after it
            self._export(index)
            if acting:
                self._converge(index, busy)
            else:
                self.grace.forget()  # a promotion's lock, or no way to tell: nothing is drift yet
        self.metrics.set("tritonops_agent_last_sync_timestamp_seconds", time.time())
        self.last_sync = time.monotonic()

    def _read_committed(self) -> bool:
        path = self.options.committed_state

        def read() -> dict[str, tuple[Any, list[int]]]:
            return effective_models(committed_state.read_bytes(path), path, self.options.repository)

        answered, value = self.reader.read("committed-state", read)
        if not answered:
            self.metrics.inc("tritonops_committed_state_read_errors_total")
            self._say(
                "state", f"{path}: cannot read the committed state: {value}; not acting until it answers"
            )
            return False
        self._say("state", "", recovered=f"{path}: the committed state reads again")
        if self.models is None or value != self.models:
            described = ", ".join(f"{name} {pin}" for name, (_, pin) in sorted(value.items())) or "nothing"
            _log(f"committed state: {described}")
        self.models = value
        return True

    def _read_lock(self) -> LockView:
        path = self.lock_path

        def read() -> bytes | None:
            try:
                with open(path, "rb") as handle:
                    return handle.read()
            except FileNotFoundError:
                return None

        answered, value = self.reader.read("lock", read)
        if not answered:
            view = LockView(unknown=True, detail=f"{path}: cannot read the promotion lock: {value}")
            self._say("lock", f"{view.detail}; not acting until it answers")
            return view
        view = judge_lock(
            value,
            self.host,
            self.lock_watch.unchanged_for(value, time.monotonic()),
            self.options.lock_stale_after,
        )
        if view.live:
            self._say("lock", f"promotion in progress ({view.detail}): observing only")
        elif view.stale:
            self._say(
                "lock",
                f"stale promotion lock {path} ({view.detail}): treated as absent; clear it with "
                f"`tritonops unlock --repository {os.path.dirname(os.path.dirname(path))}`",
            )
        else:
            self._say("lock", "", recovered="no promotion lock: converging")
        return view

    def _observe(self, index: list[dict[str, Any]], busy: set[str]) -> None:
        """Count failed loads the index shows that were not there at the last sync (a candidate the
        promotion tool loaded, which failed). Models with an agent load in flight are left to it."""
        current = {}
        for entry in index:
            version = _version(entry)
            if version is not None and entry.get("name") not in busy:
                current[(str(entry["name"]), version)] = (
                    str(entry.get("state") or ""),
                    str(entry.get("reason") or ""),
                )
        with self._guard:
            previous = self._seen
            if previous is not None:
                for key, state in current.items():
                    reason = _failure_reason({"state": state[0], "reason": state[1]})
                    if reason is not None and previous.get(key) != state:
                        self.metrics.inc(
                            "tritonops_model_load_failures_total", _labels(model=key[0], version=key[1])
                        )
                        _log(f"saw a failed load of {key[0]} version {key[1]}: {_short(reason)}")
            kept = {key: state for key, state in (previous or {}).items() if key[0] in busy}
            self._seen = {**kept, **current}

    def _check_configs(self, index: list[dict[str, Any]], busy: set[str]) -> None:
        """Fetch the served config of each model whose check is due (see Configs) and that serves
        its committed versions, and compare it with the record's; within CALL_TIMEOUT_S per sync
        (the rest wait for the next one). A model that misses versions gets a load anyway."""
        started = time.monotonic()
        for name, (record, pin) in sorted((self.models or {}).items()):
            key = config_key(record)
            states = _versions_by_state(index, name)
            if (
                key is None
                or name in busy
                or any(states.get(version) != "READY" for version in pin)
                or any(state in ("LOADING", "UNLOADING") for state in states.values())
                or not self.configs.due(name, key, time.monotonic())
            ):
                continue
            left = CALL_TIMEOUT_S - (time.monotonic() - started)
            if left <= 0:
                return
            try:
                served = self.triton.config(name, left)
            except (OSError, ValueError) as error:
                self._say("config", f"cannot read the config Triton serves for {name}: {error}")
                return
            self._say("config", "", recovered="Triton's model configs answer again")
            differs = committed_state.config_differences(record.config, served)
            seen = self.configs.saw(name, key, time.monotonic(), differs)
            if differs and not seen.stuck:
                _log(
                    f"{name}: serves its committed versions {pin} with a config that differs from the "
                    f"committed one in {', '.join(committed_state.differing_fields(differs))} "
                    f"({_short(', '.join(differs), 200)}): loading the committed config"
                )

    def _export_committed_only(self) -> None:
        committed = {
            _labels(model=name): float(record.version) for name, (record, _) in (self.models or {}).items()
        }
        self.metrics.replace("tritonops_committed_version", committed)
        for name in (
            "tritonops_model_version_ready",
            "tritonops_model_served_version",
            "tritonops_model_drift",
        ):
            self.metrics.replace(name, {})

    def _export(self, index: list[dict[str, Any]]) -> None:
        models = self.models or {}
        version_ready: dict[Labels, float] = {}
        for entry in index:
            version = _version(entry)
            if version is not None:
                labels = _labels(model=entry["name"], version=version)
                version_ready[labels] = 1.0 if entry.get("state") == "READY" else 0.0
        committed, served_version, drift = {}, {}, {}
        for name, (record, pin) in sorted(models.items()):
            states = _versions_by_state(index, name)
            for version in pin:
                ready = states.get(version) == "READY"
                version_ready[_labels(model=name, version=version)] = 1.0 if ready else 0.0
                self.metrics.ensure(
                    "tritonops_model_load_failures_total", _labels(model=name, version=version)
                )
            for outcome in OUTCOMES:
                self.metrics.ensure("tritonops_agent_loads_total", _labels(model=name, outcome=outcome))
            served = sorted(version for version, state in states.items() if state == "READY")
            committed[_labels(model=name)] = float(record.version)
            served_version[_labels(model=name)] = float(max(served)) if served else 0.0
            config_drift = self.configs.differs(name, config_key(record)) is not None
            drift[_labels(model=name)] = 0.0 if served == sorted(pin) and not config_drift else 1.0
        for entry in index:
            version = _version(entry)
            if version is not None and _failure_reason(entry) is not None:
                self.metrics.ensure(
                    "tritonops_model_load_failures_total", _labels(model=entry["name"], version=version)
                )
        self.metrics.replace("tritonops_model_version_ready", version_ready)
        self.metrics.replace("tritonops_committed_version", committed)
        self.metrics.replace("tritonops_model_served_version", served_version)
        self.metrics.replace("tritonops_model_drift", drift)

    def _converge(self, index: list[dict[str, Any]], busy: set[str]) -> None:
        now = time.monotonic()
        models = self.models or {}
        served_extra: dict[str, list[int]] = {}
        for name, (_, pin) in models.items():
            states = _versions_by_state(index, name)
            served_extra[name] = sorted(v for v, state in states.items() if state == "READY" and v not in pin)
        extra = {(name, version) for name, versions in served_extra.items() for version in versions}
        for name, version in self.grace.observe(extra, now):
            if self.grace.seconds > 0:
                _log(
                    f"{name}: serves {version} which is not committed; narrowing it away in "
                    f"{self.grace.seconds:.0f} s unless a promotion lock appears"
                )
        if busy:
            return  # one load at a time per pod: the one in flight holds a Triton HTTP worker
        for name in self._turns(sorted(models)):
            record, pin = models[name]
            states = _versions_by_state(index, name)
            if any(state in ("LOADING", "UNLOADING") for state in states.values()):
                continue  # Triton is busy with this model: look again at the next sync
            missing = [version for version in pin if states.get(version) != "READY"]
            # Served but not committed: kept while within their grace (a promotion the agent may not
            # see yet), narrowed away after it.
            keep = [v for v in served_extra[name] if self.grace.left((name, v), now) > 0]
            narrow = [v for v in served_extra[name] if v not in keep]
            # Serves the committed versions with another config: one load sends the record's.
            seen = self.configs.differs(name, config_key(record))
            reconfigure = list(seen.differs) if seen is not None and not seen.stuck else []
            if not missing and not narrow and not reconfigure:
                continue
            if keep and _override(record, pin) is None:
                # A plain load cannot say a pin: it could narrow away what the grace keeps.
                self._say(
                    f"backoff-{name}",
                    f"{name}: a plain load (the record has no config) would not keep {keep}: "
                    "waiting for their grace to end",
                )
                continue
            keys = [(name, version) for version in (missing or narrow or [record.version])]
            if not all(self.backoff.due(key, now) for key in keys):
                wait = max(self.backoff.waiting(key, now) for key in keys)
                self._say(
                    f"backoff-{name}", f"{name}: next load in {wait:.0f} s (backing off after failures)"
                )
                continue
            self._say(f"backoff-{name}", "")
            with self._guard:
                self._busy.add(name)
            self._last_loaded = name
            sent = sorted(set(pin) | set(keep))
            threading.Thread(
                target=self._load,
                args=(name, record, sent, missing, narrow, reconfigure),
                name=f"load-{name}",
                daemon=True,
            ).start()
            return

    def _turns(self, names: list[str]) -> list[str]:
        """`names` (sorted) starting after the model loaded last, so that one model that keeps
        needing loads never starves the others."""
        last = self._last_loaded
        later = [name for name in names if last is not None and name > last]
        return later + [name for name in names if name not in later]

    def _load(
        self,
        name: str,
        record: Any,
        pin: list[int],
        missing: list[int],
        extra: list[int],
        reconfigure: list[str],
    ) -> None:
        """One load of `name` towards `pin` (a worker thread; the model is marked busy meanwhile)."""
        index = None
        try:
            index = self._load_once(name, record, pin, missing, extra, reconfigure)
        finally:
            self._rebaseline(name, index)
            with self._guard:
                self._busy.discard(name)

    def _load_once(
        self,
        name: str,
        record: Any,
        pin: list[int],
        missing: list[int],
        extra: list[int],
        reconfigure: list[str],
    ) -> list[dict[str, Any]] | None:
        """Load `name` with `pin` (its expected pin, plus what the grace keeps), so that `missing`
        versions serve and `extra` ones do not, with the committed config where the served one
        differs in the `reconfigure` fields; the index read after it (None if unreadable)."""
        config = _override(record, pin)
        what = []
        if missing:
            what.append(f"load version(s) {', '.join(map(str, missing))}")
        if extra:
            what.append(f"narrow away {', '.join(map(str, extra))}")
        if reconfigure:
            what.append(f"load the committed config (the served one differs in {', '.join(reconfigure)})")
        how = (
            "with the committed config as override"
            if config is not None
            else "plain (the record has no config)"
        )
        kept = [version for version in pin if version not in committed_state.expected_pin(record)]
        if kept:
            how += f", keeping {', '.join(map(str, kept))} (not committed, within its grace)"
        _log(f"{name}: {' and '.join(what)}: pin {pin}, {how}")
        started = time.monotonic()
        keys = [(name, version) for version in (missing or extra or [record.version])]
        try:
            self.triton.load(name, config, self.options.load_timeout)
        except LoadFailed as error:
            outcome, why = ("timeout" if error.timed_out else "failed"), str(error)
        else:
            outcome, why = "ok", ""
        index = self._index_or_none()
        states = _versions_by_state(index or [], name)
        if outcome == "ok":
            still_missing = [version for version in missing if states.get(version) != "READY"]
            still_extra = [version for version in extra if states.get(version) == "READY"]
            if still_missing or still_extra:
                outcome = "failed"
                why = f"Triton answered 200 but {'still misses ' + str(still_missing) if still_missing else 'still serves ' + str(still_extra)}"
                if config is None:
                    why += " (Triton keeps an earlier config override for plain loads: commit with `tritonops promote` so that the record carries its config)"
            else:
                why = self._verify_config(name, record)
                outcome = "failed" if why else outcome
        took = time.monotonic() - started
        self.metrics.inc("tritonops_agent_loads_total", _labels(model=name, outcome=outcome))
        if outcome == "ok":
            for key in keys:
                self.backoff.succeeded(key)
            _log(f"{name}: now serving {pin} ({took:.1f} s)")
            return index
        now = time.monotonic()
        delay = max(self.backoff.failed(key, now) for key in keys)
        for version in missing:
            if states.get(version) != "READY":
                self.metrics.inc("tritonops_model_load_failures_total", _labels(model=name, version=version))
        stuck = why.startswith(STILL_DIFFERS)
        if reconfigure and not missing and not stuck:
            # Triton refused the committed config (or did not answer): a failed load of the version.
            self.metrics.inc(
                "tritonops_model_load_failures_total", _labels(model=name, version=record.version)
            )
        then = "" if stuck else f"; next try in {delay:.0f} s"
        _log(f"{name}: load {outcome} after {took:.1f} s: {_short(why, 600)}{then}")
        return index

    def _verify_config(self, name: str, record: Any) -> str:
        """After a load that answered 200: '' when the served config is the record's (or there is
        none to compare), else why not. Still different after our own load of it is stuck: no load
        follows for that record (Triton rewrote a field, and loading again would not change it)."""
        key = config_key(record)
        if key is None:
            return ""
        try:
            served = self.triton.config(name, CALL_TIMEOUT_S)
        except (OSError, ValueError):
            self.configs.forget(name)  # unknown: the next sync looks again
            return ""
        differs = committed_state.config_differences(record.config, served)
        self.configs.saw(name, key, time.monotonic(), differs, loaded=True)
        if not differs:
            return ""
        return (
            f"{STILL_DIFFERS} in {', '.join(differs)}: not loading it again until the record changes "
            "(does Triton rewrite these fields? then the agent's comparison needs to know)"
        )

    def _index_or_none(self) -> list[dict[str, Any]] | None:
        try:
            return self.triton.index()
        except (OSError, ValueError):
            return None

    def _rebaseline(self, name: str, index: list[dict[str, Any]] | None) -> None:
        """Take the index entries of `name` (`index`, or read now) as seen, so that the sync does
        not count again what this load did (its own failures are counted where they happen)."""
        if index is None:
            index = self._index_or_none()
        if index is None:
            return
        with self._guard:
            if self._seen is None:
                return
            for key in [key for key in self._seen if key[0] == name]:
                del self._seen[key]
            for entry in index:
                version = _version(entry)
                if entry.get("name") == name and version is not None:
                    self._seen[(name, version)] = (
                        str(entry.get("state") or ""),
                        str(entry.get("reason") or ""),
                    )

    # -- the loop ------------------------------------------------------------------------------------
    def healthy(self) -> tuple[bool, str]:
        limit = max(HEALTHY_MIN_S, HEALTHY_SYNCS * self.options.interval)
        age = time.monotonic() - self.last_sync
        if age > limit:
            return False, f"no sync for {age:.0f} s (limit {limit:.0f} s)"
        return True, f"last sync {age:.1f} s ago"

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.sync()
            except Exception as error:  # one bad sync must not end the loop: say it, try again
                _log(f"sync failed: {type(error).__name__}: {error}")
            stop.wait(max(0.0, self.options.interval - (time.monotonic() - started)))


def _override(record: Any, pin: list[int]) -> dict[str, Any] | None:
    """The record's config with `pin` as its version policy, or None (a plain load) when the record
    has none. The parser checked that the config pins the expected versions: it is sent as is
    unless the grace keeps more."""
    config = record.config
    if not isinstance(config, dict):
        return None
    config = dict(config)
    if sorted(pin) != committed_state.expected_pin(record):
        # Protobuf JSON, as the record holds it: int64 as strings.
        config["version_policy"] = {"specific": {"versions": [str(version) for version in sorted(pin)]}}
    return config


# --- the metrics endpoint -----------------------------------------------------------------------


def _handler(agent: Agent, metrics: Metrics) -> type:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/healthz":
                healthy, detail = agent.healthy()
                self._send(200 if healthy else 503, detail + "\n", "text/plain; charset=utf-8")
            else:
                self._send(404, "not found: /metrics or /healthz\n", "text/plain; charset=utf-8")

        def _send(self, status: int, text: str, content_type: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
            pass  # scrapes every few seconds: not worth a line each

    return Handler


def parse_options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="agent", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repository", required=True, help="the model repository (read only)")
    parser.add_argument("--committed-state", required=True, help="the committed-state record (current.json)")
    parser.add_argument("--lock", help="the promotion lock (default: <repository>/.tritonops/promotion.lock)")
    parser.add_argument("--host", default="127.0.0.1", help="Triton's HTTP address (loopback)")
    parser.add_argument("--port", type=int, default=8000, help="Triton's HTTP port")
    parser.add_argument("--api-key-file", help="the repository API key (the mounted Secret)")
    parser.add_argument("--api-header", help="the header the key travels in")
    parser.add_argument("--metrics-address", default="0.0.0.0", help="where /metrics and /healthz listen")
    parser.add_argument("--metrics-port", type=int, default=8003)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between syncs")
    parser.add_argument(
        "--read-timeout", type=float, default=2.0, help="seconds to wait for the shared repository"
    )
    parser.add_argument("--load-timeout", type=float, default=600.0, help="seconds one load may take")
    parser.add_argument(
        "--backoff-max", type=float, default=300.0, help="longest wait between loads of a failing version"
    )
    parser.add_argument(
        "--lock-stale-after",
        type=float,
        default=LOCK_STALE_S,
        help="seconds a lock from another host may go without a heartbeat before it counts as stale",
    )
    parser.add_argument(
        "--narrow-after",
        type=float,
        default=NARROW_AFTER_S,
        help="seconds a served version must stay uncommitted before it is narrowed away (0: at once)",
    )
    parser.add_argument(
        "--fallback-marker", help="the file ready.py keeps while it answers from the pod-local copy"
    )
    options = parser.parse_args(argv)
    if bool(options.api_key_file) != bool(options.api_header):
        parser.error("--api-key-file and --api-header go together")
    if min(options.interval, options.read_timeout, options.load_timeout, options.lock_stale_after) <= 0:
        parser.error("--interval, --read-timeout, --load-timeout and --lock-stale-after must be positive")
    if options.narrow_after < 0:
        parser.error("--narrow-after must be 0 or more")
    return options


def main(argv: list[str]) -> int:
    options = parse_options(argv)
    metrics = Metrics()
    agent = Agent(options, metrics)
    server = ThreadingHTTPServer((options.metrics_address, options.metrics_port), _handler(agent, metrics))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    _log(
        f"watching {options.committed_state} every {options.interval:g} s for Triton at "
        f"{options.host}:{options.port}; metrics on :{options.metrics_port}/metrics"
    )
    agent.run(stop)
    server.shutdown()
    _log("stopped")
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: a reader thread stuck on a hung mount must not hold up the exit (see ready.py).
    os._exit(code)
