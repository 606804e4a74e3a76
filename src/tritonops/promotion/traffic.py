"""Client traffic during a promotion, for the tests and the benchmark: N concurrent clients infer the
model without naming a version, spread over the replicas, for as long as the traffic runs. Every
request is recorded: when it was sent, how long it took, which replica and which version answered
(the response's `model_version`) or why it failed. Marks ("load", "commit", ...) put the chain's
steps on the same clock, so the report can compare latency inside a window with the rest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from tritonops import errors
from tritonops.promotion import replicas as replicas_module
from tritonops.promotion import smoke

DEFAULT_CLIENTS = 8


@dataclass(frozen=True)
class Answer:
    """One request: sent `at_s` seconds after the traffic started, answered after `seconds`, by
    `version` on `replica` (None and an error when it failed)."""

    at_s: float
    seconds: float
    replica: str
    version: int | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.version is not None


@dataclass(frozen=True)
class Mark:
    at_s: float
    label: str


def _quantile(values: Sequence[float], q: float) -> float | None:
    return float(np.quantile(np.asarray(values), q)) if values else None


@dataclass(frozen=True)
class TrafficReport:
    """Every request of a traffic run, the marks, and the figures drawn from them."""

    model: str
    clients: int
    duration_s: float
    answers: tuple[Answer, ...]
    marks: tuple[Mark, ...]

    @property
    def failed(self) -> list[Answer]:
        return [a for a in self.answers if not a.ok]

    def mark(self, label: str) -> float:
        """When `label` was marked (the first such mark)."""
        for mark in self.marks:
            if mark.label == label:
                return mark.at_s
        raise KeyError(f"no mark {label!r} (marks: {', '.join(m.label for m in self.marks)})")

    def between(self, start_s: float, end_s: float) -> list[Answer]:
        """Requests in flight at some point of [start_s, end_s)."""
        return [a for a in self.answers if a.at_s < end_s and a.at_s + a.seconds >= start_s]

    def by_version(self, answers: Sequence[Answer] | None = None) -> dict[int, int]:
        counts: dict[int, int] = {}
        for answer in self.answers if answers is None else answers:
            if answer.version is not None:
                counts[answer.version] = counts.get(answer.version, 0) + 1
        return dict(sorted(counts.items()))

    def p99(self, answers: Sequence[Answer] | None = None) -> float | None:
        chosen = self.answers if answers is None else answers
        return _quantile([a.seconds for a in chosen if a.ok], 0.99)

    def swap(self, start_s: float, end_s: float) -> dict[str, Any]:
        """p99 of the requests in flight during [start_s, end_s) against the p99 of the others."""
        inside = self.between(start_s, end_s)
        ids = {id(a) for a in inside}
        outside = [a for a in self.answers if id(a) not in ids]
        steady, during = self.p99(outside), self.p99(inside)
        return {
            "window_s": [round(start_s, 3), round(end_s, 3)],
            "steady_requests": len(outside),
            "swap_requests": len(inside),
            "steady_p99_ms": None if steady is None else round(steady * 1000, 2),
            "swap_p99_ms": None if during is None else round(during * 1000, 2),
            "ratio": None if not steady or during is None else round(during / steady, 2),
            "failed": sum(1 for a in inside if not a.ok),
        }

    def timeline(self, bucket_s: float = 0.25) -> list[dict[str, Any]]:
        """Per bucket of send time: requests, failures, p50/p99 in ms, and answers per version."""
        buckets: dict[int, list[Answer]] = {}
        for answer in self.answers:
            buckets.setdefault(int(answer.at_s // bucket_s), []).append(answer)
        rows = []
        for index in sorted(buckets):
            chosen = buckets[index]
            latencies = [a.seconds * 1000 for a in chosen if a.ok]
            p50, p99 = _quantile(latencies, 0.5), _quantile(latencies, 0.99)
            rows.append(
                {
                    "t_s": round(index * bucket_s, 3),
                    "requests": len(chosen),
                    "failed": sum(1 for a in chosen if not a.ok),
                    "p50_ms": None if p50 is None else round(p50, 2),
                    "p99_ms": None if p99 is None else round(p99, 2),
                    "versions": {str(v): n for v, n in self.by_version(chosen).items()},
                }
            )
        return rows

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "clients": self.clients,
            "duration_s": round(self.duration_s, 3),
            "requests": len(self.answers),
            "failed": len(self.failed),
            "errors": sorted({a.error for a in self.failed})[:5],
            "by_version": {str(v): n for v, n in self.by_version().items()},
            "p99_ms": None if self.p99() is None else round(float(self.p99() or 0) * 1000, 2),
            "marks": [{"at_s": round(m.at_s, 3), "label": m.label} for m in self.marks],
        }


class Traffic:
    """`clients` threads inferring `model` (no version) on `replicas` (client i on replica i mod n)
    until the block ends; `report()` after it. Inputs default to the smoke inputs of the model's
    config as the first replica serves it."""

    def __init__(
        self,
        replicas: Sequence[replicas_module.Replica],
        model: str,
        *,
        key: replicas_module.ApiKey | None = None,
        clients: int = DEFAULT_CLIENTS,
        inputs: Mapping[str, np.ndarray[Any, Any]] | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if not replicas:
            raise errors.InputError("traffic needs at least one replica")
        self.replicas = list(replicas)
        self.model = model
        self.key = key or replicas_module.ApiKey(None)
        self.clients = clients
        self.timeout_s = timeout_s
        self._inputs = dict(inputs) if inputs is not None else None
        self._answers: list[Answer] = []
        self._marks: list[Mark] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = 0.0
        self._stopped = 0.0

    def now(self) -> float:
        """Seconds since the traffic started (the clock of answers and marks)."""
        return time.monotonic() - self._started

    def mark(self, label: str) -> None:
        self._marks.append(Mark(self.now(), label))

    def __enter__(self) -> Traffic:
        if self._inputs is None:
            with replicas_module.connect(self.replicas[0], self.key) as client:
                self._inputs = smoke.inputs_for(client.model_config(self.model))
        self._started = time.monotonic()
        for index in range(self.clients):
            replica = self.replicas[index % len(self.replicas)]
            thread = threading.Thread(target=self._run, args=(replica,), name=f"traffic-{index}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopped = time.monotonic()
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 5)

    def wait_for(self, answers: int, *, timeout_s: float = 30.0) -> None:
        """Block until `answers` requests have completed (a warm-up before measuring)."""
        deadline = time.monotonic() + timeout_s
        while len(self._answers) < answers:
            if time.monotonic() >= deadline:
                raise errors.TritonUnavailable(
                    f"{self.model}: only {len(self._answers)} of {answers} requests answered in {timeout_s:g} s"
                )
            time.sleep(0.05)

    def report(self) -> TrafficReport:
        end = self._stopped or time.monotonic()
        answers = tuple(sorted(self._answers, key=lambda a: a.at_s))
        return TrafficReport(self.model, self.clients, end - self._started, answers, tuple(self._marks))

    def _run(self, replica: replicas_module.Replica) -> None:
        assert self._inputs is not None
        with replicas_module.connect(replica, self.key, timeout_s=self.timeout_s) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    version, _ = client.infer_answer(self.model, self._inputs)
                    answer = Answer(sent - self._started, time.monotonic() - sent, replica.name, version)
                except errors.TritonOpsError as error:
                    answer = Answer(
                        sent - self._started, time.monotonic() - sent, replica.name, None, str(error)
                    )
                self._answers.append(answer)
