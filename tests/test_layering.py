"""The package's folders are its layers, and the imports keep them so.

Data flows one way: cli -> tuning (which may use runtime) -> runtime and promotion -> chart,
repository, observability, triton -> errors. Every module under src/tritonops is parsed (module-level and function-level imports alike,
so a late import cannot hide a dependency) and each `tritonops` import is checked against LAYERS.
Nothing imports the CLI, no two modules import each other through any path, only triton/client.py
imports tritonclient, and the backend files that tritonserver loads from disk import no tritonops.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "src" / "tritonops"

# layer -> the other layers its modules may import (a layer may always import itself). A layer is a
# subpackage, or one of the top-level modules: cli, errors and the package root (its __init__).
LAYERS: dict[str, frozenset[str]] = {
    "cli": frozenset(
        {
            "tritonops",
            "errors",
            "chart",
            "repository",
            "observability",
            "triton",
            "runtime",
            "promotion",
            "cluster",
            "tuning",
        }
    ),
    "tritonops": frozenset({"errors", "chart"}),  # the public surface re-exports render and the errors
    "promotion": frozenset({"errors", "chart", "repository", "observability", "triton", "cluster"}),
    # tune: the Triton client, configs and ONNX graphs, the local runtime (its endpoint and key), and
    # the promotion layer's lock (tune waits for a promotion) and wait for a load still running.
    "tuning": frozenset({"errors", "chart", "repository", "triton", "runtime", "promotion"}),
    "runtime": frozenset({"errors", "chart", "repository", "observability", "triton"}),
    "cluster": frozenset({"errors", "chart", "triton"}),
    "observability": frozenset({"errors", "chart", "triton"}),
    "repository": frozenset({"errors", "chart", "triton"}),
    "chart": frozenset({"errors"}),
    "triton": frozenset({"errors"}),
    "errors": frozenset(),
}
# The one module that imports tritonclient (and translates its exceptions at one choke point).
TRITONCLIENT_MODULE = "tritonops.triton.client"
# Loaded by tritonserver from disk, beside the wheel's triton_python_backend_utils: no tritonops.
BACKENDS = Path("triton", "backends")


@dataclass(frozen=True)
class Import:
    """One import: the module that makes it (dotted), its file and line, and the module it loads."""

    source: str
    where: str
    target: str


def module_name(package: Path, path: Path) -> str:
    """`tritonops.chart.render` for <package>/chart/render.py; a package by its __init__.py."""
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """A dotted tritonops module's layer: its subpackage, or the top-level module (`tritonops` for
    the package root)."""
    parts = module.split(".")
    return "tritonops" if len(parts) == 1 else parts[1]


def imports(package: Path, path: Path, modules: set[str]) -> Iterator[Import]:
    """Every import in `path`, at any depth, as the module it loads (`from a import b` loads a.b
    when a.b is a module of the package, else a)."""
    source = module_name(package, path)
    anchor = source.split(".") if path.name == "__init__.py" else source.split(".")[:-1]
    where = str(path.relative_to(package.parents[1]))
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(source, f"{where}:{node.lineno}", alias.name)
        elif isinstance(node, ast.Call) and _imported_by_name(node):
            yield Import(source, f"{where}:{node.lineno}", _imported_by_name(node))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = ".".join(anchor[: len(anchor) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield Import(source, f"{where}:{node.lineno}", candidate if candidate in modules else base)


def _imported_by_name(call: ast.Call) -> str:
    """The module an `importlib.import_module("...")` or `__import__("...")` call with a constant
    name loads, else ''."""
    function = call.func
    name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
    if name not in ("import_module", "__import__") or not call.args:
        return ""
    first = call.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else ""


def all_imports(package: Path) -> list[Import]:
    paths = sorted(package.rglob("*.py"))
    modules = {module_name(package, path) for path in paths}
    return [found for path in paths for found in imports(package, path, modules)]


def layer_violations(package: Path) -> list[str]:
    """One line per tritonops import that the importing module's layer may not make."""
    wrong = []
    for found in all_imports(package):
        if found.target.split(".")[0] != "tritonops":
            continue
        source, target = layer_of(found.source), layer_of(found.target)
        if source not in LAYERS:
            wrong.append(f"{found.where} ({found.source}): in no layer; move it into a subpackage")
        elif target != source and target not in LAYERS[source]:
            allowed = ", ".join(sorted(LAYERS[source])) or "nothing else from tritonops"
            why = "nothing imports the CLI" if target == "cli" else f"{target} is not below {source}"
            wrong.append(
                f"{found.where} ({found.source}) imports {found.target}: layer {source} may import "
                f"only {allowed} ({why}; the table is LAYERS in tests/test_layering.py)"
            )
    return wrong


def test_every_module_belongs_to_a_layer():
    strays = [
        f"{path.relative_to(ROOT)}: in no layer; move it into a subpackage or give its layer a row in LAYERS"
        for path in sorted(PACKAGE.rglob("*.py"))
        if layer_of(module_name(PACKAGE, path)) not in LAYERS
    ]
    assert not strays, "\n".join(strays)


def test_the_cli_may_import_every_other_layer():
    """The CLI is the top: a new layer (promotion, cluster) must be reachable from it."""
    assert LAYERS["cli"] == frozenset(LAYERS) - {"cli"}


def test_the_layer_table_flows_one_way():
    """No layer reaches itself through the layers it may import."""

    def reaches(start: str, goal: str, seen: frozenset[str]) -> bool:
        return any(
            below == goal or (below not in seen and reaches(below, goal, seen | {below}))
            for below in LAYERS[start]
        )

    assert [layer for layer in LAYERS if reaches(layer, layer, frozenset())] == []


def test_each_layer_imports_only_the_layers_below_it():
    wrong = layer_violations(PACKAGE)
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_itself_through_others():
    """Within a layer too: no import cycle between modules (function-level imports count)."""
    found = all_imports(PACKAGE)
    graph: dict[str, set[str]] = {}
    for item in found:
        graph.setdefault(item.source, set())
        if item.target.split(".")[0] == "tritonops" and item.target != item.source:
            graph[item.source].add(item.target)

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            module, path = stack.pop()
            for target in sorted(graph.get(module, ())):
                if target == start:
                    return [*path, start]
                if target not in seen:
                    seen.add(target)
                    stack.append((target, [*path, target]))
        return None

    cycles = [" -> ".join(cycle) for module in sorted(graph) if (cycle := cycle_from(module))]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_only_the_client_imports_tritonclient():
    wrong = [
        f"{found.where} ({found.source}) imports {found.target}: only {TRITONCLIENT_MODULE} may import "
        "tritonclient (it translates tritonclient's exceptions into ours at one choke point)"
        for found in all_imports(PACKAGE)
        if found.target.split(".")[0] == "tritonclient" and found.source != TRITONCLIENT_MODULE
    ]
    assert not wrong, "\n".join(wrong)


def test_backend_files_import_nothing_from_tritonops():
    paths = sorted((PACKAGE / BACKENDS).rglob("*.py"))
    assert paths, f"no backend files under {PACKAGE / BACKENDS}"
    modules = {module_name(PACKAGE, path) for path in PACKAGE.rglob("*.py")}
    wrong = [
        f"{found.where} imports {found.target}: tritonserver loads the backend files from disk; they "
        "may import the standard library, numpy, onnxruntime and triton_python_backend_utils only"
        for path in paths
        for found in imports(PACKAGE, path, modules)
        if found.target.split(".")[0] == "tritonops"
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("source", "text", "words"),
    [
        (
            "chart/bad.py",
            "from tritonops.runtime import control\n",
            "(tritonops.chart.bad) imports tritonops.runtime.control: layer chart may import only errors",
        ),
        (
            "triton/bad.py",
            "def late():\n    from tritonops import cli\n",
            "imports tritonops.cli: layer triton may import only errors (nothing imports the CLI",
        ),
        (
            "repository/bad.py",
            "from ..observability import rule_file\n",
            "imports tritonops.observability.rule_file: layer repository may import only chart, errors, "
            "triton (observability is not below repository",
        ),
        ("stray.py", "from tritonops import errors\n", "(tritonops.stray): in no layer"),
        (
            "chart/bad.py",
            "import importlib\nimportlib.import_module('tritonops.runtime.control')\n",
            "imports tritonops.runtime.control: layer chart may import only errors",
        ),
        (
            "triton/bad.py",
            "def late():\n    return __import__('tritonops.cli')\n",
            "imports tritonops.cli: layer triton may import only errors (nothing imports the CLI",
        ),
    ],
    ids=["module-level", "function-level", "relative", "top-level-module", "import_module", "__import__"],
)
def test_a_wrong_import_is_named_with_its_module_and_rule(tmp_path, source, text, words):
    """The layer check fails on each kind of import, naming the file, the import and the rule."""
    package = tmp_path / "src" / "tritonops"
    for path in PACKAGE.rglob("*.py"):
        copy = package / path.relative_to(PACKAGE)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(path.read_bytes())
    assert layer_violations(package) == []
    (package / source).write_text(text, encoding="utf-8")
    wrong = layer_violations(package)
    assert len(wrong) == 1 and wrong[0].startswith(f"src/tritonops/{source}:"), wrong
    assert words in wrong[0]
