"""Before `up` starts anything: the repository holds every model the rendered pod loads at startup.

The pod loads the `--load-model` models of its rendered command line (`server.loadModels`, or a
flag in `server.extraArgs`) and, through the launcher, the committed models of the repository's
committed-state record (`current.json`). A static model missing from the repository makes Triton
exit with "failed to load all models", and a committed model the launcher cannot vouch for makes
the launcher refuse to start: either way the replica restarts three times and fails. Here the same
problems are named before anything starts, with the values layer that asks for each model and the
`--set` that drops it.
"""

from __future__ import annotations

from pathlib import Path

from tritonops import errors
from tritonops.chart import render
from tritonops.repository import committed_state
from tritonops.repository.findings import Severity

LOAD_MODEL = "--load-model="


def static_models(item: render.Rendering) -> list[str]:
    """The `--load-model` names of the rendered Triton container, in command-line order."""
    pod = item.one("Deployment")["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "triton")
    words = [str(word) for word in (*container.get("command", []), *container.get("args", []))]
    return [word.removeprefix(LOAD_MODEL) for word in words if word.startswith(LOAD_MODEL)]


def check(item: render.Rendering, repository: Path) -> None:
    """InputError (exit 2) naming each startup model the pod would fail on, and what to change."""
    if item.values["modelRepository"].get("objectStore", {}).get("enabled"):
        return  # the pod reads a bucket, not this folder
    problems = _missing_static_models(item, repository) + _committed_state_problems(item, repository)
    if problems:
        raise errors.InputError(
            f"the model repository {repository} cannot serve what the rendered pod loads at startup; "
            "nothing was started:\n" + "\n".join(f"  {problem}" for problem in problems)
        )


def _missing_static_models(item: render.Rendering, repository: Path) -> list[str]:
    listed = [str(name) for name in item.values["server"].get("loadModels") or []]
    missing = [name for name in static_models(item) if not (repository / name).is_dir()]
    problems = []
    from_list = [name for name in missing if name in listed]
    if from_list:
        kept = [name for name in listed if name not in from_list]
        problems.append(
            f"{_names(from_list)} {'is' if len(from_list) == 1 else 'are'} not in the repository (no folder "
            f"{', '.join(str(repository / name) for name in from_list)}), but server.loadModels is "
            f"[{', '.join(listed)}] in {item.source_of('server.loadModels')}. Add the model folder, or "
            f"drop it with --set 'server.loadModels={{{','.join(kept)}}}'"
        )
    for name in missing:
        if name not in listed:
            problems.append(
                f"{name} is not in the repository (no folder {repository / name}), but "
                f"server.extraArgs holds {LOAD_MODEL}{name} in {item.source_of('server.extraArgs')}. "
                "Add the model folder, or remove that flag from server.extraArgs"
            )
    return problems


def _committed_state_problems(item: render.Rendering, repository: Path) -> list[str]:
    """What the launcher would refuse to start with, checked by the launcher's own code."""
    settings = item.values["server"]["committedState"]
    if not settings.get("enabled"):
        return []
    findings = committed_state.check(
        repository,
        file=str(settings.get("file") or committed_state.DEFAULT_FILE),
        verify_digest=bool(settings.get("verifyDigest", True)),
    )
    return [
        f"{finding.location()}{f' [{finding.field}]' if finding.field else ''}: {finding.message}"
        for finding in findings
        if finding.severity is Severity.ERROR
    ]


def _names(names: list[str]) -> str:
    return ("model " if len(names) == 1 else "models ") + ", ".join(names)
