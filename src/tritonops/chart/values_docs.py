"""Generate the chart README's values table from the `# --` comments in values.yaml (helm-docs style).

A key is documented by a `# -- text` comment block right above it (continuation lines are plain
`#` lines); `# @default -- text` replaces the shown default for computed values. A documented map
covers its children. Every other leaf must carry its own comment: `undocumented()` lists the ones
that do not, and the tests fail on any.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tritonops import errors
from tritonops.chart import environments

START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/\"]+):(?P<rest>.*)$")


@dataclass(frozen=True)
class ValueDoc:
    """One documented key of values.yaml."""

    path: str
    type: str
    default: str
    description: str


def parse(values_file: Path = environments.CHART_DIR / "values.yaml") -> tuple[list[ValueDoc], list[str]]:
    """The documented keys, and the dotted paths of leaves that carry no `# --` comment."""
    text = values_file.read_text(encoding="utf-8")
    defaults = yaml.safe_load(text) or {}
    documented: list[ValueDoc] = []
    undocumented: list[str] = []
    stack: list[tuple[int, str]] = []
    covered: list[str] = []
    description: list[str] | None = None
    default_override: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            description, default_override = [stripped[4:].strip()], None
            continue
        if stripped.startswith("# @default --"):
            default_override = stripped[len("# @default --") :].strip()
            continue
        if stripped.startswith("#"):
            if description is not None and stripped.startswith("# ") and not stripped.startswith("#  "):
                description.append(stripped[2:].strip())
            continue
        match = KEY_LINE.match(line)
        if not match or stripped.startswith("- "):
            continue
        indent = len(match.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([key for _, key in stack] + [match.group("key").strip('"')])
        stack.append((indent, match.group("key").strip('"')))
        value = _lookup(defaults, path)
        is_map = isinstance(value, dict) and bool(value)
        if description is not None:
            shown = default_override if default_override is not None else _format_default(value)
            documented.append(ValueDoc(path, _type_name(value), shown, " ".join(description)))
            if is_map:
                covered.append(path + ".")
        elif not is_map and not any(path.startswith(prefix) for prefix in covered):
            undocumented.append(path)
        description, default_override = None, None
    return documented, undocumented


def table(docs: list[ValueDoc]) -> str:
    rows = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for doc in docs:
        rows.append(f"| `{doc.path}` | {doc.type} | {_cell(doc.default)} | {_escape(doc.description)} |")
    return "\n".join(rows)


def update_readme(readme: Path, docs: list[ValueDoc]) -> str:
    """The README text with the values table between the markers replaced."""
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise errors.InputError(f"{readme}: add the markers {START} and {END} where the values table goes")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table(docs)}\n{END}{tail}"


def _lookup(values: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(values, dict):
            return None
        values = values.get(part)
    return values


def _type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}.get(
        type(value), "null"
    )


def _format_default(value: Any) -> str:
    return f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return _escape(text) if text.startswith("`") else _escape(text) or '`""`'


def _escape(text: str) -> str:
    return text.replace("|", "\\|")
