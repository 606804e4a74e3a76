"""Benchmark: rule evaluation cost. `promtool test rules` wall time for the whole alert suite, and
Prometheus's own rule-group evaluation time while it scrapes the local runtime under traffic (and
the kube-state-metrics stand-in, so the alerts' joins on pod state evaluate against real series).
Prints the figures and writes bench/results/rules.json."""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.observability import kube_state  # noqa: E402
from tests.observability.test_alert_rules import alert_tests  # noqa: E402

from tritonops.chart import render  # noqa: E402
from tritonops.observability import prometheus as prom  # noqa: E402
from tritonops.observability import rule_file as rules  # noqa: E402
from tritonops.runtime import control  # noqa: E402
from tritonops.triton import client as triton_client  # noqa: E402
from tritonops.triton import server as triton_server  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "rules.json"
LIVE_VALUES = ROOT / "tests" / "observability" / "resources" / "live-values.yaml"


def promtool_suite(scratch: Path) -> list[float]:
    rule_file = rules.rule_file(render.render("dev"), annotations=False)
    (scratch / "rules.yaml").write_text(yaml.safe_dump(rule_file, sort_keys=False))
    test_file = scratch / "rules.test.yaml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(scratch / "rules.yaml")],
                "evaluation_interval": "30s",
                "tests": alert_tests(),
            }
        )
    )
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run(["promtool", "test", "rules", str(test_file)], check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return samples


def evaluation_times(prometheus: prom.Prometheus, samples: int = 15) -> dict[str, float]:
    """Median evaluation time per rule group, in ms, over `samples` distinct evaluations of each
    (one reading is noise on a shared machine)."""
    seen: dict[str, dict[str, float]] = {}
    deadline = time.monotonic() + samples * 5
    while time.monotonic() < deadline:
        for group in prometheus.rule_groups():
            seen.setdefault(group["name"], {})[group["lastEvaluation"]] = group["evaluationTime"] * 1000
        if seen and all(len(times) >= samples for times in seen.values()):
            break
        time.sleep(0.2)
    return {name: statistics.median(times.values()) for name, times in seen.items()}


def live_evaluation(scratch: Path) -> dict[str, float]:
    work = scratch / "runtime"
    current = control.up("local", work_dir=work, port_offset=33000, extra_files=(LIVE_VALUES,))
    prometheus = None
    stack = contextlib.ExitStack()
    try:
        item = render.render("local", extra_files=[LIVE_VALUES])
        targets = [
            prom.Target(kube_state.pod_name(r.index), f"127.0.0.1:{r.ports['metrics']}")
            for r in current.replicas
        ]
        stand_in = stack.enter_context(kube_state.serve(work, item.environment.namespace))
        config = prom.prometheus_config(item, targets, scratch / "live-rules.yaml")
        config["scrape_configs"].append(kube_state.scrape_job(stand_in))
        (port,) = triton_server.free_ports(1)
        prometheus = prom.Prometheus(config, scratch / "prom", port)
        prometheus.wait_ready()
        replica = current.replicas[0]
        with triton_client.Client(replica.url.removeprefix("http://")) as client:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                client.infer("linear", {"input": np.ones((2, 4), dtype=np.float32)})
        return evaluation_times(prometheus)
    finally:
        if prometheus is not None:
            prometheus.stop()
        stack.close()
        control.down(work)


def main() -> int:
    if shutil.which("promtool") is None or shutil.which("prometheus") is None:
        print("promtool/prometheus not installed; run `make setup`")
        return 1
    scratch = Path(tempfile.mkdtemp(prefix="tritonops-bench-rules-"))
    try:
        suite = promtool_suite(scratch)
        live = live_evaluation(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "benchmark": "rules",
        "promtool_test_rules_s": suite,
        "median_promtool_test_rules_s": statistics.median(suite),
        "live_group_evaluation_ms": live,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"promtool test rules ({len(alert_tests())} test groups): median {statistics.median(suite):.2f} s over 5 runs"
    )
    for name, ms in sorted(live.items()):
        print(f"live Prometheus, rule group {name}: median {ms:.2f} ms per evaluation")
    print(f"figures in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
