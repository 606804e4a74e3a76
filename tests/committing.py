"""Committing by hand, the way the promotion tool leaves a repository, for the agent's tests: a
version folder, config.pbtxt pinning it, and current.json's record with its digest, configDigest
and the config as protobuf JSON (what every load sends as its override); and a promotion lock,
live or stale, as the tool writes it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format

from tritonops.repository import checksums
from tritonops.triton import client as triton_client

POLICY = re.compile(r"version_policy\s*\{[^{}]*\{[^{}]*\}\s*\}")
LOCK = Path(".tritonops") / "promotion.lock"


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of it."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def add_version(repository: Path, model: str, version: int, *, like: int = 1, broken: bool = False) -> Path:
    """`<model>/<version>`, a copy of version `like` (or a model file that is not ONNX)."""
    folder = repository / model / str(version)
    if folder.exists():
        shutil.rmtree(folder)
    if broken:
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(b"not an onnx model")
    else:
        shutil.copytree(repository / model / str(like), folder)
    return folder


def pin(repository: Path, model: str, versions: list[int]) -> bytes:
    """Rewrite config.pbtxt's version_policy to pin `versions`; its new bytes."""
    path = repository / model / "config.pbtxt"
    policy = f"version_policy {{ specific {{ versions: [ {', '.join(map(str, versions))} ] }} }}"
    text = path.read_text(encoding="utf-8")
    text = POLICY.sub(policy, text) if POLICY.search(text) else text.rstrip("\n") + f"\n{policy}\n"
    write_atomically(path, text.encode())
    return path.read_bytes()


def config_json(config_bytes: bytes) -> dict[str, Any]:
    """config.pbtxt as the record holds it: ModelConfig JSON with proto field names."""
    message = text_format.Parse(config_bytes.decode(), triton_client.ModelConfig())
    return dict(json_format.MessageToDict(message, preserving_proto_field_name=True))


def commit(
    repository: Path, model: str, version: int, *, retained: tuple[int, ...] = (), with_config: bool = True
) -> dict[str, Any]:
    """Commit `version` of `model` (the folder must exist): the pin, then the record. Returns it."""
    config_bytes = pin(repository, model, sorted({version, *retained}))
    record: dict[str, Any] = {
        "version": version,
        "digest": checksums.version_digest(repository / model / str(version)),
        "configDigest": "sha256:" + hashlib.sha256(config_bytes).hexdigest(),
        "committedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "committedBy": "tests",
    }
    if retained:
        record["retained"] = sorted(retained)
    if with_config:
        record["config"] = config_json(config_bytes)
    path = repository / "current.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    state = {"apiVersion": "tritonops/v1", "kind": "CommittedState", "models": state.get("models", {})}
    state["models"][model] = record
    write_atomically(path, json.dumps(state, indent=2).encode())
    return record


def stamp(seconds_ago: float = 0.0) -> str:
    """A UTC stamp in the promotion tool's format (tritonops.promotion.state.TIMESTAMP_FORMAT)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds_ago))


def write_lock(
    repository: Path,
    *,
    heartbeat_age_s: float = 0.0,
    pid: int | None = None,
    host: str | None = None,
    model: str = "linear",
) -> Path:
    """The promotion lock as the tool writes it; by default held by this (live) process."""
    path = repository / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = {
        "pid": os.getpid() if pid is None else pid,
        "host": socket.gethostname() if host is None else host,
        "user": "tests",
        "command": "tritonops promote",
        "model": model,
        "startedAt": stamp(heartbeat_age_s + 5),
        "heartbeatAt": stamp(heartbeat_age_s),
    }
    write_atomically(path, json.dumps(owner).encode())
    return path


def remove_lock(repository: Path) -> None:
    (repository / LOCK).unlink(missing_ok=True)
