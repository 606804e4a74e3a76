"""The `tritonops` command: thin commands that parse, call one function, print, and pick the exit code.

Exit codes: 0 success, 1 findings (a gate failed), 2 unusable input (bad values, unknown flag).
`status` says how the local runtime is: 0 every replica Ready, 1 running but some replica not Ready
(Starting, NotReady, Restarting or Failed), 3 not running (stopped, or its supervisor died), 2 nothing
was started in that work folder. `down` uses the same codes for what it found: 0 it stopped the
runtime (or killed what its dead supervisor left), 3 nothing was running there, 2 nothing was ever
started there. With `--json`, an error is also printed on stdout as {"error": ..., "exit_code": N}.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

import tritonops
from tritonops import errors
from tritonops.chart import environments, gates, render, summary, values_docs
from tritonops.observability import dashboard
from tritonops.promotion import lock
from tritonops.repository import checksums, config_generator, example_repository, validator
from tritonops.runtime import control, demo, workspace

log = logging.getLogger("tritonops")

STATUS_ALL_READY, STATUS_NOT_ALL_READY, STATUS_NOT_RUNNING = 0, 1, 3
SET_HELP = "override a value: key=value, as Helm reads it (a={x,y} a list, a={} the empty list, a=null removes a); repeatable"


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are InputErrors: one clear line, exit 2, JSON too under --json."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise errors.InputError(f"error: {message} (see `{self.prog} --help`)")


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
        "--env", help="dev, prod or local (env TRITONOPS_ENV, else dev; stderr says which was used)"
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
        "--env", action="append", help="limit to this environment (repeatable; default: dev, prod and local)"
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
        help="each local replica's state; exit 0 all Ready, 1 some not Ready, 3 not running, "
        "2 nothing was started in the work folder",
    )
    status.add_argument(
        "--json", action="store_true", help="print one object per replica (state, reason, ports, pid, log)"
    )
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
    _describe_commands(commands)
    return parser


def _describe_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Each command's `--help` opens with the line the command list shows for it."""
    for listed in commands._choices_actions:
        command = commands.choices[listed.dest]
        if command.description is None and listed.help:
            command.description = listed.help[0].upper() + listed.help[1:] + "."
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
    current = control.status(args.work_dir)
    print(json.dumps(control.describe(current), indent=2) if args.json else _status_text(current))
    if not current.running:
        return STATUS_NOT_RUNNING
    return STATUS_ALL_READY if current.all_ready else STATUS_NOT_ALL_READY


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
    try:
        args = build_parser().parse_args(arguments)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except errors.TritonOpsError as error:
        print(f"tritonops: {error}", file=sys.stderr)
        if wants_json:
            # Whoever asked for JSON reads stdout as JSON: the error is JSON there too.
            print(json.dumps({"error": str(error), "exit_code": error.exit_code}, indent=2))
        return error.exit_code
    except KeyboardInterrupt:
        print("tritonops: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours, and no traceback at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
