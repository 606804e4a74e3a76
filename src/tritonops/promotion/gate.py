"""The promotion gate: a PromQL success condition evaluated on a real Prometheus over a window.

The query is written with `bool` so that it returns 1 (healthy) or 0 (not), e.g.
`sum(rate(nv_inference_request_failure{model="mlp"}[1m])) == bool 0`. It is evaluated every few
seconds for `window_s`; every sample must be 1.

- a 0 is a breach: the gate fails at once and the promotion rolls back;
- no series *yet*: a new version has no series until Prometheus has scraped it (a scrape interval
  or two after it loads, longer for a rate). Until the first judgeable sample, such samples are
  waited through; a window that ends with none judgeable is inconclusive (lengthen --gate-window
  beyond the scrape interval plus the query's range);
- a value other than 0 or 1, an evaluation error, a Prometheus that does not answer, or series
  that disappear after data was seen are inconclusive. Argo Rollouts pauses on inconclusive
  analysis; a CLI cannot pause, so by default an inconclusive sample fails the gate at once, and
  the outcome says why. `inconclusive="pass"` lets the window carry on past such samples (they are
  still reported), and a window with no data at all pass.
"""

from __future__ import annotations

import json
import logging
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from tritonops import errors
from tritonops.triton import server as triton_server

log = logging.getLogger(__name__)

Verdict = Literal["pass", "breach", "inconclusive"]
PASS: Final = "pass"
BREACH: Final = "breach"
INCONCLUSIVE: Final = "inconclusive"
InconclusivePolicy = Literal["fail", "pass"]
DEFAULT_INTERVAL_S = 2.0
QUERY_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Sample:
    """One evaluation: when (seconds into the window), its verdict, the values seen and why."""

    at_s: float
    verdict: Verdict
    values: tuple[float, ...] = ()
    reason: str = ""
    no_series: bool = False  # the query answered with nothing: no data (yet), or a wrong label


@dataclass(frozen=True)
class GateResult:
    """The window's verdict (pass, breach or inconclusive) and every sample taken."""

    query: str
    verdict: Verdict
    reason: str
    samples: tuple[Sample, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return self.verdict == PASS

    def as_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "verdict": self.verdict,
            "reason": self.reason,
            "samples": [
                {"at_s": round(s.at_s, 3), "verdict": s.verdict, "values": list(s.values), "reason": s.reason}
                for s in self.samples
            ],
        }


class BadQuery(errors.InputError):
    """Prometheus could not parse the gate's query."""


def query(prometheus_url: str, expr: str, *, timeout_s: float = QUERY_TIMEOUT_S) -> dict[str, Any]:
    """The `data` of an instant query. BadQuery when Prometheus cannot parse `expr`; TritonUnavailable
    (temporary) when it does not answer; TritonRequestError when it answers with another error."""
    url = f"{prometheus_url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    host = urllib.parse.urlsplit(url).hostname or ""
    opener = triton_server.LOOPBACK_OPENER if host in ("127.0.0.1", "localhost", "::1") else None
    try:
        with (opener.open if opener else urllib.request.urlopen)(url, timeout=timeout_s) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = _json_or_none(error.read())
        if body and body.get("errorType") == "bad_data":
            raise BadQuery(f"--gate {expr!r}: Prometheus cannot parse it: {body.get('error')}") from error
        detail = body.get("error") if body else f"HTTP {error.code}"
        raise errors.TritonRequestError(f"{prometheus_url}: the query failed: {detail}") from error
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise errors.TritonUnavailable(f"{prometheus_url}: Prometheus did not answer ({error})") from error
    if not isinstance(body, dict) or body.get("status") != "success":
        raise errors.TritonRequestError(f"{prometheus_url}: unexpected answer {str(body)[:200]}")
    return dict(body["data"])


def _json_or_none(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def sample(prometheus_url: str, expr: str, *, at_s: float = 0.0) -> Sample:
    """Evaluate `expr` once and judge it."""
    try:
        data = query(prometheus_url, expr)
    except BadQuery:
        raise
    except errors.TritonOpsError as error:
        return Sample(at_s, INCONCLUSIVE, (), str(error))
    values = _values(data)
    if not values:
        return Sample(
            at_s,
            INCONCLUSIVE,
            (),
            "the query returned no series (no data yet, or a wrong label?)",
            no_series=True,
        )
    odd = [value for value in values if value not in (0.0, 1.0)]
    if odd:
        shown = "NaN" if math.isnan(odd[0]) else f"{odd[0]:g}"
        return Sample(
            at_s, INCONCLUSIVE, values, f"value {shown} is neither 0 nor 1 (write the query with `bool`)"
        )
    if 0.0 in values:
        return Sample(at_s, BREACH, values, "the condition is false (0)")
    return Sample(at_s, PASS, values)


def _values(data: dict[str, Any]) -> tuple[float, ...]:
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list):
        return (float(result[1]),)
    if data.get("resultType") == "vector" and isinstance(result, list):
        return tuple(float(series["value"][1]) for series in result)
    return ()


def preflight(prometheus_url: str, expr: str, policy: InconclusivePolicy = "fail") -> None:
    """Before any replica is touched: refuse a query Prometheus cannot parse, and (unless inconclusive
    samples may pass) a Prometheus that does not answer; nothing has changed yet."""
    try:
        query(prometheus_url, expr)
    except BadQuery:
        raise
    except errors.TritonUnavailable as error:
        if policy == "fail":
            raise errors.InputError(
                f"--prometheus {prometheus_url}: {error}; the gate could not be evaluated, so nothing was "
                "changed (fix the URL, or pass --gate-inconclusive pass to promote without the gate's verdict)"
            ) from error
    except errors.TritonRequestError:
        pass  # an evaluation error now may clear once the candidate serves; samples will judge it


def check_window(window_s: float, interval_s: float = DEFAULT_INTERVAL_S) -> None:
    """InputError for a window or interval the gate cannot use (checked before anything changes)."""
    if not window_s >= 0:  # also refuses NaN
        raise errors.InputError(f"--gate-window {window_s:g}: the window must be >= 0 seconds")
    if not interval_s > 0:
        raise errors.InputError(f"gate interval {interval_s:g}: must be a positive number of seconds")


def observe(
    prometheus_url: str,
    expr: str,
    *,
    window_s: float,
    interval_s: float = DEFAULT_INTERVAL_S,
    policy: InconclusivePolicy = "fail",
    on_sample: Callable[[Sample], None] | None = None,
) -> GateResult:
    """Sample `expr` every `interval_s` until `window_s` has passed (first sample at once, last at the
    end of the window). Stops at the first breach, or at the first inconclusive sample unless
    `policy` is "pass" or it is a "no series" sample before any data was seen (a new version's
    series appear only once Prometheus has scraped it)."""
    check_window(window_s, interval_s)
    started = time.monotonic()
    samples: list[Sample] = []
    while True:
        now = time.monotonic() - started
        taken = sample(prometheus_url, expr, at_s=now)
        samples.append(taken)
        log.info("gate sample at %.1f s: %s %s %s", now, taken.verdict, list(taken.values), taken.reason)
        if on_sample:
            on_sample(taken)
        if taken.verdict == BREACH:
            return GateResult(expr, BREACH, f"breach at {now:.1f} s: {taken.reason}", tuple(samples))
        if taken.verdict == INCONCLUSIVE and policy == "fail" and not _waiting_for_data(samples):
            return GateResult(
                expr,
                INCONCLUSIVE,
                f"inconclusive at {now:.1f} s: {taken.reason} (--gate-inconclusive pass would carry on)",
                tuple(samples),
            )
        remaining = window_s - (time.monotonic() - started)
        if remaining <= 0:
            break
        time.sleep(min(interval_s, remaining))
    judged = [s for s in samples if s.verdict == PASS]
    if not judged and policy == "fail":
        return GateResult(
            expr,
            INCONCLUSIVE,
            f"no data in the whole {window_s:g} s window: {samples[-1].reason} (a longer --gate-window "
            "gives Prometheus time to scrape the new version; --gate-inconclusive pass would carry on)",
            tuple(samples),
        )
    waited = 0 if not judged else samples.index(judged[0])
    skipped = sum(1 for s in samples if s.verdict == INCONCLUSIVE) - waited
    notes = [f"{waited} sample(s) before its first series" if waited else ""]
    notes.append(f"{skipped} inconclusive sample(s) let pass" if skipped else "")
    note = "; ".join(n for n in notes if n)
    return GateResult(
        expr,
        PASS,
        f"{len(judged)} sample(s) over {window_s:g} s all 1" + (f" ({note})" if note else ""),
        tuple(samples),
    )


def _waiting_for_data(samples: list[Sample]) -> bool:
    """Whether the last sample is a "no series" one and no sample before it had data."""
    return samples[-1].no_series and all(s.no_series for s in samples)
