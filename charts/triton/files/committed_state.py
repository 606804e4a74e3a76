"""Read the committed model state of a Triton model repository.

The promotion tool records what each model serves in `<repository>/current.json`:

    {"apiVersion": "tritonops/v1", "kind": "CommittedState",
     "models": {"resnet50": {"version": 3, "digest": "sha256:...", "committedAt": "2026-11-25T22:00:00Z"}}}

and pins the same version in the model's `config.pbtxt` with
`version_policy { specific { versions: [3] } }`. This module runs inside the Triton image
(standard library only) for the launcher and the readiness check.
"""

from __future__ import annotations

import json
import os
import re

API_VERSION = "tritonops/v1"
KIND = "CommittedState"


class CommittedStateError(Exception):
    """The committed state is unreadable or disagrees with the repository."""


def read(path: str) -> dict[str, int]:
    """Return {model: committed version}; an absent file means nothing is committed yet."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError) as error:
        raise CommittedStateError(f"{path}: cannot read the committed state: {error}") from error
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise CommittedStateError(f"{path}: not a committed-state record (kind must be {KIND!r})")
    if document.get("apiVersion") != API_VERSION:
        raise CommittedStateError(
            f"{path}: apiVersion {document.get('apiVersion')!r} is not {API_VERSION!r}"
        )
    models = document.get("models")
    if not isinstance(models, dict):
        raise CommittedStateError(f"{path}: 'models' must be a mapping of model name to record")
    committed = {}
    for name, record in models.items():
        version = record.get("version") if isinstance(record, dict) else None
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise CommittedStateError(f"{path}: models.{name}.version must be a positive integer")
        committed[name] = version
    return committed


def _block_after(text: str, keyword: str) -> str | None:
    """The text inside the braces that follow `keyword` (balanced), or None."""
    match = re.search(rf"\b{keyword}\s*:?\s*{{", text)
    if match is None:
        return None
    depth, start = 1, match.end()
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[start:index]
    return None


def _without_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def pinned_versions(config_text: str) -> list[int] | None:
    """Versions pinned by `version_policy { specific { versions: ... } }`, or None when not pinned."""
    policy = _block_after(_without_comments(config_text), "version_policy")
    specific = _block_after(policy, "specific") if policy is not None else None
    if specific is None:
        return None
    versions: list[int] = []
    for match in re.finditer(r"\bversions\s*:\s*(\[[^\]]*\]|-?\d+)", specific):
        versions.extend(int(number) for number in re.findall(r"-?\d+", match.group(1)))
    return sorted(set(versions))


def check_repository(repository: str, committed: dict[str, int]) -> None:
    """Fail unless every committed model is present and its config pins exactly that version."""
    for name, version in sorted(committed.items()):
        model_dir = os.path.join(repository, name)
        config_path = os.path.join(model_dir, "config.pbtxt")
        if not os.path.isdir(os.path.join(model_dir, str(version))):
            raise CommittedStateError(
                f"{model_dir}/{version}: committed version folder is missing; restore it or "
                "roll back with the promotion tool"
            )
        try:
            with open(config_path, encoding="utf-8") as handle:
                pinned = pinned_versions(handle.read())
        except OSError as error:
            raise CommittedStateError(f"{config_path}: cannot read: {error}") from error
        if pinned != [version]:
            raise CommittedStateError(
                f"{config_path}: version_policy pins {pinned or 'nothing'} but the committed "
                f"state says version {version}; a restart would load the wrong version. "
                "Re-run the promotion tool to repair the pin"
            )
