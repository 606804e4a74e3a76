"""`tritonops tune` on the real local runtime (the sample repository's `linear` model, its agent
converging the committed state): the server runs its original config after a run, after a
variant that fails to load, after Ctrl-C or SIGTERM mid-run, and bad input changes nothing.

Runs are short (a few measurements, short perf_analyzer windows, a wide stability band). The tests
compare the config Triton reports before and after, and count the loads the replica's log shows
(Triton logs `loading: MODEL:VERSION` for each); they assert behaviour, never a measured figure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.runtime.conftest import free_port_offset
from tritonops.runtime import control
from tritonops.triton import client as triton_client
from tritonops.triton import perf_analyzer

MODEL = "linear"
# Short measurements: 2 requests in flight, 300 ms windows, a band wide enough for a busy machine.
SHORT = (
    "--concurrency", "2", "--measurement-interval", "300", "--max-trials", "12",
    "--stability-percentage", "100", "--max-instances", "2",
)  # fmt: skip


def _client(runtime: control.RuntimeStatus) -> triton_client.Client:
    replica = runtime.replicas[0]
    return triton_client.Client(
        replica.url.removeprefix("http://"),
        grpc_address=replica.grpc_address,
        api_header=runtime.api_header,
        api_key=runtime.api_key(),
    )


def _served(runtime: control.RuntimeStatus):
    with _client(runtime) as client:
        return client.model_config(MODEL)


def _loads(runtime: control.RuntimeStatus) -> int:
    """How many loads of the model the replica has run so far (its log says each)."""
    text = Path(control.status(runtime.work_dir).replicas[0].log).read_text(errors="replace")
    return text.count(f'"loading: {MODEL}:')


def _tune(run_cli, runtime, out: Path, *args: str):
    return run_cli("tune", MODEL, "--work-dir", str(runtime.work_dir), "--out", str(out), *SHORT, *args)


def test_after_a_run_the_server_runs_its_original_config_and_the_winner_validates(run_cli, runtime, tmp_path):
    before, loads = _served(runtime), _loads(runtime)
    done = _tune(run_cli, runtime, tmp_path / "out", "--p99-budget", "1000", "--max-measurements", "3")
    assert done.returncode == 0, done.stderr
    assert "warning: every variant is loaded on replica 0 of the local runtime" in done.stderr
    assert "never the whole fleet" in done.stderr
    assert "measurement 3 of 3: " in done.stderr and "(best so far: " in done.stderr
    assert "the server runs its original config again" in done.stdout
    assert _loads(runtime) >= loads + 3, "two variants were loaded, then the original"
    assert _served(runtime) == before
    document = json.loads((tmp_path / "out" / "tune.json").read_text())
    assert len(document["results"]) == 3 and document["results"][0]["baseline"]
    assert document["restored"] == {"original_config": True, "differs_in": []}
    # The winner's config.pbtxt, in a copy of the model folder, passes `repo validate`.
    repository = tmp_path / "repository"
    shutil.copytree(runtime.repository / MODEL, repository / MODEL)
    shutil.copy(tmp_path / "out" / "config.pbtxt", repository / MODEL / "config.pbtxt")
    validated = run_cli("repo", "validate", str(repository))
    assert validated.returncode == 0, validated.stdout


def test_a_variant_that_fails_to_load_is_reported_and_the_run_goes_on(
    run_cli, runtime, tmp_path, monkeypatch
):
    """GPU instances on a server without GPUs do not load. Through --endpoint with the key from
    $TRITONOPS_API_KEY (a port-forwarded pod), as a remote run does it."""
    before = _served(runtime)
    replica = runtime.replicas[0]
    endpoint = f"{replica.url}?grpc={replica.grpc_address.rsplit(':', 1)[1]}"
    monkeypatch.setenv("TRITONOPS_API_KEY", runtime.api_key() or "")
    done = run_cli(
        "tune", MODEL, "--endpoint", endpoint, "--out", str(tmp_path / "out"), *SHORT,
        "--p99-budget", "1000", "--max-measurements", "3", "--instance-kinds", "gpu,cpu",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 x GPU -> failed to load (skipped)" in done.stderr
    assert "no GPUs are available" in done.stderr
    results = json.loads((tmp_path / "out" / "tune.json").read_text())["results"]
    assert [r["variant"]["kind"] for r in results] == ["KIND_CPU", "KIND_GPU", "KIND_CPU"]
    assert results[1]["failed"]["stage"] == "load"
    assert _served(runtime) == before


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_mid_run_restores_the_original_config_and_exits_130(runtime, tmp_path, signal_number):
    before, loads = _served(runtime), _loads(runtime)
    command = [
        sys.executable, "-m", "tritonops.cli", "tune", MODEL, "--work-dir", str(runtime.work_dir),
        "--out", str(tmp_path / "out"), *SHORT, "--p99-budget", "1000", "--max-measurements", "20",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    assert process.stderr is not None
    try:
        for line in process.stderr:
            seen.append(line)
            if line.startswith("measurement 2 of ") and ": loading " in line:
                process.send_signal(signal_number)  # the first variant is loading or being measured
                break
        stdout, stderr = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(seen) + stderr
    assert process.returncode == 130, output + stdout
    assert "interrupted: the original config is back" in output
    assert _loads(runtime) >= loads + 2, "the variant was loaded, then the original"
    assert _served(runtime) == before
    # What was measured before the signal is in the checkpoint, and the message says how to go on.
    kept = json.loads((tmp_path / "out" / "checkpoint.json").read_text())["results"]
    assert kept and kept[0]["baseline"] and "--resume` goes on from there" in output


def test_a_stopped_run_resumes_from_its_checkpoint_without_measuring_again(run_cli, runtime, tmp_path):
    out = tmp_path / "out"
    first = _tune(run_cli, runtime, out, "--p99-budget", "1000", "--max-measurements", "2")
    assert first.returncode == 0, first.stderr
    assert "--max-measurements 4 --resume`" in first.stderr
    measured = json.loads((out / "tune.json").read_text())["results"]

    again = _tune(run_cli, runtime, out, "--p99-budget", "1000")
    assert again.returncode == 2 and "add --resume to continue it" in again.stderr, again.stderr
    changed = run_cli(
        "tune", MODEL, "--work-dir", str(runtime.work_dir), "--out", str(out), *SHORT[2:],
        "--concurrency", "1", "--p99-budget", "1000", "--resume",
    )  # fmt: skip
    assert changed.returncode == 2, changed.stderr
    assert "recorded with concurrency 2, this run has 1; resume with the same --concurrency" in changed.stderr

    before, loads = _served(runtime), _loads(runtime)
    resumed = _tune(run_cli, runtime, out, "--p99-budget", "1000", "--max-measurements", "3", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming: 2 measurement(s) from " in resumed.stderr
    assert resumed.stderr.count("(from the checkpoint)") == 2
    assert resumed.stderr.count(": loading ") == 1, "only the third variant is measured"
    results = json.loads((out / "tune.json").read_text())["results"]
    assert len(results) == 3 and results[:2] == measured
    assert _loads(runtime) >= loads + 2 and _served(runtime) == before


def _closed_port() -> int:
    return free_port_offset(1) + 8000


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("unknown-model", 2, "nosuch: replica 0 of the local runtime in"),
        ("unreachable", 1, "no answer from Triton"),
        ("no-perf-analyzer", 1, "perf_analyzer is not installed there"),
        ("wrong-key", 2, "the restricted-API key is missing or wrong"),
    ],
    ids=["unknown-model", "unreachable-endpoint", "no-perf-analyzer", "wrong-key"],
)
def test_bad_input_is_refused_clearly_and_changes_nothing(
    run_cli, runtime, tmp_path, monkeypatch, case, code, words
):
    before, loads = _served(runtime), _loads(runtime)
    model, where = MODEL, ("--work-dir", str(runtime.work_dir))
    if case == "unknown-model":
        model = "nosuch"
    elif case == "unreachable":
        where = ("--endpoint", f"http://127.0.0.1:{_closed_port()}")
    elif case == "no-perf-analyzer":
        monkeypatch.setenv(perf_analyzer.BINARY_ENV, str(tmp_path / "missing" / "perf_analyzer"))
    else:
        (tmp_path / "key").write_text("not-the-key\n")
        where = (*where, "--api-key-file", str(tmp_path / "key"))
    refused = run_cli("tune", model, *where, "--out", str(tmp_path / "out"), *SHORT, "--p99-budget", "100")
    assert refused.returncode == code, refused.stderr
    assert words in refused.stderr
    assert "Traceback" not in refused.stderr
    assert "warning: every variant" not in refused.stderr, "refused before anything changes"
    assert _loads(runtime) == loads and _served(runtime) == before
    if case == "unknown-model":
        assert "knows no model of that name (its models: " in refused.stderr and MODEL in refused.stderr


def test_a_budget_no_variant_meets_names_the_closest_and_restores(run_cli, runtime, tmp_path):
    before = _served(runtime)
    missed = _tune(run_cli, runtime, tmp_path / "out", "--p99-budget", "0.001", "--max-measurements", "2")
    assert missed.returncode == 3, missed.stderr
    assert "no variant met p99 <= 0.001 ms; the closest was " in missed.stderr
    assert " ms (" in missed.stderr and "inf/s at concurrency 2" in missed.stderr
    assert "the server runs its original config again" in missed.stderr
    assert not (tmp_path / "out" / "config.pbtxt").exists()
    assert json.loads((tmp_path / "out" / "tune.json").read_text())["closest"] is not None
    assert _served(runtime) == before


def test_the_json_output_is_the_document_tune_writes(run_cli, runtime, tmp_path):
    done = _tune(
        run_cli, runtime, tmp_path / "out", "--p99-budget", "1000", "--max-measurements", "1", "--json"
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed == json.loads((tmp_path / "out" / "tune.json").read_text())
    assert printed["winner"]["variant"] == printed["baseline"]["variant"]
    assert os.path.exists(printed["files"]["winner's config"])
