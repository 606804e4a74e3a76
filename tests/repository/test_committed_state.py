"""`repo validate` checks the committed state (current.json) with the launcher's own code: every
repository the pod's launcher refuses to start with is an error here, and what starts validates."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tritonops.chart import environments
from tritonops.repository import checksums, committed_state, example_repository, validator
from tritonops.repository.findings import Finding, Severity
from tritonops.triton import onnx_models

LAUNCH = environments.CHART_DIR / "files" / "launch.py"
PIN = "version_policy {{ specific {{ versions: [ {version} ] }} }}\n"


@dataclass
class Launch:
    returncode: int
    stderr: str
    started: bool


@pytest.fixture
def launch(tmp_path: Path) -> Callable[[Path], Launch]:
    """Run the chart's real launcher on `<repo>/current.json`, with a stand-in for tritonserver
    that only records that it was started."""
    marker = tmp_path / "server-started"
    server = tmp_path / "tritonserver"
    server.write_text(f"#!{sys.executable}\nopen({str(marker)!r}, 'w').close()\n", encoding="utf-8")
    server.chmod(0o755)

    def run(repo: Path) -> Launch:
        command = [
            sys.executable,
            str(LAUNCH),
            f"--committed-state={repo / 'current.json'}",
            f"--repository={repo}",
            "--",
            str(server),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        started = marker.exists()
        marker.unlink(missing_ok=True)
        return Launch(result.returncode, result.stderr, started)

    return run


def write_state(repo: Path, models: dict[str, object]) -> Path:
    path = repo / "current.json"
    document = {"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": models}
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def record(repo: Path, model: str, version: int) -> dict[str, object]:
    """The record the promotion tool writes for a version folder and config as they are now."""
    return {
        "version": version,
        "digest": checksums.version_digest(repo / model / str(version)),
        "configDigest": config_digest(repo / model),
        "committedAt": "2026-11-25T22:00:00Z",
    }


def config_digest(model: Path) -> str:
    return "sha256:" + hashlib.sha256((model / "config.pbtxt").read_bytes()).hexdigest()


@pytest.fixture
def committed_repo(repo: Path, add_linear) -> Path:
    """`linear` version 1 committed as the promotion tool leaves it: pinned, recorded, digest set."""
    model = add_linear()
    config = model / "config.pbtxt"
    config.write_text(config.read_text(encoding="utf-8") + PIN.format(version=1), encoding="utf-8")
    write_state(repo, {"linear": record(repo, "linear", 1)})
    return repo


def _edit_state(repo: Path, change: Callable[[dict[str, object]], None]) -> None:
    document = json.loads((repo / "current.json").read_text(encoding="utf-8"))
    change(document["models"]["linear"])
    (repo / "current.json").write_text(json.dumps(document), encoding="utf-8")


def _pin(repo: Path, text: str) -> None:
    config = repo / "linear" / "config.pbtxt"
    lines = [line for line in config.read_text(encoding="utf-8").splitlines() if "version_policy" not in line]
    config.write_text("\n".join(lines) + "\n" + text, encoding="utf-8")


def _second_version(repo: Path) -> None:
    onnx_models.linear(repo / "linear" / "2" / "model.onnx", in_shape=("batch", 4))


# Each case breaks a committed repository the way users (or a half-done promotion) do, and names
# the finding's field: (break it, field, the file the finding names, relative to the repository).
REFUSALS: dict[str, tuple[Callable[[Path], None], str | None, str]] = {
    "missing-model-folder": (
        lambda repo: write_state(
            repo,
            {"linear": record(repo, "linear", 1), "gone": {"version": 1, "digest": "sha256:" + "0" * 64}},
        ),
        "models.gone",
        "gone",
    ),
    "missing-version-folder": (
        lambda repo: (_pin(repo, PIN.format(version=2)), _edit_state(repo, lambda r: r.update(version=2))),
        "models.linear.version",
        "linear/2",
    ),
    "wrong-pin": (
        lambda repo: (_second_version(repo), _pin(repo, PIN.format(version=2))),
        "version_policy",
        "linear/config.pbtxt",
    ),
    "no-pin": (lambda repo: _pin(repo, ""), "version_policy", "linear/config.pbtxt"),
    "latest-policy": (
        lambda repo: _pin(repo, "version_policy { latest { num_versions: 1 } }\n"),
        "version_policy",
        "linear/config.pbtxt",
    ),
    "pin-the-launcher-cannot-read": (
        lambda repo: _pin(repo, "version_policy { specific { versions: 0x1 } }\n"),
        "version_policy",
        "linear/config.pbtxt",
    ),
    "missing-config": (
        lambda repo: (repo / "linear" / "config.pbtxt").unlink(),
        "version_policy",
        "linear/config.pbtxt",
    ),
    "digest-edited": (
        lambda repo: _edit_state(repo, lambda r: r.update(digest="sha256:" + "1" * 64)),
        "models.linear.digest",
        "linear/1",
    ),
    "file-added-after-commit": (
        lambda repo: (repo / "linear" / "1" / "notes.txt").write_text("added later\n", encoding="utf-8"),
        "models.linear.digest",
        "linear/1",
    ),
    "malformed-not-json": (
        lambda repo: (repo / "current.json").write_text("{not json\n", encoding="utf-8"),
        None,
        "current.json",
    ),
    "malformed-partially-written": (
        lambda repo: (repo / "current.json").write_text(
            (repo / "current.json").read_text(encoding="utf-8")[:60], encoding="utf-8"
        ),
        None,
        "current.json",
    ),
    "malformed-wrong-kind": (
        lambda repo: (repo / "current.json").write_text(
            json.dumps({"apiVersion": "tritonops/v1", "kind": "State", "models": {}}), encoding="utf-8"
        ),
        "kind",
        "current.json",
    ),
    "malformed-version": (
        lambda repo: _edit_state(repo, lambda r: r.update(version="1")),
        "models.linear.version",
        "current.json",
    ),
    "malformed-digest": (
        lambda repo: _edit_state(repo, lambda r: r.update(digest="sha256:test")),
        "models.linear.digest",
        "current.json",
    ),
    "config-edited-after-commit": (
        lambda repo: _pin(repo, "# tuned after the commit\n" + PIN.format(version=1)),
        "models.linear.configDigest",
        "linear/config.pbtxt",
    ),
    "retained-folder-missing": (
        lambda repo: (
            _pin(repo, PIN.format(version="1, 2")),
            _edit_state(repo, lambda r: r.update(retained=[2], configDigest=_config_digest(repo))),
        ),
        "models.linear.retained",
        "linear/2",
    ),
    "retained-not-pinned": (
        lambda repo: (_second_version(repo), _edit_state(repo, lambda r: r.update(retained=[2]))),
        "version_policy",
        "linear/config.pbtxt",
    ),
    "malformed-config-digest": (
        lambda repo: _edit_state(repo, lambda r: r.update(configDigest="md5:1")),
        "models.linear.configDigest",
        "current.json",
    ),
    "malformed-retained-holds-the-version": (
        lambda repo: _edit_state(repo, lambda r: r.update(retained=[1])),
        "models.linear.retained",
        "current.json",
    ),
    "malformed-retained-not-a-list": (
        lambda repo: _edit_state(repo, lambda r: r.update(retained=2)),
        "models.linear.retained",
        "current.json",
    ),
    "malformed-config-not-a-mapping": (
        lambda repo: _edit_state(repo, lambda r: r.update(config="linear")),
        "models.linear.config",
        "current.json",
    ),
    "malformed-config-with-another-pin": (
        lambda repo: _edit_state(
            repo, lambda r: r.update(config={"version_policy": {"specific": {"versions": ["2"]}}})
        ),
        "models.linear.config.version_policy",
        "current.json",
    ),
    "malformed-committed-by": (
        lambda repo: _edit_state(repo, lambda r: r.update(committedBy=7)),
        "models.linear.committedBy",
        "current.json",
    ),
    "malformed-previous": (
        lambda repo: _edit_state(repo, lambda r: r.update(previous={"version": 0})),
        "models.linear.previous.version",
        "current.json",
    ),
    "malformed-previous-with-its-own-previous": (
        lambda repo: _edit_state(
            repo, lambda r: r.update(previous={"version": 1, "previous": {"version": 1}})
        ),
        "models.linear.previous.previous",
        "current.json",
    ),
    "malformed-pending-without-config-digest": (
        lambda repo: _edit_state(repo, lambda r: r.update(pending={"version": 2, "startedAt": "now"})),
        "models.linear.pending.configDigest",
        "current.json",
    ),
    "malformed-history-outcome": (
        lambda repo: _edit_history(repo, [{"model": "linear", "version": 1, "outcome": "done"}]),
        "history[0].outcome",
        "current.json",
    ),
    "malformed-history-not-a-list": (
        lambda repo: _edit_history(repo, {"model": "linear"}),
        "history",
        "current.json",
    ),
}


def _config_digest(repo: Path) -> str:
    return config_digest(repo / "linear")


def _edit_history(repo: Path, history: object) -> None:
    document = json.loads((repo / "current.json").read_text(encoding="utf-8"))
    document["history"] = history
    (repo / "current.json").write_text(json.dumps(document), encoding="utf-8")


def _committed_state_errors(report: validator.ValidationReport, repo: Path, file: str) -> list[Finding]:
    return [f for f in report.errors if f.file == str(repo / file)]


@pytest.mark.parametrize(("breaks", "field", "file"), REFUSALS.values(), ids=REFUSALS.keys())
def test_every_repository_the_launcher_refuses_fails_validation(
    committed_repo: Path, launch, breaks, field: str | None, file: str
) -> None:
    repo = committed_repo
    breaks(repo)

    launched = launch(repo)
    report = validator.validate(repo)

    assert launched.returncode != 0 and not launched.started, launched.stderr
    assert launched.stderr.startswith("launch: refusing to start: ")
    assert not report.passed
    named = _committed_state_errors(report, repo, file)
    assert named, [str(f) for f in report.findings]
    # The launcher's refusal and the validator's finding are the same words, from the same code.
    assert any(f"{finding.file}: {finding.message}" in launched.stderr for finding in named)
    if field is None:
        assert all(finding.line == 1 for finding in named)
    else:
        assert field in {finding.field for finding in named}


def test_committed_repository_starts_and_validates_clean(committed_repo: Path, launch) -> None:
    launched = launch(committed_repo)
    report = validator.validate(committed_repo)

    assert launched.returncode == 0 and launched.started, launched.stderr
    assert report.findings == ()


def test_record_without_digest_starts_and_is_a_warning_that_names_the_digest(
    committed_repo: Path, launch
) -> None:
    _edit_state(committed_repo, lambda r: r.pop("digest"))
    digest = checksums.version_digest(committed_repo / "linear" / "1")

    launched = launch(committed_repo)
    report = validator.validate(committed_repo)

    assert launched.returncode == 0 and launched.started, launched.stderr
    assert report.passed
    (finding,) = report.findings
    assert finding.severity is Severity.WARNING
    assert (finding.file, finding.field, finding.model) == (
        str(committed_repo / "current.json"),
        "models.linear.digest",
        "linear",
    )
    assert f'"digest": "{digest}"' in finding.message
    assert f"launch: warning: {finding.file}: {finding.message}" in launched.stderr


def test_a_pin_inside_a_string_is_not_taken_for_the_real_one(committed_repo: Path, launch) -> None:
    # Triton reads the real policy (latest); a parser that took the text inside the parameter's
    # string for it would let the pod start on whatever version is highest.
    _pin(
        committed_repo,
        'parameters { key: "note" value: { string_value: "version_policy { specific { versions: [1] } }" } }\n'
        "version_policy { latest { num_versions: 1 } }\n",
    )

    launched = launch(committed_repo)
    report = validator.validate(committed_repo)

    assert not launched.started
    assert "pins nothing" in launched.stderr
    assert any("pins nothing" in f.message for f in report.errors)


def test_launcher_and_triton_reading_a_pin_differently_is_an_error(committed_repo: Path) -> None:
    _pin(committed_repo, "version_policy { specific { versions: 0x1 } }\n")

    findings = committed_state.check(committed_repo)

    (disagreement,) = [f for f in findings if "the launcher reads the pin as" in f.message]
    assert disagreement.message.startswith("the launcher reads the pin as [0] but Triton reads [1]")
    assert disagreement.line is not None


def test_model_selection_checks_only_that_models_record(committed_repo: Path, add_linear) -> None:
    add_linear("other")
    _edit_state(committed_repo, lambda r: r.update(digest="sha256:" + "1" * 64))

    assert validator.validate(committed_repo, model="other").passed
    assert not validator.validate(committed_repo, model="linear").passed


def test_malformed_record_fails_validation_of_any_single_model(committed_repo: Path, add_linear) -> None:
    add_linear("other")
    (committed_repo / "current.json").write_text("[]", encoding="utf-8")

    report = validator.validate(committed_repo, model="other")

    (finding,) = report.errors
    assert (finding.file, finding.field) == (str(committed_repo / "current.json"), "kind")


def test_validate_cli_names_the_digest_finding_and_exits_1(committed_repo: Path, run_cli) -> None:
    (committed_repo / "linear" / "1" / "notes.txt").write_text("added later\n", encoding="utf-8")

    result = run_cli("repo", "validate", str(committed_repo))

    assert result.returncode == 1
    assert (
        f"error: {committed_repo / 'linear' / '1'} [models.linear.digest]: model linear version 1:"
        in result.stdout
    )
    assert "Traceback" not in result.stderr


# --- the effective record: a commit cut short between its writes ---------------------------------


def _commit_states(repo: Path) -> dict[str, Callable[[], None]]:
    """The repository as the promotion tool's three writes leave it when committing version 2 of a
    committed `linear` 1: each entry writes one of the states a crash can leave behind."""
    _second_version(repo)
    config = repo / "linear" / "config.pbtxt"
    old_config = config.read_text(encoding="utf-8")
    new_config = old_config.replace(PIN.format(version=1), PIN.format(version=2))
    old = json.loads((repo / "current.json").read_text(encoding="utf-8"))["models"]["linear"]
    new = {
        "version": 2,
        "digest": checksums.version_digest(repo / "linear" / "2"),
        "configDigest": "sha256:" + hashlib.sha256(new_config.encode()).hexdigest(),
        "committedAt": "2026-11-26T00:00:00Z",
        "committedBy": "ops@host pid 1",
        "source": "models:/linear/2",
    }

    def before_config(config_text: str) -> None:
        write_state(repo, {"linear": {**old, "pending": {**new, "startedAt": "2026-11-26T00:00:00Z"}}})
        config.write_text(config_text, encoding="utf-8")

    return {
        "pending-written": lambda: before_config(old_config),
        "config-written": lambda: before_config(new_config),
        "record-written": lambda: (
            write_state(repo, {"linear": {**new, "previous": old}}),
            config.write_text(new_config, encoding="utf-8"),
        ),
    }


@pytest.mark.parametrize(
    ("state", "in_force"), [("pending-written", 1), ("config-written", 2), ("record-written", 2)]
)
def test_a_commit_cut_short_at_any_write_starts_on_the_old_or_the_new_version(
    committed_repo: Path, launch, state: str, in_force: int
) -> None:
    _commit_states(committed_repo)[state]()

    launched = launch(committed_repo)
    report = validator.validate(committed_repo)

    assert launched.returncode == 0 and launched.started, launched.stderr
    assert f"committed model linear version {in_force}: files match sha256:" in launched.stderr
    assert report.passed, [str(f) for f in report.findings]
    pending = [f for f in report.findings if f.field == "models.linear.pending"]
    if state == "record-written":
        assert report.findings == ()
    else:
        (warning,) = pending
        assert warning.severity is Severity.WARNING
        assert f"version {in_force} " in warning.message and "`tritonops reconcile`" in warning.message


def test_a_pending_commit_with_a_config_nobody_committed_is_refused(committed_repo: Path, launch) -> None:
    committed_config = _config_digest(committed_repo)
    _commit_states(committed_repo)["pending-written"]()
    _pin(committed_repo, "# edited by someone\n" + PIN.format(version=1))

    launched = launch(committed_repo)

    # Neither the pending config nor the committed one: the committed record is compared and refused.
    assert not launched.started
    assert f"records configDigest {committed_config}, so it changed after the commit" in launched.stderr


def test_effective_record_is_pending_only_once_the_config_hashes_to_its_digest() -> None:
    cs = committed_state.script()
    new_config = b"version_policy { specific { versions: [2] } }\n"
    pending = cs.ModelRecord("m", 2, config_digest=cs.config_digest(new_config), started_at="t")
    old = cs.ModelRecord("m", 1, digest="sha256:" + "a" * 64, pending=pending)

    assert cs.effective_record(old, b"version_policy { specific { versions: [1] } }\n") is old
    assert cs.effective_record(old, None) is old
    effective = cs.effective_record(old, new_config)
    assert (effective.version, effective.pending) == (2, None)
    assert effective.previous == old._replace(pending=None)
    assert cs.effective_record(effective, new_config) is effective


@pytest.mark.parametrize(
    ("version", "retained", "pin"), [(2, (), [2]), (2, (1,), [1, 2]), (1, (3, 2), [1, 2, 3])]
)
def test_expected_pin_is_the_version_and_the_retained_ones(
    version: int, retained: tuple[int, ...], pin: list[int]
) -> None:
    cs = committed_state.script()
    assert cs.expected_pin(cs.ModelRecord("m", version, retained=retained)) == pin


def test_retained_version_pinned_beside_the_committed_one_starts(committed_repo: Path, launch) -> None:
    _second_version(committed_repo)
    _pin(committed_repo, PIN.format(version="1, 2"))
    _edit_state(
        committed_repo,
        lambda r: r.update(version=2, retained=[1], configDigest=_config_digest(committed_repo)),
    )
    _edit_state(
        committed_repo,
        lambda r: r.update(digest=checksums.version_digest(committed_repo / "linear" / "2")),
    )

    launched = launch(committed_repo)

    assert launched.returncode == 0 and launched.started, launched.stderr
    assert "committed model linear version 2 (retained beside it: [1])" in launched.stderr
    assert validator.validate(committed_repo).findings == ()


def test_every_field_the_promotion_tool_writes_reads_back_unchanged() -> None:
    cs = committed_state.script()
    digest = "sha256:" + "b" * 64
    written = {
        "version": 3,
        "digest": digest,
        "configDigest": digest,
        "config": {"name": "m", "version_policy": {"specific": {"versions": ["2", "3"]}}},
        "retained": [2],
        "source": "models:/m@champion",
        "resolvedSource": "models:/m/7",
        "committedAt": "2026-11-26T00:00:00Z",
        "committedBy": "ops@host pid 1",
        "previous": {"version": 2, "digest": digest},
        "pending": {"version": 4, "configDigest": digest, "startedAt": "2026-11-27T00:00:00Z"},
    }
    history = [
        {"model": "m", "version": 3, "previousVersion": 2, "outcome": "committed", "at": "t", "by": "b"},
        {"model": "m", "version": 4, "outcome": "failed", "step": "check", "reason": "NaN in output"},
    ]
    document = {"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {"m": written}}

    records, entries, problems = cs.parse_document(json.dumps({**document, "history": history}), "f")

    assert problems == []
    assert cs.to_json(records["m"]) == written
    assert entries == history
    assert records["m"].previous.name == records["m"].pending.name == "m"


# --- the sample repository ------------------------------------------------------------------------


def test_sample_repository_and_its_committed_state_validate_clean() -> None:
    root = example_repository.DEFAULT_OUTPUT
    assert committed_state.script().read(str(root / "current.json")) == {"linear": 1}
    assert committed_state.check(root) == []
    assert validator.validate(root).findings == ()


def test_sample_repository_with_a_changed_committed_file_fails(tmp_path: Path) -> None:
    copy = tmp_path / "sample"
    shutil.copytree(example_repository.DEFAULT_OUTPUT, copy)
    (copy / "linear" / "1" / "model.onnx.bak").write_bytes(b"")

    (finding,) = validator.validate(copy).errors

    assert (finding.file, finding.field) == (str(copy / "linear" / "1"), "models.linear.digest")


# --- one digest algorithm, two implementations ------------------------------------------------------


def _awkward_version_folder(root: Path) -> Path:
    """Names whose walk order differs from their sorted path order, nesting, an empty file and
    folder, a symlinked file, a non-ASCII name, a file just past the hashing chunk, a symlinked
    folder outside the version (Triton follows it) and a link back to a folder above it (a loop)."""
    version = root / "1"
    (version / "a" / "b").mkdir(parents=True)
    (version / "a-b").mkdir()
    (version / "empty-folder").mkdir()
    (version / "model.onnx").write_bytes(b"\x08\x07onnx")
    (version / "a" / "z.bin").write_bytes(b"z")
    (version / "a" / "b" / "deep.bin").write_bytes(b"deep")
    (version / "a-b" / "x").write_bytes(b"x")
    (version / "a.txt").write_bytes(b"")
    (version / "modèle.bin").write_bytes("é".encode())
    (version / "big.bin").write_bytes(bytes(range(256)) * (4096 + 1))  # 1 MiB + 256 bytes
    (version / "link.bin").symlink_to(version / "a" / "z.bin")
    (root / "shared" / "tokenizer").mkdir(parents=True)
    (root / "shared" / "weights.bin").write_bytes(b"shared weights")
    (root / "shared" / "tokenizer" / "vocab.txt").write_bytes(b"a b c")
    (version / "linked-folder").symlink_to(root / "shared")
    (version / "a" / "b" / "loop").symlink_to(version / "a")
    return version


@pytest.mark.parametrize(
    "folder",
    ["awkward", "sample-linear", "sample-mlp"],
)
def test_chart_script_and_package_compute_the_same_version_digest(tmp_path: Path, folder: str) -> None:
    if folder == "awkward":
        version = _awkward_version_folder(tmp_path)
    else:
        version = example_repository.DEFAULT_OUTPUT / folder.removeprefix("sample-") / "1"
    script = committed_state.script()

    assert script.file_digests(str(version)) == checksums.file_digests(version)
    assert script.version_digest(str(version)) == checksums.version_digest(version)


@pytest.mark.parametrize("implementation", ["chart-script", "package"])
def test_a_python_bytecode_cache_the_server_writes_does_not_change_the_digest(
    tmp_path: Path, implementation: str
) -> None:
    """The Python backend's stub compiles model.py into __pycache__ beside it on a writable
    repository: the version must keep the digest it was committed with."""
    version = tmp_path / "1"
    version.mkdir()
    (version / "model.py").write_text("class TritonPythonModel:\n    pass\n")

    def digest() -> str:
        if implementation == "chart-script":
            return str(committed_state.script().version_digest(str(version)))
        return checksums.version_digest(version)

    before = digest()
    (version / "__pycache__").mkdir()
    (version / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\x00bytecode")
    assert digest() == before


@pytest.mark.parametrize("implementation", ["chart-script", "package"])
def test_digest_covers_symlinked_folders_as_triton_reads_them_and_stops_at_loops(
    tmp_path: Path, implementation: str
) -> None:
    version = _awkward_version_folder(tmp_path)
    if implementation == "chart-script":
        script = committed_state.script()
        digests = functools.partial(script.file_digests, str(version))
        digest = functools.partial(script.version_digest, str(version))
    else:
        digests = functools.partial(checksums.file_digests, version)
        digest = functools.partial(checksums.version_digest, version)

    names = set(digests())
    # Triton loads through the link, so the digest must cover those files...
    assert {"linked-folder/weights.bin", "linked-folder/tokenizer/vocab.txt"} <= names
    # ...and a link back to a folder the walk is inside is not entered again.
    assert not [name for name in names if name.startswith("a/b/loop")], sorted(names)

    before = digest()
    (tmp_path / "shared" / "tokenizer" / "vocab.txt").write_bytes(b"a b c d")
    assert digest() != before, "a changed file behind a symlinked folder changes the version's digest"


def test_sample_record_holds_the_digest_both_implementations_compute() -> None:
    root = example_repository.DEFAULT_OUTPUT
    recorded = json.loads((root / "current.json").read_text(encoding="utf-8"))["models"]["linear"]["digest"]
    assert committed_state.script().version_digest(str(root / "linear" / "1")) == recorded
