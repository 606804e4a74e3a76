"""The load harness: 8 clients on a real Triton record every answer with the version that gave it,
and the figures (failures, per-version counts, p99 inside a window vs outside, timeline)."""

from __future__ import annotations

import time

from google.protobuf import json_format

from tritonops.promotion import replicas, traffic


def answer(at_s: float, seconds: float, version: int | None = 1) -> traffic.Answer:
    return traffic.Answer(at_s, seconds, "r0", version, "" if version else "boom")


def test_the_report_compares_a_window_with_the_rest_and_buckets_a_timeline():
    answers = [answer(i * 0.1, 0.010) for i in range(20)] + [answer(0.5, 0.050, 2), answer(0.55, 0.2, None)]
    report = traffic.TrafficReport(
        "m", 8, 2.0, tuple(answers), (traffic.Mark(0.5, "load"), traffic.Mark(0.6, "commit"))
    )
    swap = report.swap(report.mark("load"), report.mark("commit"))
    # In flight during [0.5, 0.6): the ones sent at 0.5 (two) and 0.55, and the one sent at 0.4 is done by 0.41.
    assert swap["swap_requests"] == 3 and swap["failed"] == 1
    assert swap["steady_p99_ms"] == 10.0 and swap["swap_p99_ms"] > 40 and swap["ratio"] > 4
    assert report.by_version() == {1: 20, 2: 1} and len(report.failed) == 1
    timeline = report.timeline(bucket_s=0.5)
    assert [row["requests"] for row in timeline] == [5, 7, 5, 5]
    assert timeline[1]["failed"] == 1 and timeline[1]["versions"] == {"1": 5, "2": 1}


def test_clients_record_which_version_answered_and_triton_counts_the_same(server, client, figures):
    replica = replicas.Replica("r0", server.url.removeprefix("http://"), server.grpc_url)
    config = json_format.MessageToDict(client.model_config("linear"), preserving_proto_field_name=True)
    with traffic.Traffic([replica], "linear", clients=8) as running:
        running.wait_for(50)
        running.mark("widen")
        config["version_policy"] = {"specific": {"versions": [1, 2]}}
        client.load("linear", config=config)
        running.mark("widened")
        running.wait_for(len(running.report().answers) + 50)
    report = running.report()
    # Triton counts a request in its statistics just after it answers: the last ones may lag a read.
    settled = time.monotonic() + 5
    counted = client.request_counts("linear")
    while counted[2].answered < report.by_version()[2] and time.monotonic() < settled:
        time.sleep(0.05)
        counted = client.request_counts("linear")
    config["version_policy"] = {"specific": {"versions": [1]}}
    client.load("linear", config=config)  # back to what the other tests expect
    assert report.failed == [] and len(report.answers) > 100
    before = [a for a in report.answers if a.at_s + a.seconds < report.mark("widen")]
    assert before and {a.version for a in before} == {1}
    # The higher version takes the unversioned traffic once it is ready (design: highest ready wins).
    after = [a for a in report.answers if a.at_s > report.mark("widened")]
    assert after and {a.version for a in after} == {2}
    assert report.by_version()[2] == counted[2].answered
    # One item per request; the dynamic batcher ran them in fewer executions than requests or as many.
    assert counted[2].inferences == counted[2].answered and 0 < counted[2].executions <= counted[2].inferences
    swap = report.swap(report.mark("widen"), report.mark("widened"))
    figures(f"[traffic across a widening load] {report.summary()}; swap {swap}")
