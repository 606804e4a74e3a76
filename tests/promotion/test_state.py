"""The committed state as the promotion tool reads and writes it: one parser (the chart's), the pin
rewritten without touching the rest of config.pbtxt, the three-write commit, finalize, history."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.promotion.conftest import LINEAR_CONFIG, add_version, commit_version, launcher_check
from tritonops import errors
from tritonops.promotion import state, workarea
from tritonops.repository import committed_state, validator

# --- config_with_pin -----------------------------------------------------------------------------

BLOCK = "version_policy { specific { versions: [ 2, 3 ] } }"


@pytest.mark.parametrize(
    ("before", "policy"),
    [
        (
            "version_policy { specific { versions: [ 1 ] } }",
            "version_policy { specific { versions: [ 1 ] } }",
        ),
        (
            "version_policy: {\n  specific: {\n    versions: [1]  # was [0]\n  }\n}",
            "version_policy: {\n  specific: {\n    versions: [1]  # was [0]\n  }\n}",
        ),
        ("version_policy { latest { num_versions: 2 } }", "version_policy { latest { num_versions: 2 } }"),
        ("version_policy: { all: { } }", "version_policy: { all: { } }"),
        ("version_policy < specific < versions: 1 > >", "version_policy < specific < versions: 1 > >"),
    ],
    ids=["specific", "multiline-with-comment", "latest", "all", "angle-brackets"],
)
def test_the_pin_replaces_only_the_version_policy_block(before: str, policy: str) -> None:
    head = '# header: version_policy { specific { versions: [9] } } in a comment\nname: "m"\n'
    head += 'parameters { key: "k" value: { string_value: "version_policy { x } # not a comment" } }\n'
    tail = "\ninstance_group [ { kind: KIND_CPU } ]  # trailing\n"

    result = state.config_with_pin(head + before + tail, [3, 2])

    assert result == head + BLOCK + tail
    assert committed_state.script().pinned_versions(result) == [2, 3]


@pytest.mark.parametrize("ending", ["\n", ""], ids=["newline", "no-newline"])
def test_a_config_without_a_pin_gets_one_appended(ending: str) -> None:
    config = LINEAR_CONFIG.rstrip("\n") + ending

    result = state.config_with_pin(config, [1])

    assert result == LINEAR_CONFIG + "version_policy { specific { versions: [ 1 ] } }\n"
    assert state.parse_config(result).version_policy.specific.versions == [1]


@pytest.mark.parametrize(
    ("config", "versions", "message"),
    [
        (
            'name: "m"\nversion_policy { latest { num_versions: 1 } }\nversion_policy { all {} }',
            [1],
            "set 2 times",
        ),
        ('name: "m"\nbogus_field: 1\n', [1], "invalid config"),
        ('name: "m"\n', [], "give one or more positive versions"),
        ('name: "m"\n', [0], "give one or more positive versions"),
        ('name: "m"\nversion_policy { specific { versions: [1] }\n', [1], "not closed"),
    ],
    ids=["twice", "not-a-config", "no-versions", "version-zero", "unclosed"],
)
def test_a_config_that_cannot_be_pinned_safely_is_refused_naming_the_file(
    config: str, versions: list[int], message: str
) -> None:
    with pytest.raises(errors.InputError, match=message) as raised:
        state.config_with_pin(config, versions, where="/repo/m/config.pbtxt")
    assert str(raised.value).startswith("/repo/m/config.pbtxt: ")


def test_config_json_is_what_the_record_holds_and_the_chart_reads_its_pin() -> None:
    config = state.config_with_pin(LINEAR_CONFIG, [1, 4])

    document = state.config_json(config)

    assert document["name"] == "linear"
    assert document["input"][0] == {"name": "input", "data_type": "TYPE_FP32", "dims": ["4"]}
    assert document["version_policy"] == {"specific": {"versions": ["1", "4"]}}
    assert committed_state.script()._config_pin(document) == [1, 4]


# --- reading ---------------------------------------------------------------------------------------


def test_an_absent_record_means_nothing_committed(tmp_path: Path) -> None:
    read = state.read(tmp_path)
    assert (read.exists, dict(read.records), read.history) == (False, {}, ())


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("{not json", None),
        (
            '{"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {"m": {"version": "3"}}}',
            "models.m.version",
        ),
        (
            '{"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": {}, "history": [{"model": "m", "outcome": "?"}]}',
            "history[0].outcome",
        ),
    ],
    ids=["not-json", "version-not-a-number", "history-outcome"],
)
def test_a_malformed_record_is_refused_naming_the_file_and_field_and_left_alone(
    tmp_path: Path, content: str, field: str | None
) -> None:
    path = tmp_path / "current.json"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(errors.InputError) as raised:
        state.read(tmp_path)
    with pytest.raises(errors.InputError):
        state.append_history(tmp_path, state.HistoryEntry("m", 1, "noop"))

    assert str(raised.value).startswith(f"{path}: malformed committed state: ")
    assert "Nothing was changed" in str(raised.value)
    if field:
        assert f"[{field}]" in str(raised.value)
    assert path.read_text(encoding="utf-8") == content


# --- commit ----------------------------------------------------------------------------------------


def test_the_first_commit_pins_records_and_validates_clean(repo: Path) -> None:
    read = state.read(repo)
    record = read.records["linear"]

    assert (record.version, record.previous, record.pending, record.pin) == (1, None, None, [1])
    assert record.config_digest == state.config_digest((repo / "linear" / "config.pbtxt").read_bytes())
    assert record.config is not None and record.config["version_policy"] == {"specific": {"versions": ["1"]}}
    assert re.fullmatch(r".+@.+ pid \d+", record.committed_by or "")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record.committed_at or "")
    assert [(h.model, h.version, h.previous_version, h.outcome) for h in read.history] == [
        ("linear", 1, None, "committed")
    ]
    assert launcher_check(repo) == []
    assert validator.validate(repo).findings == ()
    # Only the pin was added to the config: every other byte is as the user wrote it.
    assert (repo / "linear" / "config.pbtxt").read_text() == LINEAR_CONFIG + (
        "version_policy { specific { versions: [ 1 ] } }\n"
    )


def test_a_second_commit_keeps_the_old_record_as_previous(repo: Path) -> None:
    add_version(repo, 2)
    before = state.read(repo).records["linear"]

    written = commit_version(repo, 2, retained=(1,))

    read = state.read(repo)
    assert read.records["linear"] == written
    assert (written.version, written.retained, written.pin) == (2, (1,), [1, 2])
    assert written.previous == before.bare()
    assert [(h.version, h.previous_version, h.outcome) for h in read.history][-1] == (2, 1, "committed")
    assert state.effective(repo)["linear"] == written
    assert launcher_check(repo) == []
    assert validator.validate(repo).findings == ()


def test_a_config_that_does_not_pin_the_records_versions_is_refused_before_any_write(repo: Path) -> None:
    add_version(repo, 2)
    before = (repo / "current.json").read_bytes(), (repo / "linear" / "config.pbtxt").read_bytes()
    record = state.Record("linear", 2, digest="sha256:" + "0" * 64)

    with pytest.raises(errors.InputError, match=r"pins \[1\] but the record commits \[2\]"):
        state.commit(repo, "linear", record, (repo / "linear" / "config.pbtxt").read_text())

    assert ((repo / "current.json").read_bytes(), (repo / "linear" / "config.pbtxt").read_bytes()) == before


def test_a_commit_keeps_other_models_records_and_unknown_keys_as_written(repo: Path) -> None:
    document = json.loads((repo / "current.json").read_text())
    document["note"] = "kept"
    document["models"]["other"] = {"version": 7, "digest": "sha256:" + "a" * 64, "custom": True}
    (repo / "current.json").write_text(json.dumps(document))
    add_version(repo, 2)

    commit_version(repo, 2)

    after = json.loads((repo / "current.json").read_text())
    assert after["note"] == "kept"
    assert after["models"]["other"] == document["models"]["other"]


def test_history_keeps_the_newest_200_entries(repo: Path) -> None:
    for attempt in range(state.HISTORY_LIMIT + 4):
        state.append_history(
            repo, state.HistoryEntry("linear", 9, "failed", step="check", reason=f"try {attempt}")
        )

    history = state.read(repo).history

    assert len(history) == state.HISTORY_LIMIT
    assert history[-1].reason == f"try {state.HISTORY_LIMIT + 3}"
    assert history[0].reason == "try 4"


def test_finalize_with_nothing_pending_changes_nothing(repo: Path) -> None:
    before = (repo / "current.json").read_bytes()
    assert state.finalize(repo) == []
    assert (repo / "current.json").read_bytes() == before


@pytest.mark.parametrize("change", ["config", "version"])
def test_finalize_records_an_interrupted_config_commit_as_a_config_change(
    repo: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    before = state.read(repo).records["linear"]
    text = (repo / "linear" / "config.pbtxt").read_text(encoding="utf-8")
    if change == "config":
        version, text = 1, text.replace("max_batch_size: 8", "max_batch_size: 16")
    else:
        version = 2
        add_version(repo, 2)
        text = state.config_with_pin(text, [2])
    written = state._write_document
    calls: list[Path] = []

    def killed_at_the_record_write(path: Path, document: object) -> None:
        calls.append(path)
        if len(calls) == 2:  # write 1 (pending) landed, and write 2 (config.pbtxt); not write 3
            raise OSError("killed")
        written(path, document)  # type: ignore[arg-type]

    monkeypatch.setattr(state, "_write_document", killed_at_the_record_write)
    with pytest.raises(OSError, match="killed"):
        state.commit(repo, "linear", state.Record("linear", version), text)
    monkeypatch.undo()

    assert state.finalize(repo)
    last = state.read(repo).history[-1]
    assert (last.outcome, last.version) == ("committed", version)
    if change == "config":
        assert (last.change, last.previous_config_digest, last.config_digest) == (
            "config",
            before.config_digest,
            state.config_digest(text),
        )
    else:
        assert (last.change, last.config_digest, last.previous_config_digest) == (None, None, None)


def test_a_history_entry_with_an_unknown_outcome_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="outcome 'done'"):
        state.HistoryEntry("m", 1, "done")


def test_written_files_are_readable_by_the_pod_user(repo: Path) -> None:
    # The pod reads the repository as another user: the atomic writes must not leave mkstemp's 0600.
    for path in (repo / "current.json", repo / "linear" / "config.pbtxt"):
        assert path.stat().st_mode & 0o044 == 0o044, oct(path.stat().st_mode)


def test_a_first_commit_whose_record_write_fails_puts_the_old_config_back(
    tmp_path: Path, monkeypatch
) -> None:
    """No pending record can say which config is in force before a model's first record: a failed
    record write (a full disk) must not leave config.pbtxt pinning a version nothing records."""
    root = tmp_path / "models"
    (root / "linear").mkdir(parents=True)
    (root / "linear" / "config.pbtxt").write_text(LINEAR_CONFIG, encoding="utf-8")
    add_version(root, 1)
    add_version(root, 2)

    def disk_full(path: Path, document: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state, "_write_document", disk_full)
    new = state.Record("linear", 2)
    with pytest.raises(OSError, match="No space left"):
        state.commit(root, "linear", new, state.config_with_pin(LINEAR_CONFIG, [2]))
    assert (root / "linear" / "config.pbtxt").read_text() == LINEAR_CONFIG
    assert not (root / "current.json").exists()


def test_a_version_the_config_pins_is_never_quarantined(repo: Path) -> None:
    """The other half: a rollback after such a failure must not move the pinned folder away."""
    add_version(repo, 2)
    (repo / "linear" / "config.pbtxt").write_text(state.config_with_pin(LINEAR_CONFIG, [1, 2]))
    with pytest.raises(errors.InputError, match=r"config.pbtxt pins version 2 \(\[1, 2\]\)"):
        workarea.quarantine(repo, "linear", 2, "load", "test")
    assert (repo / "linear" / "2").is_dir()
