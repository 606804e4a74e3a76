"""Start tritonserver with the committed models and the repository API key.

Runs in the Triton container, after the image's entrypoint:

    python3 launch.py [--committed-state FILE --repository DIR]
                      [--api-key-file F --api-header H [--api-protocols P1,P2,...]]
                      [--tmp-dir DIR] [--object-store-cache DIR] -- tritonserver ...

It adds `--load-model` for every committed model (after checking that each config pins its
committed version, so a restart never loads a staged or failed one) and the restricted-API flags
with the key read from the mounted Secret (never from values or the environment), then execs the
server so that Triton receives SIGTERM directly.

Before that it clears what an earlier run of the container left in the pod's emptyDir volumes,
which outlive container restarts: the object-store download folder, which Triton wants empty
(docs/user_guide/model_repository.md: "Make sure, that TRITON_AWS_MOUNT_DIRECTORY exists ... and
it is empty"), and the Python backend's environments, which it unpacks into `/tmp/python_env_*`
(python_backend src/pb_env.cc) and removes only on a clean shutdown. Both folders must be the
container's own (emptyDir volumes); the pod's local copy of the committed state (`--state-cache`,
under /tmp/tritonops) is never touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from typing import Callable

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
    parser.add_argument(
        "--tmp-dir",
        help="the container's own /tmp: stale python_env_* folders of the Python backend are removed",
    )
    parser.add_argument(
        "--object-store-cache",
        help="the folder Triton downloads an object-store repository into (TRITON_*_MOUNT_DIRECTORY): emptied",
    )
    options = parser.parse_args(argv[:split])
    if options.committed_state and not options.repository:
        parser.error("--committed-state needs --repository (the folder the committed models live in)")
    server = argv[split + 1 :]
    if not server:
        raise SystemExit("launch: no server command after '--'")
    return options, server


def _committed_model_args(options: argparse.Namespace, server: list[str]) -> list[str]:
    """`--load-model` for each committed model, once the repository holds what its effective record
    promises (see committed_state.effective_record: a commit interrupted after its config write
    counts as done, one interrupted before it as not begun): each committed version folder, a
    config pinning exactly the committed versions (Triton loads what the pin says, so the plain
    `--load-model` starts the committed ones) and, with
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
    # What was just checked: the effective records (a commit whose config write landed is in force).
    for name, record in sorted(committed_state.effective_records(options.repository, committed).items()):
        if not options.verify_digest:
            checked = "files not verified (--no-verify-digest)"
        elif record.digest is None:
            checked = "files not verified (no digest in the record)"
        else:
            checked = f"files match {record.digest}"
        kept = f" (retained beside it: {list(record.retained)})" if record.retained else ""
        _log(f"committed model {name} version {record.version}{kept}: {checked}")
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


# What the Python backend names the folders it unpacks EXECUTION_ENV_PATH archives into, in /tmp.
PYTHON_ENV_PREFIX = "python_env_"


def _clear_leftovers(options: argparse.Namespace) -> None:
    """Remove what an earlier run of this container left in the pod's emptyDir volumes."""
    keep = os.path.realpath(os.path.dirname(options.state_cache)) if options.state_cache else None
    if options.object_store_cache:
        folder = options.object_store_cache
        if _holds(folder, keep) or os.path.realpath(folder) == os.path.realpath(os.sep):
            raise SystemExit(
                f"launch: --object-store-cache={folder}: refusing to empty a folder that holds "
                f"{keep or 'the root'}; give the object-store download volume's own folder"
            )
        try:
            removed = _remove(folder, lambda name: True)
        except OSError as error:
            raise SystemExit(
                f"launch: refusing to start: {getattr(error, 'filename', None) or folder}: cannot empty "
                f"the object-store download folder ({error.strerror or error}); Triton needs it empty"
            ) from None
        if removed:
            _log(f"emptied the object-store download folder {folder} ({removed} entries left by an earlier run)")
    if options.tmp_dir:
        try:
            removed = _remove(options.tmp_dir, lambda name: name.startswith(PYTHON_ENV_PREFIX), keep=keep)
        except OSError as error:  # only space is at stake: Triton unpacks into new folders anyway
            _log(f"warning: {options.tmp_dir}: cannot remove stale Python-backend environments: {error}")
        else:
            if removed:
                _log(
                    f"removed {removed} stale Python-backend environment(s) {options.tmp_dir}/"
                    f"{PYTHON_ENV_PREFIX}* left by an earlier run"
                )


def _holds(folder: str, path: str | None) -> bool:
    """Whether `path` is `folder` or lies below it (by real path)."""
    if path is None:
        return False
    root = os.path.realpath(folder)
    return os.path.commonpath([root, path]) == root


def _remove(folder: str, wanted: Callable[[str], bool], keep: str | None = None) -> int:
    """Remove the entries of `folder` whose name is `wanted` (links themselves, never their targets),
    except one that holds `keep`; the number removed. A missing folder holds nothing."""
    try:
        with os.scandir(folder) as scan:
            entries = [entry for entry in scan if wanted(entry.name)]
    except FileNotFoundError:
        return 0
    removed = 0
    for entry in entries:
        if _holds(entry.path, keep):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
        removed += 1
    return removed


def _log(message: str) -> None:
    print(f"launch: {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> None:
    options, server = _parse(argv)
    _clear_leftovers(options)
    try:
        extra = _committed_model_args(options, server)
    except committed_state.CommittedStateError as error:
        raise SystemExit(f"launch: refusing to start: {error}")
    command = server + extra + _restricted_api_args(options)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
