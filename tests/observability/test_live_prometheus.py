"""Live: a real Prometheus on loopback scrapes the local runtime's replicas with a configuration
derived from the rendered ServiceMonitor and loads the rendered PrometheusRule. Traffic flows;
the recording rules and every dashboard query return data; stopping a replica and unloading a
model make the matching alerts go pending, then firing.

There is no Kubernetes here, so a stand-in for kube-state-metrics (tests/observability/kube_state.py)
serves the pod and Deployment series the rules read (Ready condition, phase, the Triton container's
start time and restart count, replicas wanted and available), derived on every scrape from the
runtime's own kubelet-like state."""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests import committing
from tests.chart import helpers as chart_helpers
from tests.observability import kube_state
from tests.runtime.conftest import free_port_offset
from tritonops.chart import render
from tritonops.observability import dashboard
from tritonops.observability import prometheus as prom
from tritonops.observability import rule_file as rules
from tritonops.repository import config_generator, example_repository
from tritonops.runtime import control, workspace
from tritonops.triton import client as triton_client
from tritonops.triton import onnx_models
from tritonops.triton import server as triton_server

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="prometheus is not installed (make setup)"
)

LIVE_VALUES = Path(__file__).parent / "resources" / "live-values.yaml"
NAMESPACE = "triton-local"


def _eventually(check: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout_s} s (last: {last})")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Two replicas on the sample repository plus a compute-heavy model, and Prometheus on them
    and on the kube-state-metrics stand-in."""
    root = tmp_path_factory.mktemp("live")
    repository = root / "models"
    shutil.copytree(example_repository.DEFAULT_OUTPUT, repository)
    heavy = onnx_models.compute_heavy(repository / "heavy" / "1" / "model.onnx")
    options = config_generator.GenerateOptions(name="heavy", max_batch_size=8, instances=1)
    (repository / "heavy" / "config.pbtxt").write_text(config_generator.generate(heavy, options))
    # Only the recording-rule test sends to `batches`: no other test's requests enter its 1m window.
    batches = onnx_models.linear(repository / "batches" / "1" / "model.onnx")
    options = config_generator.GenerateOptions(name="batches", max_batch_size=8, instances=1)
    (repository / "batches" / "config.pbtxt").write_text(config_generator.generate(batches, options))
    runtime_dir = root / "runtime"
    current = control.up(
        "local",
        work_dir=runtime_dir,
        replicas=2,
        repository=repository,
        port_offset=free_port_offset(2),
        extra_files=(LIVE_VALUES,),
        set_values=("server.loadModels={linear,heavy,batches}",),
    )
    prometheus = None
    try:
        assert current.all_ready, control.describe(current)
        item = render.render("local", extra_files=[LIVE_VALUES])
        deployment = item.one("Deployment")["metadata"]["name"]
        with kube_state.serve(runtime_dir, NAMESPACE, deployment) as stand_in:
            targets = [
                prom.Target(
                    kube_state.pod_name(r.index),
                    f"127.0.0.1:{r.ports['metrics']}",
                    (("agent-metrics", f"127.0.0.1:{r.sidecar('agent').ports['agent-metrics']}"),),
                )
                for r in current.replicas
            ]
            config = prom.prometheus_config(item, targets, root / "rules.yaml")
            config["scrape_configs"].append(kube_state.scrape_job(stand_in))
            (port,) = triton_server.free_ports(1)
            prometheus = prom.Prometheus(config, root / "prometheus", port)
            prometheus.wait_ready()
            yield current, prometheus, config
    finally:
        if prometheus is not None:
            prometheus.stop()
        control.down(runtime_dir)


def _client(current, replica: int = 0) -> triton_client.Client:
    return triton_client.Client(
        current.replicas[replica].url.removeprefix("http://"),
        api_header=current.api_header,
        api_key=current.api_key(),
    )


def test_scrape_job_is_derived_from_the_service_monitor(stack):
    _, prometheus, config = stack
    job, agent_job, kube_state_job = config["scrape_configs"]
    assert kube_state_job["job_name"] == "kube-state-metrics"
    assert job["metrics_path"] == "/metrics" and job["scrape_interval"] == "1s"
    assert {c["labels"]["job"] for c in job["static_configs"]} == {"triton"}
    assert {c["labels"]["namespace"] for c in job["static_configs"]} == {NAMESPACE}
    # The agent's endpoint: the same Service and pods, under the job its relabeling names.
    assert {c["labels"]["job"] for c in agent_job["static_configs"]} == {"triton-agent"}
    assert {c["labels"]["endpoint"] for c in agent_job["static_configs"]} == {"agent-metrics"}
    for name in ("triton", "triton-agent"):
        _eventually(
            lambda name=name: len(prometheus.query(f'up{{namespace="{NAMESPACE}", job="{name}"}} == 1')) == 2,
            20,
            f"both {name} targets up",
        )


# kube-state-metrics series the rules read that the stand-in cannot serve honestly: no pod is ever
# deleted by the local runtime, and it has no rollouts (no Deployment conditions).
NOT_SERVED = {"kube_pod_deletion_timestamp", "kube_deployment_status_condition"}


def test_the_stand_in_serves_every_kube_state_series_the_rules_read(stack):
    current, prometheus, _ = stack
    item = render.render("local", extra_files=[LIVE_VALUES])
    read = {
        name
        for group in rules.rule_file(item)["groups"]
        for rule in group["rules"]
        for name in re.findall(r"\b(kube_[a-z_]+)\{", rule["expr"])
    }
    assert read.issuperset(NOT_SERVED), "the rules no longer read what NOT_SERVED excuses"
    for name in sorted(read - NOT_SERVED):
        _eventually(lambda name=name: prometheus.query(f'{name}{{namespace="{NAMESPACE}"}}'), 20, name)
    wanted = f'kube_deployment_spec_replicas{{namespace="{NAMESPACE}"}} == {len(current.replicas)}'
    _eventually(lambda: prometheus.query(wanted), 20, "the Deployment's replicas")

    def restarts_agree() -> bool:
        """Prometheus' restart counts are the runtime's (compared after a scrape, retried)."""
        scraped = prometheus.query(f'kube_pod_container_status_restarts_total{{namespace="{NAMESPACE}"}}')
        runtime = control.status(current.work_dir).replicas
        return {s["metric"]["pod"]: int(s["value"][1]) for s in scraped} == {
            kube_state.pod_name(r.index): kube_state.restart_count(r) for r in runtime
        }

    _eventually(restarts_agree, 20, "restart counts as the runtime's")


def test_recording_rules_match_what_the_client_measured(stack):
    current, prometheus, _ = stack
    batch = np.full((1, 1), 0.5, dtype=np.float32)
    latencies = []
    with _client(current) as client:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            start = time.perf_counter()
            client.infer("heavy", {"input": batch})
            latencies.append((time.perf_counter() - start) * 1e6)
        for _ in range(20):
            client.infer("batches", {"input": np.ones((4, 4), dtype=np.float32)})  # batch 4
    client_mean = statistics.mean(latencies)

    def recorded():
        result = prometheus.query(
            f'triton:request_latency_us:mean1m{{namespace="{NAMESPACE}", model="heavy"}}'
        )
        return float(result[0]["value"][1]) if result and result[0]["value"][1] != "NaN" else None

    server_mean = _eventually(recorded, 20, "per-request latency recorded")
    # Triton's request duration leaves out the client's own time and the HTTP round trip, which
    # grows when the machine is busy (parallel test files): at most what the client saw, and near it.
    assert 0.75 < server_mean / client_mean <= 1.05, (server_mean, client_mean)
    batch_size = _eventually(
        lambda: prometheus.query(f'triton:batch_size:mean1m{{namespace="{NAMESPACE}", model="batches"}} > 0'),
        20,
        "batch size",
    )
    assert float(batch_size[0]["value"][1]) == pytest.approx(4.0)
    rate = prometheus.query(f'triton:requests:rate1m{{namespace="{NAMESPACE}", model="heavy"}}')
    assert rate and float(rate[0]["value"][1]) > 0


def test_every_dashboard_query_returns_data(stack):
    _, prometheus, _ = stack
    queries = dashboard.panel_queries(dashboard.build())
    # No GPU on this machine: the GPU panels are checked by the dashboard tests only.
    checked = [(title, expr) for title, expr, needs_gpu in queries if not needs_gpu]
    assert checked and len(checked) < len(queries), "GPU panels exist and are marked"
    # One deadline for all: each query returns data by then, or the failure names its panel.
    pending = dict(enumerate(checked))
    deadline = time.monotonic() + 20
    while pending and time.monotonic() < deadline:
        pending = {index: query for index, query in pending.items() if not prometheus.query(query[1])}
        if pending:
            time.sleep(0.5)
    assert not pending, f"no data within 20 s for {sorted(title for title, _ in pending.values())}"


def _keep_busy(current, seconds: float) -> None:
    """Two concurrent clients per replica on `heavy` (one instance): requests queue on every pod."""

    def send(replica: int) -> None:
        batch = np.full((1, 1), 0.5, dtype=np.float32)
        with _client(current, replica) as client:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                client.infer("heavy", {"input": batch})

    with ThreadPoolExecutor(max_workers=2 * len(current.replicas)) as pool:
        for future in [pool.submit(send, r.index) for r in current.replicas for _ in range(2)]:
            future.result()


def _per_pod(prometheus, expr: str) -> dict[str, float]:
    return {series["metric"]["pod"]: float(series["value"][1]) for series in prometheus.query(expr)}


def test_adapter_and_keda_queries_serve_the_recorded_queue_time_per_pod(stack):
    """The prometheus-adapter rule's metricsQuery (filled as the adapter fills it for a Pods metric)
    and the ScaledObject's query, as rendered, against the scraped series: a value for every pod,
    equal to the chart's queue-time recording rule taken per pod, and one series for KEDA."""
    current, prometheus, _ = stack
    pods = [kube_state.pod_name(r.index) for r in current.replicas]
    item = render.render(
        "local",
        extra_files=[LIVE_VALUES],
        set_values=(
            "autoscaling.enabled=true",
            "autoscaling.engine=keda",
            f"autoscaling.keda.serverAddress={prometheus.url}",
        ),
    )
    (trigger,) = item.one("ScaledObject")["spec"]["triggers"]
    keda_query = trigger["metadata"]["query"]
    adapter_query = chart_helpers.adapter_query(chart_helpers.adapter_rule(), NAMESPACE, pods)
    (recorded,) = [
        rule["expr"]
        for group in rules.rule_file(item)["groups"]
        for rule in group["rules"]
        if rule.get("record") == "triton:queue_time_us:mean1m"
    ]
    # The recording rule is per model over 1m; the autoscalers want it per pod over the adapter's 2m.
    assert recorded.count("by (namespace, model)") == 2 and recorded.count("[1m]") == 2, recorded
    rule_per_pod = recorded.replace("by (namespace, model)", "by (pod)").replace("[1m]", "[2m]")
    _keep_busy(current, seconds=3)

    def every_pod_queued() -> dict[str, float] | None:
        values = _per_pod(prometheus, adapter_query)
        return values if set(values) == set(pods) and all(v > 0 for v in values.values()) else None

    _eventually(every_pod_queued, 20, "queue time per request for every pod from the adapter's query")
    # One query per comparison: both sides are evaluated at the same instant, on the same samples.
    ratios = _per_pod(prometheus, f"({adapter_query}) / on (pod) ({rule_per_pod})")
    assert ratios.keys() == set(pods) and all(r == pytest.approx(1.0, rel=0.01) for r in ratios.values()), (
        ratios
    )
    (keda,) = prometheus.query(keda_query)  # exactly one series, as KEDA requires
    assert float(keda["value"][1]) > 0
    (mean,) = prometheus.query(f"({keda_query}) / scalar(avg({rule_per_pod}))")
    assert float(mean["value"][1]) == pytest.approx(1.0, rel=0.01)


def _ready_in_prometheus(prometheus, pod: str) -> bool:
    ready = f'kube_pod_status_ready{{namespace="{NAMESPACE}", pod="{pod}", condition="true"}} == 1'
    return bool(prometheus.query(ready))


def test_stopping_a_ready_replica_fires_target_down_after_pending(stack):
    current, prometheus, _ = stack
    victim = current.replicas[1]
    # TargetDown counts only pods that are ready or past their startup budget: this one is ready.
    _eventually(
        lambda: _ready_in_prometheus(prometheus, kube_state.pod_name(1)), 20, "replica 1 ready in Prometheus"
    )
    os.kill(victim.pid, signal.SIGSTOP)  # hung: the scrape times out, liveness has not acted yet
    try:
        states = _alert_states(prometheus, "TritonTargetDown", {"pod": kube_state.pod_name(1)}, timeout_s=30)
    finally:
        os.kill(victim.pid, signal.SIGCONT)
    assert states[:2] == ["pending", "firing"], states


def _loaded_on(prometheus, model: str) -> set[str]:
    """The pods Prometheus last scraped `model` from."""
    result = prometheus.query(f'nv_inference_exec_count{{namespace="{NAMESPACE}", model="{model}"}}')
    return {series["metric"]["pod"] for series in result}


def test_unloading_a_model_fires_load_failing_per_pod_then_model_unavailable(stack):
    current, prometheus, _ = stack
    pods = {kube_state.pod_name(r.index) for r in current.replicas}
    _eventually(lambda: _loaded_on(prometheus, "linear") == pods, 20, "linear scraped on every replica")
    _eventually(
        lambda: all(_ready_in_prometheus(prometheus, pod) for pod in pods), 30, "every replica ready again"
    )
    # The agents would load the committed model straight back (tests/runtime/test_agent.py): paused,
    # the unload sticks, as it does on a pod whose agent is down.
    agents = [r.sidecar("agent").pid for r in control.status(current.work_dir).replicas]
    for pid in agents:
        os.kill(pid, signal.SIGSTOP)
    try:
        # One replica loses a committed model: the readiness check takes it out (that pod's alert);
        # the model still serves on the other replica, so nothing fires for the model.
        with _client(current, 0) as client:
            client.unload("linear")
        _eventually(
            lambda: _loaded_on(prometheus, "linear") == pods - {kube_state.pod_name(0)},
            20,
            "linear gone from 0",
        )
        states = _alert_states(
            prometheus, "TritonModelLoadFailing", {"pod": kube_state.pod_name(0)}, timeout_s=30
        )
        assert states[:2] == ["pending", "firing"], states
        assert not [a for a in prometheus.alerts() if a["labels"]["alertname"] == "TritonModelUnavailable"]
        # Gone from every replica: the model is unavailable (one alert per model, no pod label).
        with _client(current, 1) as client:
            client.unload("linear")
        states = _alert_states(prometheus, "TritonModelUnavailable", {"model": "linear"}, timeout_s=30)
        assert states[:2] == ["pending", "firing"], states
        (unavailable,) = [
            a for a in prometheus.alerts() if a["labels"]["alertname"] == "TritonModelUnavailable"
        ]
        assert "pod" not in unavailable["labels"]
    finally:
        for replica in (0, 1):
            with _client(current, replica) as client:
                client.load("linear")
        for pid in agents:
            os.kill(pid, signal.SIGCONT)


def _firing_or_pending(prometheus, name: str) -> list[dict]:
    return [a for a in prometheus.alerts() if a["labels"]["alertname"] == name]


def test_the_agents_metrics_drive_the_drift_and_load_failure_alerts(stack):
    """Each pod's agent exports committed against served versions: during a promotion (a live lock)
    drift does not alert; a committed version that cannot load fires TritonModelLoadFailed at once
    and TritonModelVersionDrift after its `for`; converging resolves the drift, and the dashboard's
    annotation marks each change of the committed version."""
    current, prometheus, _ = stack
    repository = Path(workspace.Workspace(current.work_dir).read_plan()["repository"])
    pods = {kube_state.pod_name(r.index) for r in current.replicas}
    drifting = f'tritonops_model_drift{{namespace="{NAMESPACE}", job="triton-agent", model="linear"}} == 1'
    committing.add_version(repository, "linear", 2, broken=True)
    committing.write_lock(repository)
    try:
        # The agents see the lock before the record changes, as in a promotion: each scrape that
        # shows drift also shows the promotion, so no rule evaluation can see one without the other.
        in_progress = f'tritonops_promotion_in_progress{{namespace="{NAMESPACE}"}} == 1'
        _eventually(lambda: len(prometheus.query(in_progress)) == 2, 30, "both agents seeing the promotion")
        committing.commit(repository, "linear", 2)
        _eventually(lambda: len(prometheus.query(drifting)) == 2, 30, "both pods drifting in Prometheus")
        # A live holder heartbeats: a fresh one now, so the agents cannot call the lock stale (60 s
        # unchanged) during the waits above and the check below.
        committing.write_lock(repository)
        # Three times the rule's `for`, evaluated every second: a promotion's drift never alerts.
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            assert not _firing_or_pending(prometheus, "TritonModelVersionDrift")
            time.sleep(0.5)
        committing.remove_lock(repository)  # the agents now try version 2, which cannot load
        seen: dict[str, list[str]] = {pod: [] for pod in pods}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(states[-1:] != ["firing"] for states in seen.values()):
            for alert in _firing_or_pending(prometheus, "TritonModelVersionDrift"):
                states = seen.get(alert["labels"].get("pod", ""))
                if states is not None and states[-1:] != [alert["state"]]:
                    states.append(alert["state"])
            time.sleep(0.25)
        assert all(states[:2] == ["pending", "firing"] for states in seen.values()), seen
        for pod in pods:
            failed = _alert_states(
                prometheus, "TritonModelLoadFailed", {"pod": pod, "model": "linear", "version": "2"}, 30
            )
            assert failed[-1] == "firing", failed
    finally:
        committing.remove_lock(repository)
        committing.commit(repository, "linear", 1)
    # Version 1 never stopped serving: with the record back on it, the pods converge at once.
    _eventually(
        lambda: (
            not prometheus.query(drifting) and not _firing_or_pending(prometheus, "TritonModelVersionDrift")
        ),
        30,
        "drift resolved",
    )
    ((_, annotation),) = dashboard.annotation_queries(dashboard.build())
    assert {s["metric"]["model"] for s in prometheus.query(annotation)} == {"linear"}
    _eventually(
        lambda: all(_ready_in_prometheus(prometheus, pod) for pod in pods), 30, "every replica ready again"
    )


def test_prometheus_reports_rule_evaluation_cost(stack):
    _, prometheus, _ = stack

    def evaluated():
        # Prometheus reports Go's zero time, a non-empty string, for a group it has not evaluated yet.
        groups = {group["name"]: group for group in prometheus.rule_groups()}
        return all(not g["lastEvaluation"].startswith("0001-01-01") for g in groups.values()) and groups

    groups = _eventually(evaluated, 20, "every rule group evaluated")
    assert set(groups) == {"triton.recording", "triton.alerts"}
    for name, group in groups.items():
        assert group["rules"] and group["evaluationTime"] >= 0, name
        # Evaluated without error (a PromQL mistake that promtool's static check cannot see).
        assert all(rule["health"] == "ok" for rule in group["rules"]), [
            (rule["name"], rule.get("lastError")) for rule in group["rules"] if rule["health"] != "ok"
        ]
        print(f"{name}: {len(group['rules'])} rules evaluated in {group['evaluationTime'] * 1000:.2f} ms")


def _alert_states(prometheus, name: str, labels: dict[str, str], timeout_s: float) -> list[str]:
    """The states the alert passed through, in order, until it fires."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for alert in prometheus.alerts():
            if (
                alert["labels"].get("alertname") == name
                and all(alert["labels"].get(k) == v for k, v in labels.items())
                and (not seen or seen[-1] != alert["state"])
            ):
                seen.append(alert["state"])
        if seen and seen[-1] == "firing":
            return seen
        time.sleep(0.25)
    raise AssertionError(f"{name} {labels} did not fire within {timeout_s} s; states seen: {seen}")
