"""Run the promotion tool's commit and SIGKILL this process right after its Nth durable write
(the rename of current.json or config.pbtxt), as a crash or `kill -9` would cut it short.

    python -m tests.promotion.crash_commit REPOSITORY MODEL VERSION KILL_AFTER

Only this test helper wraps os.replace; the production code is unchanged. KILL_AFTER 0 never kills.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from tritonops.promotion import state
from tritonops.repository import checksums

WATCHED = ("current.json", "config.pbtxt")


def _kill_after(count: int) -> None:
    real_replace = os.replace
    done = 0

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str], **kwargs: object) -> None:
        nonlocal done
        real_replace(source, target, **kwargs)  # type: ignore[arg-type]
        if Path(target).name in WATCHED:
            done += 1
            if done == count:
                os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace  # type: ignore[assignment]


def main(repository: Path, model: str, version: int, kill_after: int) -> None:
    if kill_after:
        _kill_after(kill_after)
    config = (repository / model / "config.pbtxt").read_text(encoding="utf-8")
    record = state.Record(
        model,
        version,
        digest=checksums.version_digest(repository / model / str(version)),
        source=f"test:{version}",
    )
    state.commit(repository, model, record, state.config_with_pin(config, [version]))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
