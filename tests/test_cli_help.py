"""What `tritonops --help` and each command's help say a new user needs, and the errors of a
command group run without its subcommand (no process is started here)."""

from __future__ import annotations

import re

import pytest

import tritonops
from tritonops.chart import environments


def _help(run_cli, *command: str) -> str:
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())  # argparse wraps lines: compare word sequences


def test_version_names_the_package_and_the_chart(run_cli):
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    chart = (environments.CHART_DIR / "Chart.yaml").read_text()
    version = re.search(r"^version: *(\S+)", chart, re.M).group(1)
    assert result.stdout.startswith(f"tritonops {tritonops.__version__} (chart triton {version}, ")


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (
            ("status",),
            ["2 nothing was started in the work folder", "--json print {replicas: one object per replica"],
        ),
        (("logs",), ["REPLICA only this replica", "-n LINES, --lines LINES the last N lines"]),
        (("down",), ["exit 0 stopped, 3 nothing was running, 2 nothing was started"]),
        (("up",), ["any environment: local (default), dev or prod", "on the CPU"]),
        (("lint",), ["--env ENV limit to this environment (repeatable"]),
        (("demo",), ["smoke inferences checked against onnxruntime", "leaves it running"]),
        (("render",), ["a={} the empty list"]),
        (("repo", "gen-config"), ["--warmup add a model_warmup sample (zeros, batch 1"]),
    ],
    ids=["status", "logs", "down", "up", "lint", "demo", "render-set", "gen-config-warmup"],
)
def test_command_help_says_what_a_new_user_needs(run_cli, command, said):
    text = _help(run_cli, *command)
    for fragment in said:
        assert fragment in text, text


def test_status_help_in_the_command_list_names_every_exit_code(run_cli):
    text = _help(run_cli)
    assert (
        "exit 0 all Ready and in sync, 1 a problem found (not Ready, drift, served versions unknown, an "
        "unreadable committed record), 3 not running, 2 nothing was started in the work folder"
    ) in text


@pytest.mark.parametrize(
    ("command", "done", "codes"),
    [
        ("promote", "0 committed, or a no-op that says so", "01234"),
        ("rollback", "0 rolled back, or a no-op that says so", "01234"),
        ("reconcile", "0 every replica serves the committed state", "0123"),
    ],
)
def test_promotion_commands_help_names_their_exit_codes(run_cli, command, done, codes):
    text = _help(run_cli, command)
    epilog = text[text.index("exit codes: ") :]
    assert epilog.startswith(f"exit codes: {done}; 1 ")
    assert "; 2 unusable input, nothing changed (" in epilog
    assert "; 3 another promotion holds the repository's lock, or left a stale one" in epilog
    said = re.findall(r"(?:: |; )(\d) ", epilog)
    assert "".join(said) == codes, epilog
    if "4" in codes:
        assert "4 finished, but not every replica is confirmed on the committed state" in epilog


def test_tune_help_names_its_exit_codes_and_warns_that_it_changes_the_server(run_cli):
    text = _help(run_cli, "tune")
    assert "changes what that server answers while it runs" in text
    assert "never a flag value" in text
    epilog = text[text.index("exit codes: ") :]
    assert re.findall(r"(?:: |; )(\d+) ", epilog) == ["0", "1", "2", "3", "130"], epilog
    assert "3 no variant met the budget, or none could be measured (the closest one is named" in epilog
    assert "130 interrupted by Ctrl-C or SIGTERM (the original config is back)" in epilog


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            ("repo",),
            "tritonops: repo: choose a command: validate, gen-config or checksum "
            "(see `tritonops repo --help`)\n",
        ),
        (
            (),
            "tritonops: choose a command: render, lint, summary, demo, up, status, logs, down, docs, repo, "
            "unlock, promote, rollback, reconcile or tune",
        ),
    ],
    ids=["repo", "top-level"],
)
def test_a_command_group_without_its_command_names_the_choices(run_cli, command, expected):
    result = run_cli(*command)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(expected) and "repo_command" not in result.stderr


def test_docs_check_covers_the_dashboard_and_the_sample_repository(tmp_path, monkeypatch, capsys):
    # One command regenerates and checks every generated file (the Makefile calls only this one).
    from tritonops import cli
    from tritonops.observability import dashboard
    from tritonops.repository import example_repository

    stale_dashboard = tmp_path / "triton.json"
    stale_dashboard.write_text("{}", encoding="utf-8")
    monkeypatch.setattr(dashboard, "DASHBOARD_FILE", stale_dashboard)
    assert cli.main(["docs", "--check"]) == 1
    assert str(stale_dashboard) in capsys.readouterr().err

    monkeypatch.setattr(dashboard, "DASHBOARD_FILE", tmp_path / "fresh.json")
    assert dashboard.main(["--write", "--file", str(tmp_path / "fresh.json")]) == 0
    empty_repository = tmp_path / "model-repository"
    empty_repository.mkdir()
    monkeypatch.setattr(example_repository, "DEFAULT_OUTPUT", empty_repository)
    capsys.readouterr()
    assert cli.main(["docs", "--check"]) == 1
    assert str(empty_repository) in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "prog"),
    [
        (("render", "--bogus"), "tritonops render"),
        (("repo", "validate", ".", "--bogus"), "tritonops repo validate"),
        (("unlock", "--bogus"), "tritonops unlock"),
        (("--bogus",), "tritonops"),
    ],
    ids=["command", "group-command", "unlock", "top-level"],
)
def test_an_unknown_argument_points_at_the_help_of_its_command(run_cli, command, prog):
    result = run_cli(*command)
    assert result.returncode == 2
    assert result.stderr == f"tritonops: error: unrecognized arguments: --bogus (see `{prog} --help`)\n"


def test_an_abbreviated_option_is_not_taken_for_the_full_one(run_cli):
    result = run_cli("render", "--env", "dev", "--output=/tmp/x")
    assert result.returncode == 2 and "unrecognized arguments: --output=/tmp/x" in result.stderr


def test_render_help_lists_every_environment(run_cli):
    text = _help(run_cli, "render")
    assert f"--env ENV {', '.join(list(environments.ENVIRONMENTS)[:-1])} or ci-kind" in text, text
    assert "ci-kind" in _help(run_cli, "lint")
