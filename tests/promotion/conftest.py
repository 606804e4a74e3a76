"""Fixtures for the promotion tier: a repository with `linear` committed by the promotion tool's
own commit, writers for candidate version folders, one real Triton holding the smoke and traffic
models, and the local runtime's two replicas for the chain."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import pytest

from tests.conftest import FIGURES
from tests.promotion import models
from tests.runtime.conftest import FAST_PROBES, free_port_offset
from tritonops.promotion import fleet, state
from tritonops.promotion import replicas as replicas_module
from tritonops.promotion import traffic as traffic_module
from tritonops.repository import checksums, committed_state
from tritonops.triton import client as triton_client
from tritonops.triton import onnx_models
from tritonops.triton import server as triton_server

LINEAR_CONFIG = """\
# y = x @ W + b: four features in, two out.
name: "linear"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "input" data_type: TYPE_FP32 dims: [ 4 ] } ]  # "#" inside a string stays: "a#b"
output [ { name: "output" data_type: TYPE_FP32 dims: [ 2 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""


def add_version(repository: Path, version: int, model: str = "linear") -> Path:
    """A correct `linear` version folder."""
    return onnx_models.linear(repository / model / str(version) / "model.onnx").parent


def commit_version(
    repository: Path, version: int, *, retained: tuple[int, ...] = (), model: str = "linear"
) -> state.Record:
    """Commit an existing version folder with the promotion tool's commit."""
    config = (repository / model / "config.pbtxt").read_text(encoding="utf-8")
    record = state.Record(
        model,
        version,
        digest=checksums.version_digest(repository / model / str(version)),
        retained=retained,
        source=f"test:{version}",
    )
    pinned = state.config_with_pin(config, [version, *retained])
    return state.commit(repository, model, record, pinned)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """`linear` version 1 committed (pinned, recorded with both digests)."""
    root = tmp_path / "models"
    (root / "linear").mkdir(parents=True)
    (root / "linear" / "config.pbtxt").write_text(LINEAR_CONFIG, encoding="utf-8")
    add_version(root, 1)
    commit_version(root, 1)
    return root


def launcher_check(repository: Path) -> list[object]:
    """What the pod's launcher does before it starts Triton: parse the record and check the
    repository against it (digests included); raises CommittedStateError when it would refuse."""
    script = committed_state.script()
    path = str(repository / "current.json")
    records = script.parse(script.read_bytes(path), path)
    return list(script.check_repository(str(repository), records, state_path=path, verify_digest=True))


SERVED = [
    *("linear", "scaled", "infinite", "ints", "wrong_shape", "wrong_type", "missing_output"),
    *("streaming", "stateful"),
]


SLOW_INIT_S = 3


@pytest.fixture(scope="session")
def server(backends: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[triton_server.Server]:
    """A plain tritonserver (explicit mode) serving models that answer rightly and wrongly; `linear`
    has a second version on disk, loaded by the tests that need it."""
    repository = tmp_path_factory.mktemp("promotion-models")
    models.linear_version(repository, "linear", 1)
    models.linear_version(repository, "linear", 2, scale=2.0)
    models.linear_version(repository, "scaled", 1, scale=2.0)
    models.infinite_version(repository, "infinite", 1)
    models.int_bool_model(repository, "ints")
    models.python_model(repository, "wrong_shape", "np.concatenate([x, x])")
    models.python_model(repository, "wrong_type", "x.astype(np.int32)")
    models.python_model(repository, "missing_output", "x + 1", extra_output=True)
    # Called as a stream or a sequence, never by one plain request: the smoke check says so.
    models.python_model(
        repository, "streaming", "x", config_tail="model_transaction_policy { decoupled: true }\n"
    )
    models.python_model(repository, "stateful", "x", config_tail="sequence_batching { }\n")
    # Not loaded at start: a test loads it and sees it LOADING for SLOW_INIT_S.
    slow = models.python_model(repository, "slow", "x")
    model_py = (slow / "1" / "model.py").read_text()
    (slow / "1" / "model.py").write_text(
        model_py.replace(
            "class TritonPythonModel:",
            f"class TritonPythonModel:\n    def initialize(self, args):\n        __import__('time').sleep({SLOW_INIT_S})\n",
            1,
        )
    )
    with triton_server.start(
        repository,
        log_path=repository.parent / "promotion-models.log",
        backend_directory=backends,
        load_models=SERVED,
    ) as started:
        yield started


@pytest.fixture
def client(server: triton_server.Server) -> Iterator[triton_client.Client]:
    with triton_client.Client(server.url.removeprefix("http://"), grpc_address=server.grpc_url) as c:
        yield c


# --- two real replicas from the local runtime, shared by the chain, crash and bad-input tests -------


@dataclass
class Fleet:
    """The local runtime's two replicas on a repository where `linear` is committed, and where
    candidate sources are written (outside the repository)."""

    repository: Path
    work_dir: Path
    sources: Path
    replicas: tuple[replicas_module.Replica, ...]
    key: replicas_module.ApiKey
    versions: itertools.count = field(default_factory=lambda: itertools.count(2))

    def record(self) -> state.Record:
        found = state.effective(self.repository).get("linear")
        assert found is not None
        return found

    def new_version(self) -> int:
        """A version number no folder, source or quarantine has used yet."""
        return next(self.versions)

    def candidate(self, version: int, *, scale: float = 1.0, build: str = "linear") -> Path:
        """A source folder for `linear` version `version` (outside the repository)."""
        root = self.sources / f"{build}-{version}"
        if build == "linear":
            models.linear_version(root, "linear", version, scale=scale)
        elif build == "unloadable":
            models.unloadable_version(root, "linear", version)
        elif build == "mismatched":
            models.mismatched_version(root, "linear", version)
        return root / "linear" / str(version)

    def served(self) -> list[tuple[int, ...] | None]:
        return [seen.versions for seen in fleet.served(self.replicas, self.key, ["linear"])["linear"]]

    def traffic(self) -> traffic_module.Traffic:
        return traffic_module.Traffic(self.replicas, "linear", key=self.key)


@pytest.fixture(scope="session")
def fleet_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """`tritonops up` with 2 replicas on a repository where the promotion tool committed `linear` 1
    (and `fresh` waits for its first promotion)."""
    from tritonops.runtime import control

    root = tmp_path_factory.mktemp("fleet")
    repository = root / "models"
    models.linear_version(repository, "linear", 1)
    models.linear_version(repository, "fresh", 1)  # a second model, never committed nor loaded
    # Served from the start (server.loadModels) but never committed: what every deployment that
    # adopts the promotion tool has. Its config says `latest`, as a hand-written one would.
    models.linear_version(repository, "adopted", 1)
    adopted = repository / "adopted" / "config.pbtxt"
    adopted.write_text(adopted.read_text().replace("version_policy", "# version_policy"))
    config = (repository / "linear" / "config.pbtxt").read_text()
    digest = checksums.version_digest(repository / "linear" / "1")
    state.commit(
        repository,
        "linear",
        state.Record("linear", 1, digest=digest, source="test"),
        state.config_with_pin(config, [1]),
    )
    work_dir = root / "work"
    try:
        current = control.up(
            "local",
            work_dir=work_dir,
            replicas=2,
            repository=repository,
            port_offset=free_port_offset(2),
            # A local folder shows the lock at once: no grace before the agents narrow a straggler.
            set_values=(*FAST_PROBES, "server.loadModels={linear,adopted}", "agent.narrowAfterSeconds=0"),
        )
        assert current.all_ready, control.logs(work_dir, None, 20)
        found = tuple(
            replicas_module.Replica(f"replica-{r.index}", r.url.removeprefix("http://"), r.grpc_address)
            for r in current.replicas
        )
        key = replicas_module.ApiKey(current.api_header, current.api_key())
        yield Fleet(repository, work_dir, root / "sources", found, key)
    finally:
        control.down(work_dir)


@pytest.fixture
def figures(request: pytest.FixtureRequest):
    """Report a line of figures (latency, counts): the promotion tests say what they measured
    without asserting timings. The lines are listed in the run's summary (tests/conftest.py), which
    also works under pytest-xdist, where a worker's output never reaches the terminal."""

    def say(line: str) -> None:
        request.node.user_properties.append((FIGURES, line))

    return say


# --- a real MLflow Model Registry (sqlite tracking store, local artifact folder) -----------------


@dataclass(frozen=True)
class Registry:
    uri: str
    artifacts: Path


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One registry for the session (the tests only read it): `mlp` version 1 (8 -> 64 -> 3,
    aliased `champion`) and version 2 (8 -> 64 -> 4: disagrees with the config)."""
    import mlflow
    import mlflow.onnx

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mlflow.set_tracking_uri(uri)
        experiment = mlflow.create_experiment("promotion", artifact_location=(root / "artifacts").as_uri())
        for outputs in (3, 4):
            model = onnx.load(str(onnx_models.mlp(root / f"mlp-{outputs}.onnx", sizes=(8, 64, outputs))))
            with mlflow.start_run(experiment_id=experiment):
                mlflow.onnx.log_model(model, name="model", registered_model_name="mlp")
        mlflow.MlflowClient().set_registered_model_alias("mlp", "champion", "1")
        yield Registry(uri, root / "artifacts")
        mlflow.set_tracking_uri("")
