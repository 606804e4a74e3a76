"""Read a replica's log the way a person would: find the line that says why it failed.

The supervisor appends every start of a replica to one log, after a START_MARKER line; Triton
writes its option table after a bad flag and, without a GPU, a few harmless errors.
"""

from __future__ import annotations

import re
from pathlib import Path

# What the supervisor writes before each start of a replica (the log keeps every start).
START_MARKER = "--- tritonops: start"
# Triton's log lines, `--log-format=default` and `ISO8601`; the group names the severity:
#   E1126 10:26:55.405697 26210 server.cc:241] "message"
#   2026-11-26T10:31:08Z E 4902 main.cc:257] "message"
_GLOG = re.compile(
    r"^(?:(?P<glog>[IWEF])\d{4} \d\d:\d\d:\d\d\.\d+|\d{4}-\d\d-\d\dT[\d:.]+Z (?P<iso>[IWEF]))\s+\d+ \S+\] "
)
# `error: creating server: ...`, `launch: error: ...`, and getopt's complaints before its usage table.
_ERROR = re.compile(
    r"(^|: )error: |: (unrecognized|invalid) option|: option .* (requires|doesn't allow) an argument",
    re.IGNORECASE,
)
# Error lines that never say why: every server started without a GPU logs the first three and
# carries on (see tritonops.triton.server's docstring); gRPC core logs the last two before Triton's own line
# (`main.cc] "failed to start GRPC service: ... already in use"`) when a port is taken.
_NOISE = (
    "Failed to initialize NVML",
    "DCGM unable to start",
    "CudaDriverHelper has not been initialized",
    "chttp2_server.cc:",
    "UNKNOWN:No address added",
)
# Where a Python backend's error message turns into its traceback (escaped in Triton's log line,
# or real lines in `error: creating server: ...`).
_TRACEBACK = re.compile(r"(\\n|\n)\s*(\\n|\n)At:")
LINE_MAX = 400


def first_error_line(log_path: Path) -> str | None:
    """The line of a replica's latest start that says why it failed: the first error Triton (or the
    launcher) logged, skipping the harmless no-GPU errors; else the last line before Triton's usage
    text or option table when it is not a routine Triton line. None when nothing says why."""
    try:
        text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    lines = text.split(START_MARKER)[-1].splitlines()[1:] if START_MARKER in text else text.splitlines()
    fallback = None
    for raw in lines:
        line = raw.strip()
        if line.startswith("Usage:"):
            break  # getopt's option list follows: the line before it said why
        if not line or line.startswith(("+", "|")):
            continue  # Triton's option table
        fallback = line
        glog = _GLOG.match(line)
        severe = (glog["glog"] or glog["iso"]) in "EF" if glog else bool(_ERROR.search(line))
        if severe and not any(noise in line for noise in _NOISE):
            return _short(line)
    # A launcher's exit message or a Python traceback's last line; never a routine Triton line.
    return _short(fallback) if fallback and not _GLOG.match(fallback) else None


def _short(line: str) -> str:
    """The message without a backend's traceback (`\\n\\nAt:\\n  model.py(12): ...`), at most
    LINE_MAX characters."""
    message = _TRACEBACK.split(line, maxsplit=1)[0].rstrip()
    if len(message) > LINE_MAX:
        return message[: LINE_MAX - 3] + "..."
    return message
