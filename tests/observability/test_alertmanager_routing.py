"""The platform's Alertmanager routing: each environment's alerts reach only that environment's
receivers (amtool on the committed file), and inhibition works in a real Alertmanager: per pod for
a target that is down, per release when every target is gone, never across two releases that
share a namespace."""

from __future__ import annotations

import itertools
import json
import re
import shlex
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.observability.test_alert_rules import RELEASE, alert_tests

CONFIG = ROOT / "monitoring" / "alertmanager.yaml"
DEV = {"triton-dev"}
PROD = {"triton-prod", "triton-prod-page"}
SINK = "http://alert-sink.monitoring.svc.cluster.local/"
SYMPTOMS = (
    "TritonModelUnavailable",
    "TritonHighMeanLatency",
    "TritonHighP99Latency",
    "TritonQueueTimeHigh",
    "TritonErrorRatioHigh",
    "TritonErrorBudgetBurn",
)
NAMESPACES = ("triton-dev", "triton-prod", "triton-staging", "monitoring", "default", None)
SEVERITIES = ("critical", "warning", "info", None)
PER_POD = ("TritonModelLoadFailing", "TritonGPUMemoryCritical")
ALERTNAMES = ("TritonTargetDown", "TritonHighMeanLatency", "TritonPodCrashLooping", "KubePodNotReady")
START_TIMEOUT_S = 15.0
INHIBIT_TIMEOUT_S = 10.0


def routes(
    amtool: str, labels: dict[str, str], *, config: Path = CONFIG, verify: str | None = None
) -> list[str]:
    """The receivers amtool resolves `labels` to, from its printed list (comma-separated, in tree order).

    With `verify`, amtool must also accept the list (`--verify.receivers`, exit 0)."""
    command = [amtool, "config", "routes", "test", f"--config.file={config}"]
    if verify is not None:
        command.append(f"--verify.receivers={verify}")
    command += [f"{name}={value}" for name, value in labels.items()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    printed = result.stdout.splitlines()[0] if result.stdout else ""
    if verify is not None:
        assert result.returncode == 0, f"{labels}: expected {verify}, amtool printed {result.stdout!r}"
    else:
        assert result.returncode == 0, result.stdout + result.stderr
    return printed.split(",")


def expected_receivers(labels: dict[str, str]) -> list[str]:
    """The routing policy, written independently of the config file."""
    if labels.get("alertname") == "Watchdog":
        return ["watchdog"]
    namespace = labels.get("namespace")
    if namespace == "triton-dev":
        return ["triton-dev"]
    if namespace == "triton-prod":
        return ["triton-prod-page"] if labels.get("severity") == "critical" else ["triton-prod"]
    return ["null"]


def _labels(alertname: str, namespace: str | None, severity: str | None) -> dict[str, str]:
    labels = {"alertname": alertname, "namespace": namespace, "severity": severity, "model": "linear"}
    return {name: value for name, value in labels.items() if value is not None}


GRID = [
    pytest.param(
        _labels(alertname, namespace, severity),
        id=f"{alertname}-{namespace or 'no-ns'}-{severity or 'no-sev'}",
    )
    for alertname, namespace, severity in itertools.product(ALERTNAMES, NAMESPACES, SEVERITIES)
]


def test_committed_config_passes_check_config(amtool):
    result = subprocess.run(
        [amtool, "check-config", str(CONFIG)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_route_to_an_undefined_receiver_fails_check_config(amtool, tmp_path):
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config["route"]["routes"][1]["receiver"] = "triton-dev-typo"
    broken = tmp_path / "alertmanager.yaml"
    broken.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = subprocess.run(
        [amtool, "check-config", str(broken)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode != 0
    assert 'undefined receiver "triton-dev-typo"' in result.stdout + result.stderr


@pytest.mark.parametrize("labels", GRID)
def test_each_label_set_reaches_exactly_its_environments_receivers(amtool, labels):
    receivers = routes(amtool, labels)
    assert receivers == expected_receivers(labels)
    assert not (DEV & set(receivers) and PROD & set(receivers)), f"{labels} reaches dev and prod: {receivers}"
    if labels.get("namespace") == "triton-dev":
        assert set(receivers) <= DEV
    elif labels.get("namespace") == "triton-prod":
        assert set(receivers) <= PROD
    else:
        assert receivers == ["null"]


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            {"alertname": "TritonHighMeanLatency", "namespace": "triton-dev", "severity": "critical"},
            "triton-dev",
        ),
        (
            {"alertname": "TritonHighMeanLatency", "namespace": "triton-prod", "severity": "warning"},
            "triton-prod",
        ),
        (
            {"alertname": "TritonTargetDown", "namespace": "triton-prod", "severity": "critical"},
            "triton-prod-page",
        ),
        ({"alertname": "TritonTargetDown", "severity": "critical"}, "null"),
    ],
    ids=["dev-critical", "prod-warning", "prod-critical-pages", "no-namespace-dropped"],
)
def test_amtool_verifies_the_receiver(amtool, labels, receiver):
    assert routes(amtool, labels, verify=receiver) == [receiver]


@pytest.mark.parametrize("namespace", NAMESPACES, ids=lambda namespace: namespace or "no-namespace")
def test_watchdog_reaches_the_dead_mans_switch_from_any_namespace(amtool, namespace):
    labels = _labels("Watchdog", namespace, "none")
    assert routes(amtool, labels, verify="watchdog") == ["watchdog"]


def test_a_miswired_prod_route_is_caught(amtool, tmp_path):
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    prod = next(
        route for route in config["route"]["routes"] if route["matchers"] == ['namespace="triton-prod"']
    )
    prod["receiver"] = "triton-dev"
    miswired = tmp_path / "alertmanager.yaml"
    miswired.write_text(yaml.safe_dump(config), encoding="utf-8")
    labels = {"alertname": "TritonHighMeanLatency", "namespace": "triton-prod", "severity": "warning"}
    assert routes(amtool, labels, config=miswired) == ["triton-dev"]
    with pytest.raises(AssertionError, match="expected triton-prod"):
        routes(amtool, labels, config=miswired, verify="triton-prod")


def _receivers_below(route: dict[str, Any]) -> set[str]:
    found = {route["receiver"]} if "receiver" in route else set()
    for child in route.get("routes", []):
        found |= _receivers_below(child)
    return found


def test_every_prod_path_ends_at_a_prod_receiver_and_no_route_continues():
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    by_matchers = {tuple(route["matchers"]): route for route in config["route"]["routes"]}
    assert _receivers_below(by_matchers[('namespace="triton-prod"',)]) == PROD
    assert _receivers_below(by_matchers[('namespace="triton-dev"',)]) == DEV

    def walk(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for child in route.get("routes", []):
            yield child
            yield from walk(child)

    assert all(child.get("continue") is False for child in walk(config["route"]))


def test_receivers_are_placeholders_on_the_alert_sink():
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    assert receivers["null"] == {"name": "null"}
    for name, receiver in receivers.items():
        for key, value in receiver.items():
            if key == "name":
                continue
            assert key == "webhook_configs", f"{name}: {key}: real receivers are configured at deploy time"
            assert all(hook["url"].startswith(SINK) for hook in value), name


# -- a real Alertmanager ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    return json.loads(text) if text.strip() else None


@pytest.fixture
def alertmanager(alertmanager_binary: str, tmp_path: Path) -> Iterator[str]:
    """Alertmanager on a free loopback port with the committed config, clustering off; its base URL."""
    port = _free_port()
    log_path = tmp_path / "alertmanager.log"
    command = [
        alertmanager_binary,
        f"--config.file={CONFIG}",
        f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"alertmanager exited with {process.returncode}: {log_path.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"alertmanager not ready after {START_TIMEOUT_S}s: {log_path.read_text()[-2000:]}"
                    )
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _alert(
    alertname: str,
    namespace: str,
    severity: str,
    model: str | None = None,
    pod: str | None = None,
    release: str = RELEASE,
) -> dict[str, Any]:
    """An alert as the chart's rules label it (every Triton alert names its release)."""
    labels = {"alertname": alertname, "namespace": namespace, "severity": severity, "triton_release": release}
    if model:
        labels["model"] = model
    if pod:
        labels["pod"] = pod
    return {"labels": labels, "annotations": {"summary": "posted by the inhibition test"}}


def _key(alert: dict[str, Any]) -> tuple[str, str, str, str, str, str]:
    labels = alert["labels"]
    return (
        labels["alertname"],
        labels["namespace"],
        labels["triton_release"],
        labels["severity"],
        labels.get("model", ""),
        labels.get("pod", ""),
    )


def _post_and_check_inhibition(
    alertmanager: str, cases: list[tuple[dict[str, Any], dict[str, Any] | None]]
) -> None:
    """Post every alert of `cases`; each must end inhibited by exactly its source, or stay active."""
    _request(f"{alertmanager}/api/v2/alerts", [alert for alert, _ in cases])
    want_inhibited = {_key(alert) for alert, source in cases if source is not None}
    # The inhibitor learns about source alerts asynchronously: wait, bounded, until all apply.
    deadline = time.monotonic() + INHIBIT_TIMEOUT_S
    while True:
        alerts = {_key(alert): alert for alert in _request(f"{alertmanager}/api/v2/alerts")}
        inhibited = {key for key, alert in alerts.items() if alert["status"]["inhibitedBy"]}
        if (len(alerts) == len(cases) and want_inhibited <= inhibited) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert set(alerts) == {_key(alert) for alert, _ in cases}
    for alert, source in cases:
        status = alerts[_key(alert)]["status"]
        if source is None:
            assert status["state"] == "active", _key(alert)
            assert status["inhibitedBy"] == [], _key(alert)
        else:
            assert status["state"] == "suppressed", _key(alert)
            assert status["inhibitedBy"] == [alerts[_key(source)]["fingerprint"]], _key(alert)


def test_target_down_inhibits_only_its_pods_alerts_and_metrics_missing_its_release(alertmanager):
    pod_a, pod_b = "triton-7d9f8c6b5-a1b2c", "triton-7d9f8c6b5-d3e4f"
    dev_down = _alert("TritonTargetDown", "triton-dev", "critical", pod=pod_a)
    staging_missing = _alert("TritonMetricsMissing", "triton-staging", "critical")
    prod_down_no_pod = _alert("TritonTargetDown", "triton-prod", "critical")
    prod_queue_critical = _alert("TritonQueueTimeHigh", "triton-prod", "critical", "linear")
    # Each posted alert, and the alert that must inhibit it (None: it must stay active).
    cases: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
        (dev_down, None),
        # Pod A's target down leaves every model-level alert of its namespace active...
        *[(_alert(name, "triton-dev", "warning", "linear"), None) for name in SYMPTOMS],
        (_alert("TritonErrorRatioHigh", "triton-dev", "critical", "mlp"), None),
        # ...mutes pod A's own alerts, and leaves pod B's active.
        *[(_alert(name, "triton-dev", "critical", pod=pod_a), dev_down) for name in PER_POD],
        *[(_alert(name, "triton-dev", "critical", pod=pod_b), None) for name in PER_POD],
        (_alert("TritonPodCrashLooping", "triton-dev", "critical", pod=pod_a), None),
        # Every target gone: the namespace's model-level symptoms wait, its per-pod alerts do not.
        (staging_missing, None),
        *[(_alert(name, "triton-staging", "warning", "linear"), staging_missing) for name in SYMPTOMS],
        (_alert("TritonGPUMemoryCritical", "triton-staging", "critical", pod=pod_a), None),
        # A target-down alert without a pod (labels missing on both sides are "equal") mutes nothing.
        (prod_down_no_pod, None),
        (_alert("TritonGPUMemoryCritical", "triton-prod", "critical"), None),
        (_alert("TritonHighMeanLatency", "triton-prod", "warning", "linear"), None),
        (prod_queue_critical, None),
        (_alert("TritonQueueTimeHigh", "triton-prod", "warning", "linear"), prod_queue_critical),
        (_alert("TritonQueueTimeHigh", "triton-prod", "warning", "mlp"), None),
    ]
    _post_and_check_inhibition(alertmanager, cases)


def test_a_failed_load_holds_back_the_drift_of_its_own_pod_and_model_only(alertmanager):
    pod_a, pod_b = "triton-7d9f8c6b5-a1b2c", "triton-7d9f8c6b5-d3e4f"
    failed = _alert("TritonModelLoadFailed", "triton-prod", "warning", "linear", pod=pod_a)
    cases: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
        (failed, None),
        (_alert("TritonModelVersionDrift", "triton-prod", "warning", "linear", pod=pod_a), failed),
        (_alert("TritonModelVersionDrift", "triton-prod", "warning", "linear", pod=pod_b), None),
        (_alert("TritonModelVersionDrift", "triton-prod", "warning", "mlp", pod=pod_a), None),
        (
            _alert(
                "TritonModelVersionDrift",
                "triton-prod",
                "warning",
                "linear",
                pod=pod_a,
                release="triton-canary",
            ),
            None,
        ),
    ]
    _post_and_check_inhibition(alertmanager, cases)


def test_one_release_never_inhibits_another_release_in_the_same_namespace(alertmanager):
    """Two releases of the chart in one namespace (a canary beside the main release) serve the same
    model names: release A losing every target, or A's critical twin of an alert, mutes A only."""
    canary = "triton-canary"
    missing_a = _alert("TritonMetricsMissing", "triton-prod", "critical")
    queue_critical_a = _alert("TritonQueueTimeHigh", "triton-dev", "critical", "linear")
    cases: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
        (missing_a, None),
        (_alert("TritonErrorRatioHigh", "triton-prod", "critical", "linear"), missing_a),
        (_alert("TritonErrorRatioHigh", "triton-prod", "critical", "linear", release=canary), None),
        (_alert("TritonErrorBudgetBurn", "triton-prod", "critical", "linear", release=canary), None),
        (queue_critical_a, None),
        (_alert("TritonQueueTimeHigh", "triton-dev", "warning", "linear"), queue_critical_a),
        (_alert("TritonQueueTimeHigh", "triton-dev", "warning", "linear", release=canary), None),
    ]
    _post_and_check_inhibition(alertmanager, cases)


def test_every_inhibition_compares_the_release_and_every_alert_carries_it():
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert config["inhibit_rules"]
    for rule in config["inhibit_rules"]:
        assert "triton_release" in rule["equal"], rule
    fired = _fired_labels()
    assert all(labels["triton_release"] == RELEASE for sets in fired.values() for labels in sets)


def _inhibit_rule(source: str) -> dict[str, Any]:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    (rule,) = [r for r in config["inhibit_rules"] if f'alertname="{source}"' in r["source_matchers"]]
    return dict(rule)


def _target_alertnames(rule: dict[str, Any]) -> set[str]:
    (names,) = [
        match.group(1) for m in rule["target_matchers"] if (match := re.fullmatch(r'alertname=~"(.*)"', m))
    ]
    return set(names.split("|"))


def _fired_labels() -> dict[str, list[dict[str, str]]]:
    """The exact label sets each alert fires with, from the promtool cases (promtool checks them)."""
    fired: dict[str, list[dict[str, str]]] = {}
    for group in alert_tests():
        for case in group.get("alert_rule_test", []):
            fired.setdefault(case["alertname"], []).extend(a["exp_labels"] for a in case["exp_alerts"])
    return fired


def test_per_pod_inhibition_reaches_only_alerts_that_always_carry_a_pod():
    rule = _inhibit_rule("TritonTargetDown")
    assert rule["equal"] == ["namespace", "triton_release", "pod"]
    assert 'pod=~".+"' in rule["source_matchers"]
    fired = _fired_labels()
    targets = _target_alertnames(rule)
    assert targets == set(PER_POD)
    for name in ("TritonTargetDown", *targets):
        assert fired[name] and all(labels.get("pod") for labels in fired[name]), name
    model_level = {name for name, sets in fired.items() if sets and not any("pod" in s for s in sets)}
    assert {"TritonErrorRatioHigh", "TritonErrorBudgetBurn", "TritonHighMeanLatency"} <= model_level
    assert model_level.isdisjoint(targets)


def test_metrics_missing_inhibits_the_model_level_symptoms_of_its_namespace():
    rule = _inhibit_rule("TritonMetricsMissing")
    assert rule["equal"] == ["namespace", "triton_release"]
    fired = _fired_labels()
    assert _target_alertnames(rule) == set(SYMPTOMS)
    for name in SYMPTOMS:
        assert fired[name] and not any("pod" in labels for labels in fired[name]), name


def _runbook_command(alertname: str) -> list[str]:
    """The shell command in `alertname`'s runbook section, as argv (backslash continuations joined)."""
    runbooks = (ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
    section = runbooks.split(f"\n## {alertname}\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return shlex.split(block.replace("\\\n", " "))


def test_the_runbooks_retirement_silence_mutes_only_that_models_unavailable_alert(alertmanager, amtool):
    """Retiring a model: the runbook's amtool command, run as written against a real Alertmanager,
    silences TritonModelUnavailable for that model of that release, and nothing else."""
    command = _runbook_command("TritonModelUnavailable")
    assert command[:3] == ["amtool", "silence", "add"]
    command[0] = amtool
    command = [
        f"--alertmanager.url={alertmanager}" if arg.startswith("--alertmanager.url=") else arg
        for arg in command
    ]
    command = [arg.replace("$USER", "runbook-test") for arg in command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    matchers = dict(arg.split("=", 1) for arg in command if not arg.startswith("-") and "=" in arg)
    namespace, release, model = matchers["namespace"], matchers["triton_release"], matchers["model"]
    retired = _alert("TritonModelUnavailable", namespace, "critical", model, release=release)
    others = [
        _alert("TritonModelUnavailable", namespace, "critical", "mlp", release=release),
        _alert("TritonModelUnavailable", namespace, "critical", model, release=f"{release}-canary"),
        _alert("TritonErrorRatioHigh", namespace, "critical", model, release=release),
    ]
    _request(f"{alertmanager}/api/v2/alerts", [retired, *others])
    deadline = time.monotonic() + INHIBIT_TIMEOUT_S
    while True:
        alerts = {_key(alert): alert["status"] for alert in _request(f"{alertmanager}/api/v2/alerts")}
        if alerts.get(_key(retired), {}).get("silencedBy") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert alerts[_key(retired)]["state"] == "suppressed" and alerts[_key(retired)]["silencedBy"]
    for alert in others:
        assert alerts[_key(alert)]["state"] == "active", _key(alert)
