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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import committed_state  # noqa: E402


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" not in argv:
        raise SystemExit("launch: expected '-- tritonserver ARGS...' after the launcher options")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="launch")
    parser.add_argument("--committed-state")
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
    if not options.committed_state:
        return []
    committed = committed_state.read(options.committed_state)
    if not committed:
        _log(f"no committed state at {options.committed_state}: starting with the static list only")
        return []
    committed_state.check_repository(options.repository, committed)
    already = {arg.split("=", 1)[1] for arg in server if arg.startswith("--load-model=")}
    for name, version in sorted(committed.items()):
        _log(f"committed model {name} version {version}")
    return [f"--load-model={name}" for name in sorted(committed) if name not in already]


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
