"""The PromQL gate against a real Prometheus scraping a metrics page the test controls: pass, breach
and the inconclusive cases (no series, a value that is not 0/1, Prometheus down)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tests import loopback_page
from tritonops import errors
from tritonops.observability import prometheus as prom
from tritonops.promotion import gate
from tritonops.triton import server as triton_server

HEALTHY = 'sum(rate(nv_inference_request_failure{model="good"}[5s])) == bool 0'
FAILING = 'sum(rate(nv_inference_request_failure{model="bad"}[5s])) == bool 0'


# While set, the scraped page also shows a model `late` (a candidate Prometheus has just found).
LATE = threading.Event()


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus scraping a page where model `good` never fails and `bad` fails more at
    every scrape; yields its URL once both series have enough samples for a rate."""
    if not prom.shutil.which("prometheus"):
        pytest.skip("prometheus not installed (Debian: apt-get install prometheus)")
    lock, failures = threading.Lock(), [0]

    def page() -> bytes:
        with lock:
            failures[0] += 3
            count = failures[0]
        late = 'nv_inference_request_failure{model="late",reason="BACKEND",version="2"} 0\n'
        return (
            "# TYPE nv_inference_request_failure counter\n"
            f'nv_inference_request_failure{{model="good",reason="BACKEND",version="1"}} 0\n'
            f'nv_inference_request_failure{{model="bad",reason="BACKEND",version="1"}} {count}\n'
            + (late if LATE.is_set() else "")
        ).encode()

    with loopback_page.serve(page) as address:
        config = {
            "global": {"scrape_interval": "500ms", "evaluation_interval": "500ms"},
            "scrape_configs": [{"job_name": "triton", "static_configs": [{"targets": [address]}]}],
        }
        (port,) = triton_server.free_ports(1)
        server = prom.Prometheus(config, tmp_path_factory.mktemp("gate-prometheus"), port)
        try:
            server.wait_ready()
            deadline = time.monotonic() + 20
            while gate.sample(server.url, FAILING).verdict != gate.BREACH:
                assert time.monotonic() < deadline, "Prometheus never had two samples of the page"
                time.sleep(0.25)
            yield server.url
        finally:
            server.stop()


def test_a_healthy_model_passes_every_sample_of_the_window(prometheus_url):
    result = gate.observe(prometheus_url, HEALTHY, window_s=1.5, interval_s=0.5)
    assert result.passed and result.verdict == gate.PASS
    assert len(result.samples) >= 3 and all(s.values == (1.0,) for s in result.samples)
    assert result.as_dict()["samples"][0]["verdict"] == "pass"


def test_failures_breach_at_the_first_sample_and_stop(prometheus_url):
    seen = []
    result = gate.observe(prometheus_url, FAILING, window_s=30, interval_s=0.5, on_sample=seen.append)
    assert result.verdict == gate.BREACH and not result.passed
    assert len(result.samples) == 1 and seen == list(result.samples)
    assert "breach at" in result.reason and "the condition is false (0)" in result.reason


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ('sum(nv_inference_request_failure{model="good"}) + 2', "value 2 is neither 0 nor 1"),
        ('sum(rate(nv_inference_request_failure{model="good"}[5s])) / 0', "value NaN is neither 0 nor 1"),
    ],
    ids=["not-bool", "nan"],
)
def test_an_unjudgeable_value_is_inconclusive_and_fails_by_default(prometheus_url, expr, words):
    result = gate.observe(prometheus_url, expr, window_s=30, interval_s=0.5)
    assert result.verdict == gate.INCONCLUSIVE and not result.passed
    assert words in result.reason and "--gate-inconclusive pass" in result.reason


def test_a_window_without_any_series_is_inconclusive_and_fails_by_default(prometheus_url):
    empty = 'nv_inference_request_failure{model="nope"} == bool 0'
    result = gate.observe(prometheus_url, empty, window_s=1.5, interval_s=0.5)
    assert result.verdict == gate.INCONCLUSIVE and not result.passed
    # Every sample of the window was taken: a new version's series may appear late.
    assert len(result.samples) >= 3 and all(s.no_series for s in result.samples)
    assert "no data in the whole 1.5 s window: the query returned no series" in result.reason
    assert "a longer --gate-window" in result.reason


def test_series_that_appear_after_the_first_samples_are_waited_for_then_judged(prometheus_url):
    """A candidate's series exist only once Prometheus has scraped it: the gate waits for them."""
    late = 'nv_inference_request_failure{model="late"} == bool 0'
    timer = threading.Timer(1.0, LATE.set)
    timer.start()
    try:
        result = gate.observe(prometheus_url, late, window_s=4, interval_s=0.5)
    finally:
        timer.cancel()
        LATE.clear()
    assert result.verdict == gate.PASS, result.reason
    assert result.samples[0].no_series and result.samples[-1].values == (1.0,)
    assert "before its first series" in result.reason


def test_series_that_vanish_after_data_was_seen_are_inconclusive(prometheus_url):
    late = 'nv_inference_request_failure{model="late"} == bool 0'
    LATE.set()
    try:
        deadline = time.monotonic() + 10
        while gate.sample(prometheus_url, late).verdict != gate.PASS:
            assert time.monotonic() < deadline, "the late series never appeared"
            time.sleep(0.25)
        timer = threading.Timer(0.6, LATE.clear)
        timer.start()
        # Prometheus marks a series stale at the first scrape without it: the sample after says so.
        result = gate.observe(prometheus_url, late, window_s=10, interval_s=0.5)
        timer.cancel()
    finally:
        LATE.clear()
    assert result.verdict == gate.INCONCLUSIVE, result.reason
    assert result.samples[0].verdict == gate.PASS and result.samples[-1].no_series


def test_inconclusive_samples_may_pass_when_asked_but_a_breach_still_fails(prometheus_url):
    empty = 'nv_inference_request_failure{model="nope"} == bool 0'
    tolerated = gate.observe(prometheus_url, empty, window_s=1.0, interval_s=0.5, policy="pass")
    assert tolerated.passed and all(s.verdict == gate.INCONCLUSIVE for s in tolerated.samples)
    assert "inconclusive sample(s) let pass" in tolerated.reason
    assert (
        gate.observe(prometheus_url, FAILING, window_s=1.0, interval_s=0.5, policy="pass").verdict
        == gate.BREACH
    )


def test_prometheus_down_is_inconclusive_and_refused_before_anything_changes():
    (port,) = triton_server.free_ports(1)
    down = f"http://127.0.0.1:{port}"
    result = gate.observe(down, HEALTHY, window_s=10, interval_s=0.5)
    assert result.verdict == gate.INCONCLUSIVE and "Prometheus did not answer" in result.reason
    with pytest.raises(errors.InputError, match=f"--prometheus {down}: .*nothing was changed"):
        gate.preflight(down, HEALTHY)
    gate.preflight(down, HEALTHY, policy="pass")  # the user asked to go on without a verdict


def test_a_query_prometheus_cannot_parse_is_bad_input(prometheus_url):
    with pytest.raises(errors.InputError, match=r"--gate 'sum\(rate\(': Prometheus cannot parse it"):
        gate.preflight(prometheus_url, "sum(rate(")
