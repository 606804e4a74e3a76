"""The `tritonops` command: thin commands that parse, call one function, print, and pick the exit code.

Exit codes: 0 success, 1 findings (a gate failed), 2 unusable input (bad values, unknown flag).
`status` says how the replicas and the committed state are: 0 every replica Ready and on the
committed state, 1 a problem found (a replica not Ready, drift, served versions the repository API
refused to tell, or a committed record that cannot be read), 3 the local runtime is not running
(stopped, or its supervisor died), 2 nothing was started in that work folder (and no --repository
given: with one, status shows the committed record and exits 0, or 1 when it cannot be read).
`down` uses the same codes for what it found: 0 it stopped the runtime (or killed what its dead
supervisor left), 3 nothing was running there, 2 nothing was ever started there. `promote`,
`rollback` and `reconcile`: 0 done (committed, a no-op, or every replica converged), 1 failed at a
step (every replica rolled back; the step and the cause are named), 2 unusable input (nothing
changed; a candidate refused at verify), 3 another promotion holds the repository's lock (or left a
stale one), 4 finished but not every replica is confirmed on the committed state (EXIT_DEGRADED).
With `--json`, an error is also printed on stdout as {"error": ..., "exit_code": N} (a failed
promotion, or one refused at verify, prints its whole outcome with those two keys added).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import shlex
import signal
import sys
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

import tritonops
from tritonops import errors
from tritonops.chart import environments, gates, render, summary, values_docs
from tritonops.observability import dashboard
from tritonops.promotion import chain, fleet, lock, replicas, smoke
from tritonops.promotion import status as model_status
from tritonops.repository import checksums, config_generator, example_repository, validator
from tritonops.runtime import control, demo, workspace
from tritonops.tuning import measure as tuning_measure
from tritonops.tuning import run as tuning_run
from tritonops.tuning import search as tuning_search
from tritonops.tuning import space as tuning_space

log = logging.getLogger("tritonops")

STATUS_ALL_READY, STATUS_NOT_ALL_READY, STATUS_NOT_RUNNING = 0, 1, 3
# A promote, rollback or reconcile that finished but could not confirm every replica on the
# committed state (the agent or `tritonops reconcile` converges it): not a silent success.
EXIT_DEGRADED = 4
ENDPOINTS_FORM = "http://HOST:PORT[?grpc=PORT],..."
WAIT_ENV = "TRITONOPS_WAIT_FOR_READY"
SET_HELP = "override a value: key=value, as Helm reads it (a={x,y} a list, a={} the empty list, a=null removes a); repeatable"


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are InputErrors: one clear line, exit 2, JSON too under --json.

    No prefix abbreviations (`--repo` for `--repository`): the chart's promotion Job refuses the
    flags it sets itself by their full names in promotion.job.extraArgs, and an abbreviation would
    slip past that guard (and a new option could silently change what an old abbreviation means)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise errors.InputError(f"error: {message} (see `{self.prog} --help`)")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        # Unknown arguments are found by the top-level parser, after the command's parser is done:
        # point at the help of the command they were given to, which lists what it takes.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            prog = getattr(parsed, "command_prog", self.prog)
            raise errors.InputError(
                f"error: unrecognized arguments: {' '.join(extras)} (see `{prog} --help`)"
            )
        return parsed


def _add_values_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--values",
        dest="extra_files",
        action="append",
        type=Path,
        default=[],
        help="extra values file layered over base + env (repeatable)",
    )
    parser.add_argument(
        "--set",
        dest="set_values",
        action="append",
        default=[],
        help=SET_HELP,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tritonops", description="Render, gate and run the Triton chart.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    parser.add_argument("--version", action="version", version=_version())
    parser.set_defaults(handler=_missing_command(parser))
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)

    render = commands.add_parser("render", help="render the chart for an environment")
    render.add_argument(
        "--env",
        help=f"{_choices(environments.ENVIRONMENTS)} (env TRITONOPS_ENV, else dev; stderr says which was used)",
    )
    _add_values_options(render)
    render.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        help="write one file per object into this new or empty folder (or one an earlier -o wrote: "
        "only its own files are replaced), not a stream",
    )
    render.set_defaults(handler=_render)

    lint = commands.add_parser("lint", help="run every static gate on the environments")
    lint.add_argument(
        "--env",
        action="append",
        help="limit to this environment (repeatable; default: every one: "
        f"{_choices(environments.ENVIRONMENTS, 'and')})",
    )
    _add_values_options(lint)
    lint.add_argument("--no-policy", action="store_true", help="skip checkov (the slow gate)")
    lint.add_argument(
        "--json", action="store_true", help="print the report as JSON (errors too: {error, exit_code})"
    )
    lint.set_defaults(handler=_lint)

    summary = commands.add_parser("summary", help="summarise what an environment would deploy")
    summary.add_argument(
        "--env", action="append", help="an environment to summarise (repeatable; default: dev and prod)"
    )
    summary.add_argument("--json", action="store_true", help="print the facts as JSON (a list, one per env)")
    summary.set_defaults(handler=_summary)

    demo_help = (
        "render `local`, start it on the real Triton, load a model through the restricted API, run "
        "smoke inferences checked against onnxruntime, show /metrics moving; leaves it running"
    )
    demo = commands.add_parser("demo", help=demo_help)
    _add_port_offset(demo)
    _add_work_dir(demo)
    demo.set_defaults(handler=_demo)

    up = commands.add_parser("up", help="run the rendered pod's replicas locally on the real Triton")
    up.add_argument(
        "--env",
        default=os.environ.get("TRITONOPS_ENV", "local"),
        help="any environment: local (default), dev or prod; its rendered pod runs here on the CPU "
        "(prod's GPU requests are not applied) (env TRITONOPS_ENV)",
    )
    up.add_argument("--replicas", type=int, help="replica count (default: the rendered replicaCount)")
    up.add_argument("--repository", type=Path, help="model repository folder (default: a copy of the sample)")
    _add_port_offset(up)
    up.add_argument("--set", dest="set_values", action="append", default=[], help=SET_HELP)
    _add_work_dir(up)
    up.set_defaults(handler=_up)

    status = commands.add_parser(
        "status",
        help="each local replica's state and, per model, the committed version and what each replica "
        "serves; exit 0 all Ready and in sync, 1 a problem found (not Ready, drift, served versions "
        "unknown, an unreadable committed record), 3 not running, 2 nothing was started in the work "
        "folder (with only --repository: the committed record, exit 0)",
    )
    status.add_argument(
        "model", nargs="?", metavar="MODEL", help="only this model (default: every committed one)"
    )
    status.add_argument(
        "--json",
        action="store_true",
        help="print {replicas: one object per replica (state, reason, ports, pid, log), models: ...}",
    )
    _add_target_options(status, required_repository=False)
    _add_work_dir(status)
    status.set_defaults(handler=_status)

    logs = commands.add_parser("logs", help="the local replicas' server logs")
    logs.add_argument(
        "replica", nargs="?", type=int, metavar="REPLICA", help="only this replica (0, 1, ...; default: all)"
    )
    logs.add_argument("-n", "--lines", type=int, default=50, help="the last N lines of each log (default 50)")
    _add_work_dir(logs)
    logs.set_defaults(handler=_logs)

    down = commands.add_parser(
        "down",
        help="stop the local replicas gracefully; exit 0 stopped, 3 nothing was running, "
        "2 nothing was started in the work folder",
    )
    _add_work_dir(down)
    down.set_defaults(handler=_down)

    docs = commands.add_parser(
        "docs",
        help="regenerate or check every generated file: the chart README's values table, "
        "the Grafana dashboard JSON and the sample model repository",
    )
    mode = docs.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite every generated file")
    mode.add_argument("--check", action="store_true", help="exit 1 when any generated file is stale")
    docs.set_defaults(handler=_docs)
    _add_repo_commands(commands)
    _add_unlock_command(commands)
    _add_promotion_commands(commands)
    _add_tune_command(commands)
    _describe_commands(commands)
    return parser


def _choices(names: Sequence[str] | dict[str, Any], last: str = "or") -> str:
    """`a, b, c or d`."""
    *most, final = list(names)
    return f"{', '.join(most)} {last} {final}" if most else final


def _describe_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Each command's `--help` opens with the line the command list shows for it; its parsed
    arguments carry its name (`command_prog`), for errors that the top-level parser reports."""
    for listed in commands._choices_actions:
        command = commands.choices[listed.dest]
        if command.description is None and listed.help:
            command.description = listed.help[0].upper() + listed.help[1:] + "."
        command.set_defaults(command_prog=command.prog)
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                _describe_commands(action)


def _version() -> str:
    """`tritonops X (chart triton Y, Triton image Z)`; the chart part is left out if unreadable."""
    try:
        chart = yaml.safe_load((environments.CHART_DIR / "Chart.yaml").read_text(encoding="utf-8"))
        return (
            f"tritonops {tritonops.__version__} (chart {chart['name']} {chart['version']}, "
            f"Triton image {chart['appVersion']})"
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return f"tritonops {tritonops.__version__}"


def _missing_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The handler of a command group run without its subcommand: name the choices."""

    def missing(_: argparse.Namespace) -> int:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        *most, last = list(action.choices)
        group = parser.prog.removeprefix("tritonops").strip()
        raise errors.InputError(
            f"{group + ': ' if group else ''}choose a command: {', '.join(most)} or {last} "
            f"(see `{parser.prog} --help`)"
        )

    return missing


def _add_unlock_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    unlock = commands.add_parser(
        "unlock",
        help="remove a stale promotion lock (left by a promotion that died); exit 3 if the lock is live",
    )
    unlock.add_argument(
        "--repository",
        type=Path,
        help="the model repository (default: the one the local runtime in --work-dir serves)",
    )
    unlock.add_argument("--force", action="store_true", help="remove the lock even if its holder looks alive")
    _add_work_dir(unlock)
    unlock.set_defaults(handler=_unlock)


def _unlock(args: argparse.Namespace) -> int:
    repository = args.repository or _runtime_repository(args.work_dir)
    removed = lock.clear(repository, force=args.force)
    if removed is None:
        print(f"no promotion lock in {repository}")
    else:
        print(f"removed {removed.describe()}")
    return 0


def _runtime_repository(work_dir: Path) -> Path:
    """The model repository the local runtime in `work_dir` serves (from the plan `up` wrote)."""
    try:
        plan = workspace.Workspace(work_dir).read_plan()
    except errors.InputError as error:
        raise errors.InputError(f"{error}; or give --repository DIR") from None
    return Path(plan["repository"])


def _add_repo_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    repo = commands.add_parser("repo", help="model repository toolkit: validate, gen-config, checksum")
    repo.set_defaults(handler=_missing_command(repo))
    actions = repo.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)

    validate = actions.add_parser("validate", help="check a model repository the way Triton will")
    validate.add_argument("path", type=Path, help="the model repository's root")
    validate.add_argument("--model", help="check only this model")
    validate.add_argument("--env", help="flag what this environment cannot run (KIND_GPU without GPUs)")
    validate.add_argument("--json", action="store_true", help="print the findings as JSON")
    validate.set_defaults(handler=_repo_validate)

    gen = actions.add_parser("gen-config", help="write a config.pbtxt from an ONNX model")
    gen.add_argument("model_file", type=Path)
    gen.add_argument("--name", help="model name (default: the model folder's name)")
    gen.add_argument("--max-batch-size", type=int, help="default: 4 when the model can batch, else 0")
    gen.add_argument(
        "--dynamic-batching", action="store_true", help="add dynamic batching with a starting queue delay"
    )
    gen.add_argument("--instances", type=int, help="instance_group count")
    gen.add_argument("--kind", default="cpu", help="instance kind: cpu or gpu")
    gen.add_argument(
        "-o", "--output", help="where to write (default: config.pbtxt in the model folder; - for stdout)"
    )
    gen.add_argument(
        "--warmup",
        action="store_true",
        help="add a model_warmup sample (zeros, batch 1, one entry per graph input): a version reports "
        "ready only once warm, and a failed warmup fails its load",
    )
    gen.add_argument("--force", action="store_true", help="overwrite an existing config")
    gen.set_defaults(handler=_repo_gen_config)

    checksum = actions.add_parser("checksum", help="SHA-256 manifests per model version")
    checksum.add_argument("path", type=Path, help="a model repository or one model folder")
    mode = checksum.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write <model>/<version>.sha256 for every version")
    mode.add_argument(
        "--verify", action="store_true", help="exit 1 unless every version matches its manifest"
    )
    mode.add_argument("--agent-block", action="store_true", help="print Triton's checksum agent block (MD5)")
    checksum.set_defaults(handler=_repo_checksum)


def _add_port_offset(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port-offset",
        type=int,
        default=None,
        help="added to every rendered port (8000-8002); replica i adds 10*i more (env TRITONOPS_PORT_OFFSET)",
    )


def _port_offset(given: int | None) -> int:
    if given is not None:
        return given
    text = os.environ.get("TRITONOPS_PORT_OFFSET", "0")
    try:
        return int(text)
    except ValueError:
        raise errors.InputError(f"TRITONOPS_PORT_OFFSET={text!r}: not a whole number") from None


def _add_work_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(os.environ.get("TRITONOPS_WORK_DIR", workspace.DEFAULT_DIR)),
        help="the runtime's work folder (env TRITONOPS_WORK_DIR, default .tritonops)",
    )


# --- promotion: promote, rollback, reconcile ----------------------------------------------------


def _add_target_options(parser: argparse.ArgumentParser, *, required_repository: bool = False) -> None:
    """Where the repository and the replicas are: given, or the local runtime's."""
    parser.add_argument(
        "--repository",
        type=Path,
        default=os.environ.get("TRITONOPS_REPOSITORY") or None,
        help="the model repository (env TRITONOPS_REPOSITORY; default: the local runtime's)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--endpoints",
        default=os.environ.get("TRITONOPS_ENDPOINTS") or None,
        help="every replica: http://HOST:PORT[?grpc=PORT],... (env TRITONOPS_ENDPOINTS; default: the "
        "local runtime's replicas)",
    )
    _add_cluster_options(parser, where)
    parser.add_argument(
        "--api-header",
        default=os.environ.get("TRITONOPS_API_HEADER", replicas.DEFAULT_HEADER),
        help=f"the restricted-API header (env TRITONOPS_API_HEADER, default {replicas.DEFAULT_HEADER})",
    )
    parser.add_argument(
        "--api-key-file",
        type=Path,
        help=f"a file holding the restricted-API key (else ${replicas.KEY_ENV}; never a flag value)",
    )


def _exit_codes(done: str, failed: str, refused: str, *, degraded: bool = True) -> str:
    """The exit codes of promote, rollback or reconcile, for their `--help` epilog."""
    codes = [
        f"0 {done}",
        f"1 {failed}",
        f"2 unusable input, nothing changed ({refused})",
        "3 another promotion holds the repository's lock, or left a stale one (`tritonops unlock` "
        "clears a stale one)",
    ]
    if degraded:
        codes.append(
            f"{EXIT_DEGRADED} finished, but not every replica is confirmed on the committed state "
            "(named in the output; its agent or `tritonops reconcile` converges it)"
        )
    return "exit codes: " + "; ".join(codes) + "."


def _add_cluster_options(parser: argparse.ArgumentParser, where: argparse._MutuallyExclusiveGroup) -> None:
    """--service: the replicas are the ready pods of a Kubernetes Service (its EndpointSlices)."""
    where.add_argument(
        "--service",
        default=os.environ.get("TRITONOPS_SERVICE") or None,
        help="instead of --endpoints: every ready pod of this Kubernetes Service, from its EndpointSlices "
        "(needs --repository and RBAC list on endpointslices; env TRITONOPS_SERVICE)",
    )
    # Defaults stay None so that a flag given without --service can be told from none (the
    # environment variables are read only with --service).
    parser.add_argument(
        "--namespace",
        help="the Service's namespace (env TRITONOPS_NAMESPACE; default: the pod's own namespace "
        "in a cluster, else the kubeconfig context's, else default)",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="the kubeconfig for --service (default: in-cluster in a pod, else $KUBECONFIG or ~/.kube/config)",
    )
    parser.add_argument("--context", help="the kubeconfig context for --service (default: its current one)")
    parser.add_argument(
        "--wait-for-ready",
        type=_seconds,
        metavar="SECONDS",
        help="with --service: wait up to SECONDS for a ready pod, reading the EndpointSlices every few "
        "seconds and saying which pods are not ready (a promotion started with its Service: a first "
        f"install, an Argo CD sync); then exit 1, nothing changed (env {WAIT_ENV}; default 0: no wait)",
    )


def _seconds(text: str) -> float:
    """A number of seconds, 0 or more (argparse's `type` for --wait-for-ready)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 or more seconds")
    return value


def _check_cluster_options(args: argparse.Namespace) -> None:
    """The cluster options mean something only with --service: refuse them without it, rather than
    let a call that was meant for a cluster act on --endpoints or the local runtime."""
    if args.service:
        return
    given = [
        flag
        for flag, value in (
            ("--namespace", args.namespace),
            ("--kubeconfig", args.kubeconfig),
            ("--context", args.context),
            ("--wait-for-ready", args.wait_for_ready),
        )
        if value is not None
    ]
    if given:
        raise errors.InputError(
            f"{', '.join(given)}: only used with --service SERVICE (the replicas of a Kubernetes Service); "
            "give --service, or leave them out"
        )


def _wait_for_ready(args: argparse.Namespace) -> float:
    """--wait-for-ready, else TRITONOPS_WAIT_FOR_READY, else 0."""
    if args.wait_for_ready is not None:
        return float(args.wait_for_ready)
    text = os.environ.get(WAIT_ENV, "").strip()
    if not text:
        return 0.0
    try:
        return _seconds(text)
    except argparse.ArgumentTypeError as error:
        raise errors.InputError(f"{WAIT_ENV}={error}") from None


def _add_promotion_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    promote = commands.add_parser(
        "promote",
        help="promote a model version (or, with --config, a new config of the committed version) on "
        "every replica: materialize, verify, stage, load, check, [observe,] commit, narrow; any failure "
        "rolls every replica back (exit 1 naming the step)",
        epilog=_exit_codes(
            "committed, or a no-op that says so",
            "failed at a step, named with its cause, and every replica is back on the committed version "
            "(or, before anything changed, a replica did not answer or refused the key)",
            "an unknown model or version, a bad flag, a malformed current.json, a candidate or config "
            "refused at verify",
        ),
    )
    promote.add_argument("model", metavar="MODEL")
    promote.add_argument(
        "--version",
        dest="model_version",
        type=int,
        help="the version number (required without --config; with it, default and only choice: the "
        "committed version)",
    )
    promote.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="promote this config.pbtxt (e.g. `tritonops tune`'s winner) for the committed version: "
        "verified against the model, loaded as an override, checked, committed pinned; `tritonops "
        "rollback MODEL` returns the previous config (not with --from or --keep-previous). A config "
        "that accepts less than the committed one is refused: see --allow-smaller-batch",
    )
    promote.add_argument(
        "--allow-smaller-batch",
        action="store_true",
        help="with --config: promote a config that accepts less than the committed one, deliberately "
        "(once every client is ready): a lower max_batch_size, a switch between max_batch_size 0 and "
        "> 0, other input/output dims or reshape. Without it such a config is refused at verify "
        '(exit 2): clients sending what the committed config accepts would get HTTP 400 ("batch-size '
        'must be <= N")',
    )
    promote.add_argument(
        "--from",
        dest="source",
        help="a version folder, a model file, or models:/NAME/VERSION | models:/NAME@ALIAS (MLflow); "
        "default: the version folder already in the repository",
    )
    promote.add_argument("--golden", type=Path, help="an .npz with input:<name> and output:<name> arrays")
    promote.add_argument("--rtol", type=float, default=smoke.DEFAULT_RTOL, help="golden relative tolerance")
    promote.add_argument("--atol", type=float, default=smoke.DEFAULT_ATOL, help="golden absolute tolerance")
    promote.add_argument(
        "--gate", help="a PromQL success condition written with `bool` (1 healthy, 0 breach)"
    )
    promote.add_argument(
        "--gate-window", type=float, default=60.0, help="seconds to evaluate the gate (default 60)"
    )
    promote.add_argument(
        "--prometheus", help="the Prometheus that evaluates --gate (env TRITONOPS_PROMETHEUS)"
    )
    promote.add_argument(
        "--gate-inconclusive",
        choices=("fail", "pass"),
        default="fail",
        help="no data, a non-0/1 value or Prometheus down: fail (default, rolls back) or pass",
    )
    promote.add_argument("--canary", type=int, help="promote and gate the first K replicas, then the rest")
    promote.add_argument(
        "--keep-previous", action="store_true", help="keep the committed version loaded beside the new one"
    )
    _add_chain_options(promote)
    promote.set_defaults(handler=_promote)

    rollback = commands.add_parser(
        "rollback",
        help="return a model to its previous committed version (or --to VERSION) on every replica; after "
        "`promote --config`, to its previous config",
        epilog=_exit_codes(
            "rolled back, or a no-op that says so",
            "failed at a step, named with its cause, and every replica is back on the committed version "
            "(or, before anything changed, a replica did not answer or refused the key)",
            "an unknown model, a missing version folder, a bad flag, a malformed current.json, files "
            "changed since that version was committed",
        ),
    )
    rollback.add_argument("model", metavar="MODEL")
    rollback.add_argument("--to", type=int, help="the version to return to (default: the previous one)")
    _add_chain_options(rollback)
    rollback.set_defaults(handler=_rollback)

    reconcile = commands.add_parser(
        "reconcile",
        help="bring lagging or restarted replicas to the committed state now",
        epilog=_exit_codes(
            "every replica serves the committed state",
            "some replica could not be converged, named with its cause",
            "a model with nothing committed, a bad flag, a malformed current.json",
            degraded=False,
        ),
    )
    reconcile.add_argument("model", nargs="?", metavar="MODEL", help="only this model")
    _add_chain_options(reconcile)
    reconcile.set_defaults(handler=_reconcile)


def _add_chain_options(parser: argparse.ArgumentParser) -> None:
    _add_target_options(parser)
    parser.add_argument(
        "--load-timeout",
        type=float,
        default=fleet.DEFAULT_LOAD_DEADLINE_S,
        help=f"seconds each replica may take to load (default {fleet.DEFAULT_LOAD_DEADLINE_S:g})",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the outcome as JSON (steps, replicas, result)"
    )
    _add_work_dir(parser)
    parser.set_defaults(chain_started=False)  # set by _outcome: a SIGTERM before it changed nothing


class _Target:
    """The repository, the replicas and the key one command acts on."""

    def __init__(self, repository: Path, found: Sequence[replicas.Replica], key: replicas.ApiKey) -> None:
        self.repository = repository
        self.replicas = list(found)
        self.key = key


def _target(args: argparse.Namespace) -> _Target:
    """--repository with --endpoints or --service, or the local runtime's repository and replicas."""
    _check_cluster_options(args)
    key = replicas.api_key(args.api_header, args.api_key_file)
    if args.service:
        return _Target(_service_repository(args), _service_replicas(args), key)
    if args.endpoints:
        # Replicas elsewhere serve a repository this machine cannot guess (the local runtime's,
        # if there is one, is another one).
        if not args.repository:
            raise errors.InputError(
                "--endpoints needs --repository DIR: the model repository those replicas serve, "
                "mounted read-write here (env TRITONOPS_REPOSITORY)"
            )
        found = replicas.from_endpoints(args.endpoints)
        return _Target(_existing_repository(args.repository), found, key)
    current = control.running_status(
        args.work_dir, otherwise=f"give --endpoints {ENDPOINTS_FORM} or --service NAME, with --repository DIR"
    )
    found = _runtime_replicas(current)
    key = _or_runtime_key(key, current)
    repository = args.repository or current.repository
    if repository is None:
        raise errors.InputError("no model repository: give --repository DIR (or start the local runtime)")
    return _Target(_existing_repository(repository), found, key)


def _or_runtime_key(key: replicas.ApiKey, current: control.RuntimeStatus) -> replicas.ApiKey:
    """`key` when one was given, else the local runtime's own key file (what its replicas expect)."""
    if key.key is None and current.api_key_file:
        return replicas.ApiKey(current.api_header, current.api_key(), f"file {current.api_key_file}")
    return key


def _existing_repository(repository: Path) -> Path:
    if not Path(repository).is_dir():
        raise errors.InputError(f"--repository {repository}: no such folder")
    return Path(repository)


def _service_repository(args: argparse.Namespace) -> Path:
    if args.endpoints:  # one of the two came from the environment (the flags exclude each other)
        raise errors.InputError(
            "--service and --endpoints (or TRITONOPS_SERVICE and TRITONOPS_ENDPOINTS) both name the "
            "replicas: give one"
        )
    if args.repository is None:
        raise errors.InputError(
            "--service: give --repository DIR too (the model repository the Service's pods mount)"
        )
    return _existing_repository(args.repository)


def _service_replicas(args: argparse.Namespace) -> tuple[replicas.Replica, ...]:
    """The Service's ready pods; the ones not ready are named (their agents converge them later)."""
    from tritonops.cluster import endpoints  # the kubernetes client: loaded only when asked for

    connection = endpoints.Connection(args.kubeconfig, args.context)
    namespace = args.namespace or os.environ.get("TRITONOPS_NAMESPACE") or None
    found = endpoints.discover(args.service, namespace, connection, wait_s=_wait_for_ready(args))
    if found.not_ready or found.terminating:
        log.warning(
            "%s: pods left out (not ready: %s; terminating: %s); each pod's agent converges it to the "
            "committed state once ready (or run reconcile then)",
            found.where,
            ", ".join(found.not_ready) or "none",
            ", ".join(found.terminating) or "none",
        )
    return tuple(replicas.Replica(e.name, e.http_address, e.grpc_address) for e in found.ready)


def _runtime_replicas(current: control.RuntimeStatus) -> tuple[replicas.Replica, ...]:
    return tuple(
        replicas.Replica(f"replica-{r.index}", r.url.removeprefix("http://"), r.grpc_address)
        for r in current.replicas
    )


def _progress(args: argparse.Namespace) -> chain.Progress | None:
    """Each step as it starts, on stderr (stdout stays the result)."""
    if args.json:
        return None

    def show(step: str, message: str) -> None:
        if not message.startswith(("ok:", "failed:", "skipped:", "degraded:")):
            print(f"-> {step}: {message}", file=sys.stderr, flush=True)

    return show


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class _Terminated(BaseException):
    """SIGTERM outside a promotion chain: main() says so and exits 143 (128 + SIGTERM). A
    BaseException, like KeyboardInterrupt, so that no `except Exception` on the way swallows it."""


def _terminate_on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def _outcome(args: argparse.Namespace, run: Callable[[], chain.Outcome]) -> int:
    """Run a chain command; print its outcome (also when it failed) and pick the exit code."""
    # A CI job's timeout or `kill` sends SIGTERM: the chain then restores every replica as on
    # Ctrl-C, instead of leaving the candidate serving and the lock behind. This replaces main()'s
    # handler (exit 143, for the discovery and checks before the chain) while the chain runs.
    args.chain_started = True
    previous_handler = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        return _report(args, run)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


def _report(args: argparse.Namespace, run: Callable[[], chain.Outcome]) -> int:
    try:
        outcome = run()
    except (errors.PromotionFailed, errors.CandidateRejected) as error:
        # Both carry what the chain did up to the failure: its steps, the failed step, where a
        # refused candidate was quarantined.
        failed = error.outcome if isinstance(error.outcome, chain.Outcome) else None
        if args.json and failed is not None:
            message = _with_target_options(str(error), args)
            print(json.dumps({**failed.as_dict(), "error": message, "exit_code": error.exit_code}, indent=2))
            print(f"tritonops: {message}", file=sys.stderr)
            return error.exit_code
        if failed is not None:
            print(_with_target_options(failed.describe(result_line=False), args))
        raise
    if args.json:
        print(json.dumps(outcome.as_dict(), indent=2))
    else:
        print(_with_target_options(outcome.describe(), args))
    if any(step.status == chain.DEGRADED for step in outcome.steps):
        print(
            f"tritonops: {outcome.command} finished, but not every replica is confirmed on the committed "
            f"state (see the replicas above); its agent converges it, or run `{_follow_up(args, 'reconcile')}`",
            file=sys.stderr,
        )
        return EXIT_DEGRADED
    return 0


def _follow_up(args: argparse.Namespace, command: str) -> str:
    """`tritonops COMMAND` with the options this call was given that choose the same repository,
    replicas and key, so that a hint runs as printed (a value from its environment variable is
    left out: the next command reads it too)."""
    given = [
        ("--repository", args.repository, os.environ.get("TRITONOPS_REPOSITORY")),
        ("--endpoints", args.endpoints, os.environ.get("TRITONOPS_ENDPOINTS")),
        ("--api-header", args.api_header, os.environ.get("TRITONOPS_API_HEADER", replicas.DEFAULT_HEADER)),
        ("--api-key-file", args.api_key_file, None),
    ]
    options = "".join(
        f" {flag} {shlex.quote(str(value))}"
        for flag, value, from_env in given
        if value is not None and str(value) != (from_env or "")
    )
    # With --endpoints the local runtime is not read: its folder would only be noise.
    base = f"tritonops {command}" if args.endpoints else workspace.command_hint(command, args.work_dir)
    return base + options


# A follow-up the library names without the target options, as it cannot know how the CLI was
# called: `tritonops status`, `tritonops reconcile`, `tritonops promote M --version N --from SOURCE`.
_BARE_HINT = re.compile(
    r"`tritonops ((?:status|reconcile|promote|rollback)\b(?:(?!--work-dir|--repository|--endpoints)[^`])*)`"
)


def _with_target_options(text: str, args: argparse.Namespace) -> str:
    """`text` with each follow-up command it names given this call's --work-dir, --repository,
    --endpoints and key options (see _follow_up)."""
    if not hasattr(args, "api_header"):  # a command without target options
        return text
    return _BARE_HINT.sub(lambda found: f"`{_follow_up(args, found.group(1))}`", text)


def _promote(args: argparse.Namespace) -> int:
    target = _target(args)
    golden = smoke.load_golden(args.golden, rtol=args.rtol, atol=args.atol) if args.golden else None
    gate_spec = None
    prometheus = args.prometheus or os.environ.get("TRITONOPS_PROMETHEUS")
    if args.gate:
        if not prometheus:
            raise errors.InputError("--gate needs --prometheus URL (or TRITONOPS_PROMETHEUS)")
        gate_spec = chain.GateSpec(
            args.gate, prometheus, args.gate_window, inconclusive=args.gate_inconclusive
        )
    elif args.prometheus:
        raise errors.InputError("--prometheus is only used with --gate QUERY")
    return _outcome(
        args,
        lambda: chain.promote(
            repository=target.repository,
            replicas=target.replicas,
            model=args.model,
            version=args.model_version,
            source=args.source,
            config=args.config,
            allow_smaller_batch=args.allow_smaller_batch,
            key=target.key,
            golden=golden,
            gate_spec=gate_spec,
            canary=args.canary,
            keep_previous=args.keep_previous,
            load_deadline_s=args.load_timeout,
            progress=_progress(args),
        ),
    )


def _rollback(args: argparse.Namespace) -> int:
    target = _target(args)
    return _outcome(
        args,
        lambda: chain.rollback(
            repository=target.repository,
            replicas=target.replicas,
            model=args.model,
            to=args.to,
            key=target.key,
            load_deadline_s=args.load_timeout,
            progress=_progress(args),
        ),
    )


def _reconcile(args: argparse.Namespace) -> int:
    target = _target(args)
    return _outcome(
        args,
        lambda: chain.reconcile(
            repository=target.repository,
            replicas=target.replicas,
            model=args.model,
            key=target.key,
            load_deadline_s=args.load_timeout,
            progress=_progress(args),
        ),
    )


# --- tune ---------------------------------------------------------------------------------------

TUNE_EXIT_CODES = (
    "exit codes: 0 a variant met the budget (its config.pbtxt is written); 1 the run failed: the "
    "endpoint did not answer, perf_analyzer is missing, or the original config could not be loaded "
    "back (the message says how to load it by hand); 2 unusable input, nothing changed on the server "
    "(an unknown model, a bad flag, a refused key); 3 no variant met the budget, or none could be "
    "measured (the closest one is named, the measurements are written, the original config is back); 130 interrupted by Ctrl-C or "
    "SIGTERM (the original config is back)."
)


def _add_tune_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tune = commands.add_parser(
        "tune",
        help="find the serving config of a model with the most throughput within a p99 budget, by "
        "measuring variants on a running Triton (loads with a config override; the original is "
        "restored at the end, also on Ctrl-C); changes what that server answers while it runs",
        epilog=TUNE_EXIT_CODES,
    )
    tune.add_argument("model", metavar="MODEL")
    tune.add_argument(
        "--p99-budget", type=float, required=True, metavar="MS", help="the p99 latency budget in milliseconds"
    )
    tune.add_argument(
        "--endpoint",
        help="the one Triton to tune: http://HOST:PORT[?grpc=PORT], e.g. a port-forwarded pod taken out "
        "of its Service (default: replica 0 of the local runtime)",
    )
    tune.add_argument(
        "--repository",
        type=Path,
        default=os.environ.get("TRITONOPS_REPOSITORY") or None,
        help="the model repository, read for the model's ONNX graph and config.pbtxt (env "
        "TRITONOPS_REPOSITORY; default: the local runtime's; without it the served config decides)",
    )
    tune.add_argument(
        "--concurrency",
        default="16",
        metavar="N|A:B",
        help="requests in flight while measuring: N, or A:B for A, 2A, ... and B, where each variant "
        "counts at its best level within the budget (default 16)",
    )
    tune.add_argument(
        "--max-measurements", type=int, metavar="N", help="stop after N measurements (the baseline counts)"
    )
    tune.add_argument(
        "--search",
        choices=tuning_search.STRATEGIES,
        default=tuning_search.QUICK,
        help="quick (default): follow batch size, queue delay and instance count while they gain; "
        "exhaustive: every variant",
    )
    tune.add_argument("--out", type=Path, help="where to write the results (default: tune-MODEL)")
    tune.add_argument(
        "--resume",
        action="store_true",
        help="continue the run that stopped in --out (Ctrl-C, a lost connection, --max-measurements) "
        "from its checkpoint.json: what it measured is not measured again",
    )
    tune.add_argument(
        "--measurement-interval",
        type=int,
        default=tuning_measure.DEFAULT_INTERVAL_MS,
        metavar="MS",
        help=f"perf_analyzer's window (default {tuning_measure.DEFAULT_INTERVAL_MS}); it needs 3 stable ones",
    )
    tune.add_argument(
        "--max-trials",
        type=int,
        default=tuning_measure.DEFAULT_MAX_TRIALS,
        metavar="N",
        help=f"windows perf_analyzer may take to get stable (default {tuning_measure.DEFAULT_MAX_TRIALS})",
    )
    tune.add_argument(
        "--stability-percentage",
        type=int,
        default=tuning_measure.DEFAULT_STABILITY_PERCENTAGE,
        metavar="PCT",
        help="how far 3 windows' throughput and p99 may differ to count as stable (default "
        f"{tuning_measure.DEFAULT_STABILITY_PERCENTAGE}; more on a busy machine)",
    )
    tune.add_argument(
        "--max-instances",
        type=int,
        default=tuning_space.DEFAULT_MAX_INSTANCES,
        metavar="N",
        help=f"the most model instances tried: 1, 2, 4, ... N (default {tuning_space.DEFAULT_MAX_INSTANCES})",
    )
    tune.add_argument(
        "--instance-kinds",
        metavar="KIND[,KIND]",
        help="instance kinds tried, cpu and/or gpu (default: gpu and cpu where the server runs the "
        "model on GPUs, else cpu)",
    )
    tune.add_argument(
        "--api-header",
        default=os.environ.get("TRITONOPS_API_HEADER", replicas.DEFAULT_HEADER),
        help=f"the restricted-API header (env TRITONOPS_API_HEADER, default {replicas.DEFAULT_HEADER})",
    )
    tune.add_argument(
        "--api-key-file",
        type=Path,
        help=f"a file holding the restricted-API key (else ${replicas.KEY_ENV}, else the local runtime's; "
        "never a flag value)",
    )
    tune.add_argument(
        "--allow-smaller-batch",
        action="store_true",
        help="also try max_batch_size below the current one, when every client sends smaller batches "
        "(a request above the new maximum is refused; `promote --config` then needs the same flag)",
    )
    tune.add_argument(
        "--metrics",
        metavar="URL",
        help="the server's metrics page (http://HOST:8002/metrics), read for GPU memory where it has GPU "
        "metrics (default: the local runtime's; with --endpoint and without it, GPU memory is not checked)",
    )
    tune.add_argument(
        "--gpu-memory-budget",
        type=_fraction,
        default=tuning_measure.DEFAULT_GPU_MEMORY_BUDGET,
        metavar="FRACTION",
        help="the most used/total memory a variant may leave on the fullest GPU (default "
        f"{tuning_measure.DEFAULT_GPU_MEMORY_BUDGET}, the chart's TritonGPUMemoryCritical threshold)",
    )
    tune.add_argument("--json", action="store_true", help="print the result as JSON (what tune.json holds)")
    _add_work_dir(tune)
    tune.set_defaults(handler=_tune)


def _tune(args: argparse.Namespace) -> int:
    key = replicas.api_key(args.api_header, args.api_key_file)
    if args.endpoint:
        found = replicas.from_endpoints(args.endpoint)
        if len(found) != 1:
            raise errors.InputError(
                "--endpoint: give one Triton (tune changes what it answers while it runs)"
            )
        repository = _existing_repository(args.repository) if args.repository else None
        target = tuning_run.Target(
            found[0].http_address,
            found[0].grpc_address,
            key.header,
            key.key,
            repository,
            args.endpoint,
            _metrics_url(args.metrics),
        )
    else:
        target = tuning_run.local_target(args.work_dir, key.header, key.key, args.repository)
        if args.metrics:
            target = dataclasses.replace(target, metrics_url=_metrics_url(args.metrics))
    request = tuning_run.Request(
        model=args.model,
        budget_ms=args.p99_budget,
        concurrency=tuning_measure.concurrency_levels(args.concurrency),
        strategy=args.search,
        max_measurements=args.max_measurements,
        out_dir=args.out or Path(f"tune-{args.model}"),
        settings=tuning_measure.Settings(
            tuning_measure.concurrency_levels(args.concurrency),
            interval_ms=args.measurement_interval,
            stability_percentage=args.stability_percentage,
            max_trials=args.max_trials,
            gpu_memory_budget=args.gpu_memory_budget,
        ),
        max_instances=args.max_instances,
        kinds=_instance_kinds(args.instance_kinds),
        resume=args.resume,
        allow_smaller_batch=args.allow_smaller_batch,
        command=getattr(args, "command_line", ()),
    )
    outcome = tuning_run.tune(request, target, say=lambda line: print(line, file=sys.stderr, flush=True))
    print(
        json.dumps(outcome.as_dict(), indent=2) if args.json else _tune_follow_ups(outcome.describe(), args)
    )
    return 0


def _tune_follow_ups(text: str, args: argparse.Namespace) -> str:
    """tune's `tritonops promote|rollback ...` hints, runnable as printed: on the local runtime with
    its --work-dir, else with the repository and the replicas the deployment's promotion needs."""

    def runnable(found: re.Match[str]) -> str:
        command = found.group(1)
        if not args.endpoint:
            return f"`{workspace.command_hint(command, args.work_dir)}`"
        repository = shlex.quote(str(args.repository)) if args.repository else "<the model repository>"
        return f"`tritonops {command} --repository {repository} --endpoints <every replica>` (or --service)"

    return re.sub(r"`tritonops ((?:promote|rollback)\b[^`]*)`", runnable, text)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a fraction above 0 and at most 1 (e.g. 0.9)")
    return value


def _metrics_url(text: str | None) -> str | None:
    if not text:
        return None
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise errors.InputError(f"--metrics {text!r}: give the metrics page's URL, http://HOST:PORT/metrics")
    return text if parsed.path not in ("", "/") else f"{text.rstrip('/')}/metrics"


def _instance_kinds(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    kinds = [word.strip().lower() for word in text.split(",") if word.strip()]
    wrong = [kind for kind in kinds if kind not in ("cpu", "gpu")]
    if wrong or not kinds:
        raise errors.InputError(f"--instance-kinds {text!r}: use cpu, gpu or cpu,gpu")
    return tuple(f"KIND_{kind.upper()}" for kind in dict.fromkeys(kinds))


def _render(args: argparse.Namespace) -> int:
    env = _chosen_env(args.env, "render")
    result = render.render(env, extra_files=args.extra_files, set_values=args.set_values)
    if args.output_dir is None:
        sys.stdout.write(result.stream())
        return 0
    done = render.write_directory(result, args.output_dir)
    removed = (
        f"; removed {len(done.removed)} file(s) it wrote before, of objects that no longer render"
        if done.removed
        else ""
    )
    print(f"wrote {len(done.written)} objects for {env} to {args.output_dir}{removed}")
    return 0


def _chosen_env(given: str | None, command: str) -> str:
    """The environment given with --env; else TRITONOPS_ENV or dev, said on stderr (stdout stays YAML)."""
    if given is not None:
        return given
    from_env = os.environ.get("TRITONOPS_ENV")
    if from_env:
        print(
            f"tritonops {command}: environment {from_env} (from TRITONOPS_ENV; --env overrides it)",
            file=sys.stderr,
        )
        return from_env
    print(
        f"tritonops {command}: environment dev (the default; choose with --env dev|prod|local or TRITONOPS_ENV)",
        file=sys.stderr,
    )
    return "dev"


def _lint(args: argparse.Namespace) -> int:
    names = args.env or list(environments.ENVIRONMENTS)
    for name in names:
        environments.get(name)
    report = gates.run_gates(
        names, policy=not args.no_policy, extra_files=args.extra_files, set_values=args.set_values
    )
    print(_report_json(report) if args.json else _report_text(report))
    return 0 if report.passed else 1


def _report_text(report: gates.GateReport) -> str:
    lines = [f"gates on {', '.join(report.environments)}: {report.objects_checked} objects"]
    lines += [f"  {gate:<18} {seconds:6.2f}s" for gate, seconds in report.timings.items()]
    for skip, places in _group_skips(report.skips_applied):
        lines.append(
            f"  skipped {skip.check} on {len(places)} object(s) ({', '.join(places)}): {skip.reason}"
        )
    for skip in report.unused_skips:
        lines.append(
            f"  note: skip {skip.check} ({skip.resource}) matched nothing; remove it from ci/checkov-skips.yaml"
        )
    lines += [f"  note {note}" for note in report.notes]
    lines += [f"  FAIL {finding}" for finding in report.findings]
    lines.append("PASSED" if report.passed else f"FAILED: {len(report.findings)} finding(s)")
    return "\n".join(lines)


def _group_skips(applied: Sequence[tuple[gates.Skip, str]]) -> list[tuple[gates.Skip, list[str]]]:
    grouped: dict[gates.Skip, list[str]] = {}
    for skip, where in applied:
        grouped.setdefault(skip, []).append(where)
    return list(grouped.items())


def _report_json(report: gates.GateReport) -> str:
    return json.dumps(
        {
            "environments": report.environments,
            "passed": report.passed,
            "objects": report.objects_checked,
            "timings": report.timings,
            "findings": [vars(finding) for finding in report.findings],
            "notes": [vars(note) for note in report.notes],
            "skips": [
                {"check": s.check, "where": where, "reason": s.reason} for s, where in report.skips_applied
            ],
        },
        indent=2,
    )


def _summary(args: argparse.Namespace) -> int:
    items = [render.render(name) for name in args.env or ["dev", "prod"]]
    if args.json:
        print(json.dumps([summary.describe(item) for item in items], indent=2))
    else:
        print("\n\n".join(summary.summarize(item) for item in items))
    return 0


def _demo(args: argparse.Namespace) -> int:
    return demo.run(
        args.work_dir, say=lambda line: print(line, flush=True), port_offset=_port_offset(args.port_offset)
    )


def _up(args: argparse.Namespace) -> int:
    current = control.up(
        args.env,
        work_dir=args.work_dir,
        replicas=args.replicas,
        repository=args.repository,
        port_offset=_port_offset(args.port_offset),
        set_values=tuple(args.set_values),
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    failed = {replica.index for replica in current.failed}
    print(_status_text(current, log_lines=False))
    down = workspace.command_hint("down", args.work_dir)
    if failed:
        for replica in current.failed:
            print(f"\n{control.failure_text(replica, args.work_dir)}")
        print(f"stop what is left with `{down}`")
        return 1
    print(_endpoints_text(current))
    print(f"all replicas Ready; stop them with `{down}`")
    return 0


def _endpoints_text(current: control.RuntimeStatus) -> str:
    """Where each replica serves, and where the repository API's key is."""
    lines = [
        f"  replica {r.index}: HTTP {r.url}  gRPC {r.grpc_address}  metrics {r.metrics_url}"
        for r in current.replicas
    ]
    if current.api_key_file:
        lines.append(
            f"  repository API key: {current.api_key_file} (send it in the {current.api_header} header)"
        )
    return "\n".join(lines)


def _status(args: argparse.Namespace) -> int:
    _check_cluster_options(args)
    if args.endpoints or args.service:
        # Replicas outside the local runtime: only the models section.
        target = _target(args)
        found = model_status.status(target.repository, target.replicas, args.model, key=target.key)
        return _print_models(args, found)
    if args.repository and not workspace.Workspace(args.work_dir.resolve()).plan_file.is_file():
        # No local runtime here and no replicas given: the committed record alone.
        found = model_status.status(
            _existing_repository(args.repository),
            (),
            args.model,
            replicas_not_shown=f"replicas are not shown: give --endpoints {ENDPOINTS_FORM} (every replica "
            "that serves this repository) to compare what they serve",
        )
        return _print_models(args, found)
    current = control.status(args.work_dir)
    models = _runtime_models(current, args)
    if args.json:
        document = {"replicas": control.describe(current), "models": models.as_dict() if models else None}
        print(json.dumps(document, indent=2))
    else:
        print(_status_text(current))
        if models:
            print(models.describe())
    if models is not None and models.unknown:
        _key_hint(args, models)
    if not current.running:
        return STATUS_NOT_RUNNING
    fine = models is None or models.ok
    return STATUS_ALL_READY if current.all_ready and fine else STATUS_NOT_ALL_READY


def _print_models(args: argparse.Namespace, found: model_status.Status) -> int:
    """The models section alone (no local runtime): 0 when status found nothing wrong, else 1."""
    print(json.dumps({"models": found.as_dict()}, indent=2) if args.json else found.describe())
    if found.unknown:
        _key_hint(args, found)
    return STATUS_ALL_READY if found.ok else STATUS_NOT_ALL_READY


def _key_hint(args: argparse.Namespace, found: model_status.Status) -> None:
    """Under --json, stdout is the document: say on stderr too why the served versions are unknown."""
    if args.json:
        print(
            f"tritonops: served versions unknown on {', '.join(found.unknown)}: the repository API "
            f"refused the key; {model_status.KEY_HINT}",
            file=sys.stderr,
        )


def _runtime_models(current: control.RuntimeStatus, args: argparse.Namespace) -> model_status.Status | None:
    """The models section for the local runtime's repository and replicas (None before any `up`)."""
    repository = args.repository or current.repository
    if repository is None:
        return None
    key = replicas.api_key(current.api_header or args.api_header, args.api_key_file)
    key = _or_runtime_key(key, current)
    if current.running:
        return model_status.status(repository, _runtime_replicas(current), args.model, key=key)
    return model_status.status(
        repository,
        (),
        args.model,
        key=key,
        replicas_not_shown="the replicas are not running: what they serve is not shown (see each "
        "replica's line above)",
    )


def _status_text(current: control.RuntimeStatus, *, log_lines: bool = True) -> str:
    """One row per replica; with `log_lines`, the log line that says why a start ended."""
    lines = [f"runtime in {current.work_dir}: {'running' if current.running else 'stopped'}"]
    for r in current.replicas:
        lines.append(f"  replica {r.index}  {r.state:<10} {r.url}  restarts={r.restarts}  {r.reason}")
        if r.last_restart:
            lines.append(f"             last restart: {r.last_restart}")
        if log_lines and r.log_line:
            lines.append(f"             its log says: {r.log_line}")
        for c in r.sidecars:
            where = "  ".join(f"{name} {c.url(name)}" for name in c.ports)
            lines.append(f"    {c.name:<8} {c.state:<10} {where}  restarts={c.restarts}  {c.reason}")
    return "\n".join(lines)


def _logs(args: argparse.Namespace) -> int:
    print(control.logs(args.work_dir, args.replica, args.lines))
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = control.down(args.work_dir)
    if not stopped.started:
        raise errors.InputError(
            f"{stopped.work_dir}: nothing was started here, so nothing to stop; give the --work-dir "
            "that `tritonops up` used"
        )
    killed = f"killed {stopped.killed} leftover process group(s)" if stopped.killed else ""
    if stopped.was_running:
        print(
            f"stopped {stopped.replicas} replica(s) in {stopped.work_dir}" + (f"; {killed}" if killed else "")
        )
        return 0
    if killed:
        print(f"the runtime in {stopped.work_dir} had lost its supervisor: {killed}")
        return 0
    print(f"nothing was running in {stopped.work_dir} (it was already stopped)")
    return STATUS_NOT_RUNNING


def _docs(args: argparse.Namespace) -> int:
    """Every generated file: the chart README's values table, the dashboard, the sample repository."""
    readme = environments.CHART_DIR / "README.md"
    docs, undocumented = values_docs.parse()
    if undocumented:
        raise errors.InputError("charts/triton/values.yaml: undocumented keys: " + ", ".join(undocumented))
    updated = values_docs.update_readme(readme, docs)
    if args.write:
        readme.write_text(updated, encoding="utf-8")
        print(f"wrote the values table ({len(docs)} keys) to {readme}")
    elif updated != readme.read_text(encoding="utf-8"):
        print(f"{readme}: the values table is stale; run `tritonops docs --write`", file=sys.stderr)
        return 1 | _other_generated_files(check=True)
    else:
        print(f"{readme}: values table is current ({len(docs)} keys)")
    return _other_generated_files(check=args.check)


def _other_generated_files(*, check: bool) -> int:
    """The dashboard JSON and the sample repository, written or checked by their own generators."""
    dashboard_code = dashboard.main(["--check" if check else "--write"])
    repository_code = example_repository.main(["--check"] if check else [])
    return max(dashboard_code, repository_code)


def _repo_validate(args: argparse.Namespace) -> int:
    gpu_available, pod_user = None, validator.POD_USER
    if args.env:
        values = render.render(args.env).values
        gpu_available = bool(values["gpu"]["enabled"])
        context = values.get("securityContext") or {}
        pod_user = (int(context.get("runAsUser", pod_user[0])), int(context.get("runAsGroup", pod_user[1])))
    report = validator.validate(
        args.path,
        model=args.model,
        gpu_available=gpu_available,
        local_tier=args.env == "local",
        pod_user=pod_user,
    )
    if args.json:
        print(json.dumps([finding.as_dict() for finding in report.findings], indent=2))
    else:
        for finding in report.findings:
            print(finding)
        errors_found = len(report.errors)
        warnings = sum(1 for f in report.findings if f.severity.value == "warning")
        print(f"{len(report.models)} model(s): {errors_found} error(s), {warnings} warning(s)")
    return 0 if report.passed else 1


def _repo_gen_config(args: argparse.Namespace) -> int:
    options = config_generator.GenerateOptions(
        args.name, args.max_batch_size, args.dynamic_batching, args.instances, args.kind, args.warmup
    )
    if args.output == "-":
        sys.stdout.write(config_generator.generate(args.model_file, options))
        return 0
    written = config_generator.write_config(args.model_file, options, args.output, force=args.force)
    print(f"wrote {written.path}")
    if written.kept_version_policy:
        print(f"kept the replaced config's {written.kept_version_policy}")
    return 0


def _repo_checksum(args: argparse.Namespace) -> int:
    if args.agent_block:
        sys.stdout.write(checksums.agent_block(args.path))
        return 0
    checksums.require_versions(args.path)
    if args.write:
        for path in checksums.write_manifests(args.path):
            print(f"wrote {path}")
        return 0
    results = checksums.verify_manifests(args.path)
    for result in results:
        print(_describe_check(result))
    return 0 if all(result.ok for result in results) else 1


def _describe_check(result: checksums.VersionCheck) -> str:
    label = f"{result.model} version {result.version}"
    if result.no_manifest:
        return f"MISSING {label}: no manifest {result.manifest}; write it with --write"
    if result.ok:
        return f"ok      {label}"
    problems = [f"{name} changed" for name in result.mismatched]
    problems += [f"{name} missing" for name in result.missing]
    problems += [f"{name} not in the manifest" for name in result.unlisted]
    return f"FAILED  {label}: {'; '.join(problems)}"


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    wants_json = "--json" in arguments
    logs = _LogToStderr()
    args: argparse.Namespace | None = None
    # Run as a container's PID 1 (the promotion Job), the process gets SIGTERM only once it has a
    # handler: without one, a deleted or timed-out pod would sit out its whole grace period.
    previous_sigterm = _handle_sigterm(_terminate_on_sigterm)
    try:
        args = build_parser().parse_args(arguments)
        args.command_line = tuple(arguments)  # for hints that repeat the command (tune --resume)
        logs.start(verbose=args.verbose)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except errors.TritonOpsError as error:
        message = str(error) if args is None else _with_target_options(str(error), args)
        print(f"tritonops: {message}", file=sys.stderr)
        if wants_json:
            # Whoever asked for JSON reads stdout as JSON: the error is JSON there too.
            print(json.dumps({"error": message, "exit_code": error.exit_code}, indent=2))
        return error.exit_code
    except KeyboardInterrupt:
        print("tritonops: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print(f"tritonops: terminated (SIGTERM){_unchanged(args)}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours, and no traceback at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        logs.stop()
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


def _handle_sigterm(handler: Callable[[int, Any], None]) -> Any:
    """Install `handler` for SIGTERM; the handler it replaces, or None where none can be installed
    (signals go to the main thread only: main() run in another thread leaves them alone)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.signal(signal.SIGTERM, handler)
    return signal.SIG_DFL if previous is None else previous


def _unchanged(args: argparse.Namespace | None) -> str:
    """What a SIGTERM outside the chain means for a promote, rollback or reconcile: its chain had
    not started (after the chain, its handler is gone and the outcome is printed)."""
    if args is None or getattr(args, "chain_started", None) is not False:
        return ""
    return f" before the {args.command_prog.split()[-1]} started; nothing was changed"


class _LogToStderr:
    """The package's log lines on stderr, as bare messages, for one call of main(); afterwards the
    `tritonops` logger is as it was, so that main() run in-process (the tests, an orchestrator)
    leaves no handler behind on a stream that may be gone."""

    def __init__(self) -> None:
        self._handler: logging.Handler | None = None
        self._saved = (log.level, log.propagate)

    def start(self, *, verbose: bool) -> None:
        self._handler = logging.StreamHandler(sys.stderr)
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(self._handler)
        log.setLevel(logging.INFO if verbose else logging.WARNING)
        log.propagate = False

    def stop(self) -> None:
        if self._handler is not None:
            log.removeHandler(self._handler)
            log.level, log.propagate = self._saved


if __name__ == "__main__":
    sys.exit(main())
