"""examples/airflow/promote_champion.py: its task functions, run as Airflow would run them (without
Airflow here): the candidate found in a real MLflow registry, a promotion through the Python API
on the local runtime's two real replicas, the gate it chooses (scoped to the candidate version, none
when the alias moved back to a lower version), and the report line."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT
from tests.promotion.conftest import Fleet, Registry
from tritonops.promotion import replicas as replicas_module

EXAMPLE = ROOT / "examples" / "airflow" / "promote_champion.py"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("promote_champion", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_airflow_the_dag_is_absent_and_the_tasks_are_plain_functions(example: ModuleType) -> None:
    assert importlib.util.find_spec("airflow") is None, "this test describes a machine without Airflow"
    assert example.dag is None
    assert [callable(getattr(example, name)) for name in ("find_candidate", "promote", "report")] == [
        True
    ] * 3


def test_the_candidate_is_the_version_the_alias_names(
    example: ModuleType, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.uri)
    monkeypatch.setenv("TRITONOPS_REPOSITORY", str(tmp_path))  # nothing committed there yet

    assert example.find_candidate("mlp", "champion") == {
        "model": "mlp",
        "version": 1,
        "source": "models:/mlp/1",
        "already_committed": False,
    }
    assert example.needs_promotion({"already_committed": False})
    assert not example.needs_promotion({"already_committed": True})


def _point_the_dag_at(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DAG's environment for the shared fleet: its repository, endpoints and key, no gate."""
    endpoints = ",".join(
        f"http://{r.http_address}?grpc={(r.grpc_address or '').rpartition(':')[2]}" for r in fleet.replicas
    )
    monkeypatch.setenv("TRITONOPS_REPOSITORY", str(fleet.repository))
    monkeypatch.setenv("TRITONOPS_ENDPOINTS", endpoints)
    monkeypatch.setenv(replicas_module.KEY_ENV, fleet.key.key or "")
    monkeypatch.delenv("TRITONOPS_PROMETHEUS", raising=False)


def test_the_promote_task_commits_on_every_replica_and_reports_it(
    example: ModuleType, fleet_runtime: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = fleet_runtime
    version = fleet.new_version()
    _point_the_dag_at(fleet, monkeypatch)
    # What find_candidate hands on, with a folder source (MLflow downloads are covered by
    # test_mlflow_source.py; the version numbers of this shared fleet are its own).
    candidate = {
        "model": "linear",
        "version": version,
        "source": str(fleet.candidate(version)),
        "already_committed": False,
    }

    outcome = example.promote(candidate)

    assert (outcome["result"], outcome["version"]) == ("committed", version)
    assert fleet.record().version == version
    assert fleet.served() == [(version,), (version,)]
    line = example.report(outcome)
    assert line.startswith(f"linear: committed version {version} (") and "commit" in line


PROMETHEUS = "http://prometheus.example:9090"


@pytest.mark.parametrize(
    ("version", "serving"),
    [(3, [2]), (3, [1, 2]), (1, [])],
    ids=["above-the-committed-version", "above-a-kept-previous-version", "nothing-served-yet"],
)
def test_the_gate_watches_the_candidate_versions_own_series(
    example: ModuleType, version: int, serving: list[int]
) -> None:
    spec = example.gate_for({"model": "mlp", "version": version}, serving, PROMETHEUS)

    assert spec.query == (
        f'sum(rate(nv_inference_request_failure{{model="mlp",version="{version}"}}[1m])) == bool 0'
    )
    assert (spec.prometheus_url, spec.window_s) == (PROMETHEUS, example.GATE_WINDOW_S)


def test_without_a_prometheus_there_is_no_gate(example: ModuleType) -> None:
    assert example.gate_for({"model": "mlp", "version": 3}, [2], None) is None


def test_an_alias_moved_back_to_a_lower_version_is_promoted_without_the_gate_and_says_why(
    example: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=example.log.name):
        assert example.gate_for({"model": "mlp", "version": 2}, [3], PROMETHEUS) is None

    assert "version 2 is lower than version 3, which serves now; promoting it without the gate" in caplog.text


def test_the_promote_task_commits_a_lower_version_without_the_gate_the_chain_would_refuse(
    example: ModuleType,
    fleet_runtime: Fleet,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fleet = fleet_runtime
    lower, higher = fleet.new_version(), fleet.new_version()
    _point_the_dag_at(fleet, monkeypatch)
    example.promote({"model": "linear", "version": higher, "source": str(fleet.candidate(higher))})
    # The alias moves back. A gate would be refused (exit 2) before the Prometheus is ever asked,
    # so a Prometheus nobody listens on proves no gate was sent.
    monkeypatch.setenv("TRITONOPS_PROMETHEUS", "http://127.0.0.1:9")

    with caplog.at_level(logging.WARNING, logger=example.log.name):
        outcome = example.promote(
            {"model": "linear", "version": lower, "source": str(fleet.candidate(lower))}
        )

    assert (outcome["result"], outcome["version"]) == ("committed", lower)
    assert "observe" not in [step["name"] for step in outcome["steps"]]
    assert f"version {lower} is lower than version {higher}" in caplog.text
    assert fleet.record().version == lower
    assert fleet.served() == [(lower,), (lower,)]
