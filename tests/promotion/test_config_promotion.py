"""`tritonops promote MODEL --config FILE` on two real replicas (the local runtime): a new config of
the committed version goes through the chain like a version (verify, load as an override with the
committed pin, check, commit pinned, narrow), is refused at verify with nothing changed, is undone
on every replica when it fails, and `tritonops rollback` brings the previous config back, served
and on disk, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.promotion.conftest import Fleet, launcher_check
from tritonops import errors
from tritonops.promotion import chain, replicas, smoke, state, workarea

# What `tritonops tune` would write for `linear`: larger batches (every batch the committed config
# accepts still fits), batched dynamically.
TUNED = """\
# Tuned by `tritonops tune` for linear: max_batch_size 16, dynamic batching.
name: "linear"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [ { name: "input" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "output" data_type: TYPE_FP32 dims: [ 2 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
dynamic_batching { max_queue_delay_microseconds: 100 }
"""


def served_configs(fleet: Fleet) -> list[tuple[int, bool]]:
    """(max_batch_size, dynamic batching on) of the config each replica serves `linear` with."""
    seen = []
    for replica in fleet.replicas:
        with replicas.connect(replica, fleet.key) as client:
            config = client.model_config("linear")
        seen.append((config.max_batch_size, config.HasField("dynamic_batching")))
    return seen


def config_on_disk(fleet: Fleet) -> str:
    return (fleet.repository / "linear" / "config.pbtxt").read_text(encoding="utf-8")


def target(fleet: Fleet) -> list[str]:
    return ["--repository", str(fleet.repository), "--work-dir", str(fleet.work_dir)]


@pytest.fixture
def tuned(tmp_path: Path) -> Path:
    """TUNED as the file `tritonops promote --config` reads."""
    path = tmp_path / "config.pbtxt"
    path.write_text(TUNED, encoding="utf-8")
    return path


def test_a_config_is_promoted_everywhere_and_rolled_back_byte_for_byte(
    fleet_runtime: Fleet, run_cli, tuned: Path
):
    fleet = fleet_runtime
    before, before_text = fleet.record(), config_on_disk(fleet)
    assert served_configs(fleet) == [(8, False)] * 2
    with fleet.traffic() as running:
        running.wait_for(100)
        result = run_cli("promote", "linear", "--config", str(tuned), *target(fleet))
        running.wait_for(len(running.report().answers) + 100)
    assert result.returncode == 0, result.stdout + result.stderr
    assert running.report().failed == []
    assert (
        f"committed config {state.config_digest(state.config_with_pin(TUNED, before.pin))}" in result.stdout
    )
    # Every replica serves the new config; the version and pin did not change.
    assert served_configs(fleet) == [(16, True)] * 2
    assert fleet.served() == [tuple(before.pin)] * 2
    record = fleet.record()
    assert (record.version, record.pin) == (before.version, before.pin)
    assert config_on_disk(fleet) == state.config_with_pin(TUNED, before.pin)
    assert record.config_digest == state.config_digest(config_on_disk(fleet)) != before.config_digest
    assert record.previous is not None and record.previous.config_digest == before.config_digest
    entry = state.read(fleet.repository).history[-1]
    assert (entry.outcome, entry.change, entry.version) == ("committed", "config", before.version)
    assert (entry.previous_config_digest, entry.config_digest) == (before.config_digest, record.config_digest)
    # The pod's launcher (and readiness check) accepts the new committed state.
    assert launcher_check(fleet.repository) == []
    # Promoting the same config again changes nothing.
    again = run_cli("promote", "linear", "--config", str(tuned), *target(fleet))
    assert again.returncode == 0 and "nothing to do" in again.stdout

    back = chain.rollback(repository=fleet.repository, replicas=fleet.replicas, key=fleet.key, model="linear")
    assert (back.result, back.version) == ("rolled-back", before.version)
    assert served_configs(fleet) == [(8, False)] * 2
    # The previous config.pbtxt comes back as it was, comments included (its kept copy).
    assert config_on_disk(fleet) == before_text
    assert fleet.record().config_digest == before.config_digest
    assert workarea.kept_config(fleet.repository, "linear", before.config_digest or "") == before_text
    assert launcher_check(fleet.repository) == []
    # A second rollback would undo the first: refused, naming the kept config to promote instead.
    again = run_cli("rollback", "linear", *target(fleet))
    kept = workarea.kept_config_path(fleet.repository, "linear", record.config_digest or "")
    assert again.returncode == 2 and f"promote linear --config {kept}" in again.stderr, again.stderr
    assert kept.read_text(encoding="utf-8") == state.config_with_pin(TUNED, before.pin)
    # An ordinary version promotion and its rollback still keep the (restored) config.
    version = fleet.new_version()
    chain.promote(
        repository=fleet.repository,
        replicas=fleet.replicas,
        key=fleet.key,
        model="linear",
        version=version,
        source=str(fleet.candidate(version)),
    )
    chain.rollback(repository=fleet.repository, replicas=fleet.replicas, key=fleet.key, model="linear")
    assert fleet.record().version == before.version and config_on_disk(fleet) == before_text
    assert served_configs(fleet) == [(8, False)] * 2


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (('name: "input"', 'name: "inputs"'), "input 'inputs' is not in the model"),
        (('name: "linear"', 'name: "other"'), "does not match the folder"),
        (("TYPE_FP32 dims: [ 2 ]", "TYPE_FP16 dims: [ 2 ]"), "config says TYPE_FP16"),
        (("max_batch_size: 16", "max_batch_size: 16 max_batch_size {"), "invalid config"),
        (
            ("max_batch_size: 16", "max_batch_size: 4"),
            "max_batch_size 4 is lower than the committed config's 8: every client sending batches "
            'larger than 4 gets HTTP 400 ("batch-size must be <= 4"); raise it to 8 or more, or give '
            "--allow-smaller-batch",
        ),
        (
            ("max_batch_size: 16", "max_batch_size: 0"),
            "max_batch_size 0 switches batching off (the committed config says 8)",
        ),
        (
            ("dims: [ 4 ] }", "dims: [ 4 ] reshape: { shape: [ 2, 2 ] } }"),
            "input 'input': reshape [2, 2] is not the committed config's None",
        ),
        (("TYPE_FP32 dims: [ 2 ]", "TYPE_FP32 dims: [ 2, 1 ]"), "output 'output': dims [2, 1] is not"),
    ],
    ids=[
        "wrong-input-name",
        "wrong-model-name",
        "wrong-output-type",
        "unparsable",
        "lower-max-batch-size",
        "batching-off",
        "other-reshape",
        "other-output-dims",
    ],
)
def test_a_config_refused_at_verify_changes_nothing(
    fleet_runtime: Fleet, run_cli, tmp_path: Path, change: tuple[str, str], said: str
):
    fleet = fleet_runtime
    before, before_text = fleet.record(), config_on_disk(fleet)
    bad = tmp_path / "config.pbtxt"
    bad.write_text(TUNED.replace(*change), encoding="utf-8")
    result = run_cli("promote", "linear", "--config", str(bad), *target(fleet))
    assert result.returncode == 2, result.stdout + result.stderr
    assert said in result.stderr, result.stderr
    assert fleet.record() == before and config_on_disk(fleet) == before_text
    assert served_configs(fleet) == [(8, False)] * 2
    entry = state.read(fleet.repository).history[-1]
    assert (entry.outcome, entry.step, entry.change) == ("failed", "verify", "config")


def test_config_flags_that_do_not_go_together_are_refused(
    fleet_runtime: Fleet, run_cli, tmp_path: Path, tuned: Path
):
    fleet = fleet_runtime
    committed = fleet.record().version
    for extra, said in (
        (["--from", str(tmp_path)], "--from with --config"),
        (["--version", str(committed + 50)], f"the committed version {committed}"),
        (["--keep-previous"], "--keep-previous"),
    ):
        result = run_cli("promote", "linear", "--config", str(tuned), *extra, *target(fleet))
        assert result.returncode == 2 and said in result.stderr, result.stderr
    result = run_cli("promote", "linear", *target(fleet))
    assert result.returncode == 2 and "give --version VERSION, or --config FILE" in result.stderr


@pytest.mark.parametrize("case", ["wrong-outputs", "load-timeout"])
def test_a_config_that_fails_puts_every_replica_back_on_the_committed_config(
    fleet_runtime: Fleet, tmp_path: Path, tuned: Path, case: str
):
    fleet = fleet_runtime
    before, before_text = fleet.record(), config_on_disk(fleet)
    options: dict[str, object] = {}
    if case == "wrong-outputs":
        # A golden file the served outputs do not match: the check fails on every replica.
        with replicas.connect(fleet.replicas[0], fleet.key) as client:
            inputs = smoke.inputs_for(client.model_config("linear"))
            outputs = client.infer("linear", inputs)
        golden = tmp_path / "golden.npz"
        np.savez(
            golden,
            **{f"input:{k}": v for k, v in inputs.items()},
            **{f"output:{k}": v * 3 + 1 for k, v in outputs.items()},
        )
        options["golden"] = smoke.load_golden(golden)
    else:
        options["load_deadline_s"] = 0.01
    step = "check" if case == "wrong-outputs" else "load"
    with pytest.raises(errors.PromotionFailed) as raised:
        chain.promote(
            repository=fleet.repository,
            replicas=fleet.replicas,
            key=fleet.key,
            model="linear",
            config=tuned,
            **options,  # type: ignore[arg-type]
        )
    assert raised.value.step == step
    outcome = raised.value.outcome
    assert isinstance(outcome, chain.Outcome)
    restore = next(s for s in outcome.steps if s.name == "restore")
    assert restore.status == "ok" and all(r.ok for r in restore.replicas)
    assert served_configs(fleet) == [(8, False)] * 2
    assert fleet.served() == [tuple(before.pin)] * 2
    assert fleet.record() == before and config_on_disk(fleet) == before_text
    entry = state.read(fleet.repository).history[-1]
    assert (entry.outcome, entry.step, entry.change) == ("failed", step, "config")


def write_record_by_hand(fleet: Fleet) -> state.Record:
    """`linear`'s record as the sample repository (or the README's emergency procedure) writes it:
    version, digests and time, with no `config` and no `previous`."""
    path = state.state_path(fleet.repository)
    document = json.loads(path.read_text(encoding="utf-8"))
    written = fleet.record().bare().to_json()
    document["models"]["linear"] = {
        key: written[key]
        for key in ("version", "digest", "configDigest", "retained", "committedAt")
        if key in written
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    record = fleet.record()
    assert record.config is None and record.previous is None
    assert record.config_digest == state.config_digest(config_on_disk(fleet))
    return record


def test_a_config_promoted_over_a_record_written_by_hand_rolls_back_byte_for_byte(
    fleet_runtime: Fleet, run_cli, tuned: Path
):
    fleet = fleet_runtime
    before = write_record_by_hand(fleet)
    before_text = config_on_disk(fleet)
    promoted = run_cli("promote", "linear", "--config", str(tuned), *target(fleet))
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert served_configs(fleet) == [(16, True)] * 2
    back = run_cli("rollback", "linear", *target(fleet))
    assert back.returncode == 0, back.stdout + back.stderr
    assert "rolled-back" in back.stdout and "noop" not in back.stdout, back.stdout
    assert served_configs(fleet) == [(8, False)] * 2
    assert config_on_disk(fleet) == before_text
    assert fleet.record().config_digest == before.config_digest
    assert launcher_check(fleet.repository) == []


def test_a_config_rollback_without_the_previous_text_is_refused_naming_the_kept_file(
    fleet_runtime: Fleet, run_cli, tmp_path: Path, tuned: Path
):
    fleet = fleet_runtime
    before = write_record_by_hand(fleet)
    before_text = config_on_disk(fleet)
    assert run_cli("promote", "linear", "--config", str(tuned), *target(fleet)).returncode == 0
    kept = workarea.kept_config_path(fleet.repository, "linear", before.config_digest or "")
    kept.unlink()
    promoted, promoted_text = fleet.record(), config_on_disk(fleet)
    refused = run_cli("rollback", "linear", *target(fleet))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"its kept copy {kept} is missing" in refused.stderr
    assert "`tritonops promote linear --config <file>" in refused.stderr
    assert fleet.record() == promoted and config_on_disk(fleet) == promoted_text
    assert served_configs(fleet) == [(16, True)] * 2
    # The way back it names: promote the old config, a smaller batch on purpose.
    old = tmp_path / "old.pbtxt"
    old.write_text(before_text, encoding="utf-8")
    smaller = run_cli("promote", "linear", "--config", str(old), *target(fleet))
    assert (
        smaller.returncode == 2
        and "max_batch_size 8 is lower than the committed config's 16" in smaller.stderr
    )
    assert fleet.record() == promoted
    allowed = run_cli("promote", "linear", "--config", str(old), "--allow-smaller-batch", *target(fleet))
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "warning" in allowed.stdout and "--allow-smaller-batch" in allowed.stdout
    assert served_configs(fleet) == [(8, False)] * 2
    assert config_on_disk(fleet) == before_text
