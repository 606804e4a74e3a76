"""Start tritonserver with the committed models and the repository API key.

Runs in the Triton container, after the image's entrypoint:

    python3 launch.py [--committed-state FILE --repository DIR]
                      [--api-key-file F --api-header H [--api-protocols P1,P2,...]] -- tritonserver ...

It adds `--load-model` for every committed model (after checking that each config pins its
committed version, so a restart never loads a staged or failed one) and the restricted-API flags
with the key read from the mounted Secret (never from values or the environment), then execs the
server so that Triton receives SIGTERM directly.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import committed_state  # noqa: E402

# Triton's restricted API groups (src/restricted_features.h), less `health`: the probes use it.
RESTRICTABLE_PROTOCOLS = (
    "metadata",
    "inference",
    "shared-memory",
    "model-config",
    "model-repository",
    "statistics",
    "trace",
    "logging",
)
# Open, these let anyone who reaches the port load code, change logging, register memory or trace.
DEFAULT_PROTOCOLS = ("model-repository", "logging", "shared-memory", "trace")


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" not in argv:
        raise SystemExit("launch: expected '-- tritonserver ARGS...' after the launcher options")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="launch")
    parser.add_argument("--committed-state")
    parser.add_argument(
        "--state-cache", help="the pod-local copy of the last good record (readiness reads it)"
    )
    parser.add_argument("--verify-digest", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--repository")
    parser.add_argument("--api-key-file")
    parser.add_argument("--api-header")
    parser.add_argument(
        "--api-protocols",
        default=",".join(DEFAULT_PROTOCOLS),
        help="comma-separated Triton API groups that need the key (never 'health': probes use it)",
    )
    options = parser.parse_args(argv[:split])
    if options.committed_state and not options.repository:
        parser.error("--committed-state needs --repository (the folder the committed models live in)")
    server = argv[split + 1 :]
    if not server:
        raise SystemExit("launch: no server command after '--'")
    return options, server


def _committed_model_args(options: argparse.Namespace, server: list[str]) -> list[str]:
    """`--load-model` for each committed model, once the repository holds what the record promises:
    each committed version folder, a config pinning exactly that version and, with
    `--verify-digest` (the default), files that hash to the record's `digest`. Any disagreement
    raises CommittedStateError naming the file and what to do. The record just checked becomes
    the pod's local copy (`--state-cache`, on the pod's own /tmp), which the readiness check uses
    when the shared repository does not answer."""
    if not options.committed_state:
        return []
    path = options.committed_state
    try:
        data = committed_state.read_bytes(path)
    except OSError as error:
        message = f"cannot read the committed state: {error.strerror or error}"
        raise committed_state.CommittedStateError([committed_state.Problem("error", path, message)]) from None
    if data is None:
        _log(f"no committed state at {path}: starting with the static list only")
        _keep_copy(options, committed_state.EMPTY_RECORD)
        return []
    committed = committed_state.parse(data, path)
    started = time.monotonic()
    warnings = committed_state.check_repository(
        options.repository, committed, state_path=path, verify_digest=options.verify_digest
    )
    for problem in warnings:
        _log(f"warning: {problem}")
    already = {arg.split("=", 1)[1] for arg in server if arg.startswith("--load-model=")}
    for name, record in sorted(committed.items()):
        if not options.verify_digest:
            checked = "files not verified (--no-verify-digest)"
        elif record.digest is None:
            checked = "files not verified (no digest in the record)"
        else:
            checked = f"files match {record.digest}"
        _log(f"committed model {name} version {record.version}: {checked}")
    if options.verify_digest and committed:
        _log(f"checked the committed files in {time.monotonic() - started:.1f} s")
    _keep_copy(options, data)
    return [f"--load-model={name}" for name in sorted(committed) if name not in already]


def _keep_copy(options: argparse.Namespace, data: bytes | str) -> None:
    """Keep the record just checked as the pod's last good copy; without it readiness still works
    while the shared repository answers, so a failure here is a warning, not a refusal."""
    if not options.state_cache:
        return
    try:
        committed_state.write_copy(options.state_cache, data)
    except OSError as error:
        _log(f"warning: {options.state_cache}: cannot keep the local copy of the committed state: {error}")


def _restricted_api_args(options: argparse.Namespace) -> list[str]:
    if not options.api_key_file:
        return []
    try:
        with open(options.api_key_file, encoding="utf-8") as handle:
            key = handle.read().strip()
    except OSError as error:
        raise SystemExit(f"launch: {options.api_key_file}: cannot read the repository API key: {error}")
    if not key or not options.api_header:
        raise SystemExit(f"launch: {options.api_key_file}: empty key or missing --api-header")
    protocols = [name.strip() for name in options.api_protocols.split(",") if name.strip()]
    unknown = [name for name in protocols if name not in RESTRICTABLE_PROTOCOLS]
    if not protocols or unknown:
        raise SystemExit(
            f"launch: --api-protocols={options.api_protocols}: name one or more of "
            f"{', '.join(RESTRICTABLE_PROTOCOLS)} ('health' stays open for the probes)"
        )
    grant = f"{','.join(protocols)}:{options.api_header}={key}"
    return [f"--http-restricted-api={grant}", f"--grpc-restricted-protocol={grant}"]


def _log(message: str) -> None:
    print(f"launch: {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> None:
    options, server = _parse(argv)
    try:
        extra = _committed_model_args(options, server)
    except committed_state.CommittedStateError as error:
        raise SystemExit(f"launch: refusing to start: {error}")
    command = server + extra + _restricted_api_args(options)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
