"""The committed state (`current.json`) checked exactly as the pod's launcher checks it.

There is one implementation: the chart's standard-library script
`charts/triton/files/committed_state.py`, which the launcher and the readiness check run inside the
Triton image. This module loads that file by path and turns its problems into findings, so that
`repo validate` reports as an error every repository the launcher refuses to start with (a
malformed record, a committed model or version folder that is missing, a config that does not pin
exactly the committed versions, a config that is not the committed one, files that do not hash to
the recorded digest), for each model's effective record (a commit cut short between its writes is
judged as the launcher judges it).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from tritonops.chart import environments
from tritonops.repository import configs
from tritonops.repository.findings import Finding, FindingSink, Severity
from tritonops.triton import client as triton_client

SCRIPT = environments.CHART_DIR / "files" / "committed_state.py"
DEFAULT_FILE = "current.json"


@functools.cache
def script() -> ModuleType:
    """The chart's committed_state.py, loaded once under a private module name."""
    spec = importlib.util.spec_from_file_location("tritonops_chart_committed_state", SCRIPT)
    if spec is None or spec.loader is None:  # pragma: no cover - the file ships with the project
        raise ImportError(f"{SCRIPT}: cannot load the chart's committed-state script")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(
    root: Path, *, model: str | None = None, file: str = DEFAULT_FILE, verify_digest: bool = True
) -> list[Finding]:
    """Findings for `<root>/<file>` against the repository; none when there is no record.

    With `model`, only that model's record is checked (a malformed record is always reported).
    """
    state = root / file
    cs = script()
    try:
        data = cs.read_bytes(str(state))
    except OSError as error:
        return [Finding(Severity.ERROR, f"cannot read: {error.strerror or error}", file=str(state))]
    if data is None:
        return []
    records, problems = cs.parse_problems(data, str(state))
    if model is not None:
        records = {name: record for name, record in records.items() if name == model}
        problems = [p for p in problems if p.model in (None, model)]
    problems += cs.layout_problems(str(root), records, str(state))
    if verify_digest:
        problems += cs.digest_problems(str(root), records, str(state))
    findings = [_finding(problem) for problem in problems]
    findings += _pin_disagreements(root, cs.effective_records(str(root), records))
    return findings


def _finding(problem: Any) -> Finding:
    severity = Severity.ERROR if problem.severity == script().ERROR else Severity.WARNING
    return Finding(
        severity,
        problem.message,
        model=problem.model,
        version=None if problem.version is None else str(problem.version),
        file=problem.file,
        line=problem.line,
        field=problem.field,
    )


def _pin_disagreements(root: Path, records: dict[str, Any]) -> list[Finding]:
    """The launcher reads the pin with a small standard-library parser; Triton with its protobuf.
    Where the two read a committed model's config differently, the pod would start on a version
    the launcher did not check: report it."""
    findings = []
    for name, record in sorted(records.items()):
        path = root / name / "config.pbtxt"
        if not path.is_file():
            continue  # reported by the launcher's own checks
        parsed = configs.read_config(path, FindingSink())
        if parsed is None:
            continue  # reported with the model
        launcher = script().pinned_versions(parsed.text)
        policy: triton_client.ModelConfig = parsed.config
        server = (
            sorted(set(policy.version_policy.specific.versions))
            if policy.version_policy.HasField("specific")
            else None
        )
        if launcher != server and (launcher or server):
            findings.append(
                Finding(
                    Severity.ERROR,
                    f"the launcher reads the pin as {launcher or 'nothing'} but Triton reads {server or 'nothing'}; "
                    f"write it as `version_policy {{ specific {{ versions: {script().expected_pin(record)} }} }}`",
                    model=name,
                    version=str(record.version),
                    file=str(path),
                    line=parsed.line_of_field("version_policy"),
                    field="version_policy",
                )
            )
    return findings
