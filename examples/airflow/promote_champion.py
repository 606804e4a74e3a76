"""An Airflow DAG that promotes the version an MLflow alias points at to every Triton replica.

Three tasks over tritonops' Python API, the same chain `tritonops promote` runs:

    find_candidate  ->  promote  ->  report

`find_candidate` asks the MLflow Model Registry which version the alias (`champion`) names and
whether the repository already commits it; `promote` materializes `models:/NAME/N`, verifies it,
loads and checks it on every replica, commits it, and watches an optional PromQL gate on the
candidate version's own series (a breach or a gate that cannot be evaluated rolls every replica
back, and the task fails); `report` returns one line for the run's log or a notification.

When the alias moves back to a lower version than the one serving, `promote` promotes it without
the gate and logs why: Triton sends unversioned requests to the highest ready version, so a lower
candidate takes no traffic before its commit, there is nothing for a gate to observe, and the chain
refuses a gate on it. Watch it after the commit (the chart's alerts), and move the alias back if
needed.

The task functions are plain Python (tests/promotion/test_airflow_example.py runs them against a
real registry and a real Triton without Airflow); the DAG is defined only where Airflow is
installed. Settings come from the environment of the Airflow worker, so no key ever sits in the
DAG or in a task's arguments:

    MLFLOW_TRACKING_URI     the registry (MLFLOW_REGISTRY_URI, when it differs)
    TRITONOPS_REPOSITORY    the model repository as the worker mounts it (e.g. the NFS export)
    TRITONOPS_ENDPOINTS     every replica: http://HOST:8000?grpc=8001,...
    TRITONOPS_API_KEY       the restricted-API key (from a Kubernetes Secret or a secrets backend)
    TRITONOPS_PROMETHEUS    optional: the Prometheus that evaluates the gate
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tritonops.promotion.chain import GateSpec
    from tritonops.promotion.replicas import ApiKey, Replica

log = logging.getLogger(__name__)

MODEL = "mlp"
ALIAS = "champion"
# The gate: no failed request of the candidate version on any replica for the whole window. Scoped
# to the version, it judges the candidate's own requests, not the old version's.
GATE = 'sum(rate(nv_inference_request_failure{model="%s",version="%s"}[1m])) == bool 0'
# Longer than the query's range plus a scrape interval: the candidate's series appear only once
# Prometheus has scraped it, and the last samples then judge a whole range of its requests.
GATE_WINDOW_S = 120.0


def find_candidate(model: str = MODEL, alias: str = ALIAS) -> dict[str, Any]:
    """The registry version `alias` names, as the Triton version to promote (the same number), and
    whether the repository already commits it (then there is nothing to do)."""
    import mlflow

    from tritonops.promotion import state

    registered = mlflow.MlflowClient().get_model_version_by_alias(model, alias)
    version = int(registered.version)
    committed = state.effective(Path(os.environ["TRITONOPS_REPOSITORY"])).get(model)
    return {
        "model": model,
        "version": version,
        "source": f"models:/{model}/{version}",
        "already_committed": committed is not None and committed.version == version,
    }


def needs_promotion(candidate: dict[str, Any]) -> bool:
    """False (skip the rest of the run) when the repository already commits the candidate."""
    return not candidate["already_committed"]


def gate_for(candidate: dict[str, Any], serving: Sequence[int], prometheus: str | None) -> GateSpec | None:
    """The chain's GateSpec on the candidate version's own series, or None: without a Prometheus,
    or when a higher version than the candidate serves now (the alias moved back), which the chain
    would refuse to gate (nothing to observe before the commit)."""
    from tritonops.promotion import chain

    if not prometheus:
        return None
    model, version = candidate["model"], candidate["version"]
    if serving and version < max(serving):
        log.warning(
            "%s: version %s is lower than version %s, which serves now; promoting it without the gate: "
            "Triton sends unversioned requests to the highest ready version, so version %s takes no "
            "traffic before its commit and a gate could not observe it. Watch it after the commit.",
            model,
            version,
            max(serving),
            version,
        )
        return None
    return chain.GateSpec(query=GATE % (model, version), prometheus_url=prometheus, window_s=GATE_WINDOW_S)


def serving_versions(repository: Path, found: Sequence[Replica], key: ApiKey, model: str) -> list[int]:
    """The versions the gate decision compares with, as the chain does: the committed pin, or,
    before the model's first commit, what the replicas serve (loaded at start: `server.loadModels`)."""
    from tritonops.promotion import fleet, state

    record = state.effective(repository).get(model)
    if record is not None:
        return record.pin
    return sorted({v for seen in fleet.served(found, key, [model])[model] for v in seen.versions or ()})


def promote(candidate: dict[str, Any]) -> dict[str, Any]:
    """Promote the candidate on every replica; raises (failing the task) after rolling back."""
    from tritonops.promotion import chain, replicas

    repository = Path(os.environ["TRITONOPS_REPOSITORY"])
    found = replicas.from_endpoints(os.environ["TRITONOPS_ENDPOINTS"])
    key = replicas.api_key()
    prometheus = os.environ.get("TRITONOPS_PROMETHEUS")
    # Read before the chain takes the repository lock: should another promotion change the serving
    # version meanwhile, the chain refuses the gate it no longer allows (nothing changed, the task fails).
    serving = serving_versions(repository, found, key, candidate["model"]) if prometheus else []
    outcome = chain.promote(
        repository=repository,
        replicas=found,
        key=key,
        model=candidate["model"],
        version=candidate["version"],
        source=candidate["source"],
        gate_spec=gate_for(candidate, serving, prometheus),
    )
    return outcome.as_dict()


def report(outcome: dict[str, Any]) -> str:
    """One line: what the run committed, and how long each step took."""
    steps = ", ".join(f"{step['name']} {step['seconds']:.1f}s" for step in outcome["steps"])
    return f"{outcome['model']}: {outcome['result']} version {outcome['version']} ({steps})"


def _build_dag() -> Any:
    try:  # Airflow 3 moved the authoring API to airflow.sdk
        from airflow.sdk import dag, task
    except ImportError:
        from airflow.decorators import dag, task

    @dag(
        dag_id="tritonops_promote_champion",
        schedule=None,  # triggered when the alias moves (a registry webhook, or by hand)
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,  # the repository lock refuses a second promotion anyway
        tags=["tritonops", "triton"],
    )
    def promote_champion() -> None:
        found = task(find_candidate)()
        skip = task.short_circuit(needs_promotion)(found)
        # A failed promotion has already rolled every replica back: no blind retry.
        promoted = task(promote, retries=0)(found)
        skip >> promoted
        task(report)(promoted)

    return promote_champion()


try:
    import airflow  # noqa: F401
except ImportError:  # the task functions stay importable (and tested) without Airflow
    dag = None
else:
    dag = _build_dag()
