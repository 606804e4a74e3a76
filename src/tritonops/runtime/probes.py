"""Probes driven the way the kubelet drives them: a period, a timeout, consecutive-failure and
consecutive-success thresholds, HTTP GET (200-399 passes) or a command (exit 0 passes)."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from tritonops.runtime.podspec import ProbeSpec
from tritonops.triton import server as triton_server


@dataclass(frozen=True)
class ProbeResult:
    passed: bool
    detail: str


def run_probe(spec: ProbeSpec, env: dict[str, str] | None = None) -> ProbeResult:
    """Run one probe once, bounded by its timeout."""
    if spec.kind == "http":
        return _http(spec)
    return _exec(spec, env)


def _http(spec: ProbeSpec) -> ProbeResult:
    try:
        with triton_server.LOOPBACK_OPENER.open(spec.url, timeout=spec.timeout_s) as response:
            status = int(response.status)
    except urllib.error.HTTPError as error:
        status = error.code
    except (urllib.error.URLError, OSError) as error:
        return ProbeResult(False, f"GET {spec.url}: {getattr(error, 'reason', error)}")
    return ProbeResult(200 <= status < 400, f"GET {spec.url}: HTTP {status}")


def _exec(spec: ProbeSpec, env: dict[str, str] | None) -> ProbeResult:
    try:
        result = subprocess.run(
            list(spec.command),
            capture_output=True,
            text=True,
            timeout=spec.timeout_s,
            env={**os.environ, **(env or {})},
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ProbeResult(False, f"timed out after {spec.timeout_s:g} s")
    except OSError as error:
        return ProbeResult(False, f"cannot run {spec.command[0]}: {error}")
    output = (result.stdout + result.stderr).strip().splitlines()
    return ProbeResult(result.returncode == 0, output[-1] if output else f"exit {result.returncode}")


@dataclass
class ProbeTracker:
    """Consecutive results of one probe against its thresholds, and when it is next due."""

    spec: ProbeSpec
    started_at: float = field(default_factory=time.monotonic)
    successes: int = 0
    failures: int = 0
    last: ProbeResult | None = None
    next_due: float = 0.0

    def __post_init__(self) -> None:
        self.next_due = self.started_at + self.spec.initial_delay_s

    def due(self, now: float) -> bool:
        return now >= self.next_due

    def record(self, result: ProbeResult, now: float) -> None:
        self.last = result
        if result.passed:
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.successes, self.failures = 0, self.failures + 1
        self.next_due = now + self.spec.period_s

    @property
    def succeeded(self) -> bool:
        return self.successes >= self.spec.success_threshold

    @property
    def failed(self) -> bool:
        return self.failures >= self.spec.failure_threshold
