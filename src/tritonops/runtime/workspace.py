"""The runtime's work folder (default `.tritonops/`): the plan `up` wrote, the state the supervisor
keeps, logs, the mapped volumes and the model repository copy. Every command finds it here."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonops import errors

DEFAULT_DIR = ".tritonops"


def command_hint(command: str, work_dir: Path) -> str:
    """`tritonops COMMAND`, with `--work-dir DIR` unless DIR is the default folder here."""
    if Path(work_dir).resolve() == Path(DEFAULT_DIR).resolve():
        return f"tritonops {command}"
    return f"tritonops {command} --work-dir {shlex.quote(str(work_dir))}"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def plan_file(self) -> Path:
        return self.root / "plan.json"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def supervisor_log(self) -> Path:
        return self.root / "supervisor.log"

    @property
    def repository(self) -> Path:
        return self.root / "repository"

    def replica_log(self, index: int) -> Path:
        return self.root / "replicas" / str(index) / "triton.log"

    def write_json(self, path: Path, document: dict[str, Any]) -> None:
        """Whole or not at all: readers never see half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
        os.replace(temporary, path)

    def write_state(
        self, supervisor_pid: int, replicas: list[dict[str, Any]], *, running: bool = True
    ) -> None:
        self.write_json(
            self.state_file,
            {
                "supervisor_pid": supervisor_pid,
                "running": running,
                "updated": time.time(),
                "replicas": replicas,
            },
        )

    def read_state(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.state_file.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise errors.InputError(
                f"{self.state_file}: unreadable runtime state ({error}); run `{command_hint('down', self.root)}`"
            ) from None

    def read_plan(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.plan_file.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise errors.InputError(
                f"{self.root}: nothing was started here; run `{command_hint('up', self.root)}` first, "
                "or give the --work-dir it used"
            ) from None

    def supervisor_alive(self) -> int | None:
        """The supervisor's pid when it is running."""
        state = self.read_state()
        pid = (state or {}).get("supervisor_pid") if (state or {}).get("running") else None
        if pid is None:
            with contextlib.suppress(OSError, ValueError):
                pid = int(json.loads(self.plan_file.read_text())["supervisor_pid"])
        if pid and _alive(pid):
            return int(pid)
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text().split()
        if len(status) > 2 and status[2] == "Z":
            return False
    return True
