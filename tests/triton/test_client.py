"""Reading Triton's /metrics page (the Prometheus text format) with prometheus_client's parser."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import loopback_page
from tritonops import errors
from tritonops.triton import client as triton_client
from tritonops.triton import server as triton_server

# The shape of Triton 2.51's page: HELP and TYPE lines, counters without a _total suffix.
TRITON_PAGE = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="linear",version="1"} 3
nv_inference_request_success{model="mlp",version="1"} 2
# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="linear",reason="BACKEND",version="1"} 1
# HELP nv_cpu_memory_used_bytes CPU free memory (RAM), in bytes
# TYPE nv_cpu_memory_used_bytes gauge
nv_cpu_memory_used_bytes 123456789
"""


def series(metric: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return metric, tuple(sorted(labels.items()))


def test_counters_keep_the_names_the_page_gives_them():
    # prometheus_client alone would read these as nv_inference_request_success_total (OpenMetrics).
    samples = triton_client.parse_metrics(TRITON_PAGE)
    assert samples == {
        series("nv_inference_request_success", model="linear", version="1"): 3.0,
        series("nv_inference_request_success", model="mlp", version="1"): 2.0,
        series("nv_inference_request_failure", model="linear", reason="BACKEND", version="1"): 1.0,
        series("nv_cpu_memory_used_bytes"): 123456789.0,
    }
    assert triton_client.metric_total(samples, "nv_inference_request_success") == 5.0
    assert triton_client.metric_total(samples, "nv_inference_request_success", model="mlp") == 2.0


def test_a_counter_named_with_total_keeps_its_suffix():
    page = '# TYPE requests_total counter\nrequests_total{code="200"} 7\n'
    assert triton_client.parse_metrics(page) == {series("requests_total", code="200"): 7.0}


def test_label_values_are_unescaped_and_may_hold_braces_and_commas():
    page = 'm{model="a}b,c",path="C:\\\\models",quote="say \\"hi\\""} 1\n'
    assert triton_client.parse_metrics(page) == {
        series("m", model="a}b,c", path="C:\\models", quote='say "hi"'): 1.0
    }


def test_histogram_and_summary_series_keep_their_suffixes_and_timestamps_are_ignored():
    page = """\
# TYPE latency histogram
latency_bucket{le="100"} 1
latency_bucket{le="+Inf"} 2
latency_sum 150
latency_count 2
# TYPE queue summary
queue{quantile="0.5"} 3
queue_count 4 1700000000000
"""
    samples = triton_client.parse_metrics(page)
    assert samples[series("latency_bucket", le="+Inf")] == 2.0
    assert samples[series("latency_sum")] == 150.0
    assert samples[series("queue", quantile="0.5")] == 3.0
    assert samples[series("queue_count")] == 4.0


@pytest.fixture
def page_server() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback HTTP server answering every GET with the body in its list (set by the test)."""
    body: list[bytes] = [b""]
    with loopback_page.serve(lambda: body[0]) as address:
        yield f"http://{address}/metrics", body


def test_scrape_reads_the_page_over_http(page_server):
    url, body = page_server
    body[0] = TRITON_PAGE.encode()
    assert triton_client.scrape_metrics(url) == triton_client.parse_metrics(TRITON_PAGE)


def test_a_page_that_is_not_prometheus_text_is_refused_naming_the_url(page_server):
    url, body = page_server
    body[0] = b"<html><body>not metrics</body></html>\n"
    with pytest.raises(errors.TritonRequestError, match=f"{url}: not a Prometheus text page"):
        triton_client.scrape_metrics(url)


def test_no_answer_is_temporary_and_names_the_url():
    (port,) = triton_server.free_ports(1)
    url = f"http://{triton_server.LOOPBACK}:{port}/metrics"
    with pytest.raises(errors.TritonUnavailable, match=f"{url}: no metrics"):
        triton_client.scrape_metrics(url, timeout_s=2.0)


@pytest.mark.parametrize("page", ["busy", "idle"])
def test_a_real_gpu_triton_page_keeps_every_series(page):
    """Pages captured from Triton 2.51 on an H200 (GPU metrics on): every sample line survives with
    its name, labels and value, counters, gauges and summaries alike."""
    text = (Path(__file__).parent / "resources" / f"h200-triton-2.51-metrics-{page}.txt").read_text()
    expected = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, _, labels = head.partition("{")
        pairs = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', labels)))
        expected[(name, pairs)] = float(value)
    parsed = triton_client.parse_metrics(text)
    assert len(expected) > 100 and any(name.startswith("nv_gpu_") for name, _ in expected)
    assert parsed.keys() == expected.keys()
    for key, value in expected.items():
        assert parsed[key] == value or (math.isnan(value) and math.isnan(parsed[key])), key
    assert all(isinstance(value, float) for value in parsed.values())
