"""Layer the values and render the chart with Helm's own engine (helm-python-sdk).

Layering, lowest first: chart defaults <- values/base.yaml <- values/<env>.yaml <- `-f` files
<- `--set` overrides. Maps merge, lists replace and `null` removes a key, as in Helm. Each layer is
checked against the chart's schema on its own first, so an error names the file it came from.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import yaml

from tritonops import errors
from tritonops.chart import environments

log = logging.getLogger(__name__)

# Order in which objects are written, like Helm's install order.
KIND_ORDER = (
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Service",
    "Deployment",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "ServiceMonitor",
    "PrometheusRule",
    "Pod",
    # Appended, so that the ranks (and file names) of the kinds above stay as they were.
    "Role",
    "RoleBinding",
    "Job",
)


@dataclass(frozen=True)
class Layer:
    """One source of values: a file, or the `--set` overrides."""

    source: str
    values: dict[str, Any]


@dataclass(frozen=True)
class Manifest:
    """One rendered Kubernetes object."""

    template: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name", ""))

    @property
    def is_test_hook(self) -> bool:
        annotations = self.body.get("metadata", {}).get("annotations") or {}
        return "test" in str(annotations.get("helm.sh/hook", "")).split(",")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.body, sort_keys=False)


@dataclass(frozen=True)
class Rendering:
    """The chart rendered for one environment."""

    environment: environments.Environment
    layers: tuple[Layer, ...]
    values: dict[str, Any]
    manifests: tuple[Manifest, ...]
    notes: str = ""
    chart_dir: Path = field(default=environments.CHART_DIR)

    def of_kind(self, kind: str) -> list[Manifest]:
        return [manifest for manifest in self.manifests if manifest.kind == kind]

    def one(self, kind: str) -> dict[str, Any]:
        """The body of the only object of this kind; LookupError when there are none or several."""
        found = self.of_kind(kind)
        if len(found) != 1:
            raise LookupError(f"expected one {kind}, rendered {len(found)}")
        return found[0].body

    def stream(self) -> str:
        return "".join(f"---\n# Source: {m.template}\n{m.to_yaml()}" for m in self.manifests)

    def source_of(self, path: str) -> str:
        """Which layer gave the value at the dotted `path`: the last one that sets it (a list or a
        scalar replaces what lower layers set), e.g. "values/base.yaml" or "--set"; for a key no
        layer sets, the chart's own values.yaml. For a map, only the last layer that touched it."""
        for layer in reversed(self.layers):
            node: Any = layer.values
            for key in path.split("."):
                if not isinstance(node, dict) or key not in node:
                    break
                node = node[key]
            else:
                return layer.source
        return f"the chart defaults ({_display(self.chart_dir / 'values.yaml')})"


def render(
    env_name: str,
    *,
    extra_files: Sequence[Path] = (),
    set_values: Sequence[str] = (),
    chart_dir: Path = environments.CHART_DIR,
) -> Rendering:
    """Render the chart for an environment with optional extra values files and `--set` overrides."""
    environment = environments.get(env_name)
    layers = [load_values_file(path) for path in (*environment.values_files, *extra_files)]
    if set_values:
        layers.append(Layer("--set", parse_set_values(set_values)))
    chart = _load_chart(chart_dir)
    check_layers(layers, chart_dir)
    overrides = merge_layers(layer.values for layer in layers)
    sources = " <- ".join(["chart defaults", *(layer.source for layer in layers)])
    try:
        rendered = chart.render(overrides, name=environment.release, namespace=environment.namespace)
        values = chart.merge_values(overrides)
    except helm_python.HelmValuesError as error:
        raise errors.ValuesError(f"values ({sources}): {_schema_message(str(error))}") from None
    except helm_python.HelmRenderError as error:
        raise errors.RenderError(f"{_fail_message(str(error))} (values: {sources})") from None
    notes = next((text for path, text in rendered.items() if path.endswith("NOTES.txt")), "")
    return Rendering(environment, tuple(layers), values, _parse_manifests(rendered), notes, chart_dir)


def load_values_file(path: Path) -> Layer:
    """Read one values file; a missing file, bad YAML or a non-mapping is an InputError naming it."""
    source = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise errors.ValuesError(f"{source}: no such values file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise errors.ValuesError(f"{source}: cannot read: {error}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise errors.ValuesError(f"{source}{where}: invalid YAML: {problem}") from None
    if document is None:
        return Layer(source, {})
    if not isinstance(document, dict):
        raise errors.ValuesError(f"{source}: must be a mapping of values, found {type(document).__name__}")
    return Layer(source, document)


def parse_set_values(assignments: Sequence[str]) -> dict[str, Any]:
    """Parse `--set` assignments with Helm's own parser (its strvals), except that `key={}` is the
    empty list: `key={a,b}` is a list, `key=null` removes the key, as in Helm."""
    merged: dict[str, Any] = {}
    for assignment in assignments:
        if "=" not in assignment:
            raise errors.ValuesError(f"--set {assignment!r}: expected key=value")
        try:
            parsed = helm_python.parse_set_string(assignment)
            if "{}" in assignment:
                marked = helm_python.parse_set_string(assignment.replace("{}", "{" + _EMPTY_LIST_MARK + "}"))
                parsed = _empty_lists(parsed, marked)
        except helm_python.HelmError as error:
            raise errors.ValuesError(f"--set {assignment!r}: {error}") from None
        merged = merge_layers([merged, parsed])
    return merged


# Helm's strvals reads `key={}` as a list holding one empty string (helm/helm#5200, still open as
# #31061), which no list value of this chart accepts; `{}` is the empty list users mean. To tell
# `{}` from other ways of writing [""] (`key[0]=`), each `{}` is parsed a second time with this
# mark inside: a [""] that became [mark] was written `{}`.
_EMPTY_LIST_MARK = "tritonops-empty-list-mark"


def _empty_lists(parsed: Any, marked: Any) -> Any:
    """`parsed` with [] wherever `marked` (the same assignment with `{mark}` for `{}`) holds [mark]."""
    if isinstance(parsed, dict) and isinstance(marked, dict):
        return {key: _empty_lists(value, marked.get(key)) for key, value in parsed.items()}
    if isinstance(parsed, list) and isinstance(marked, list):
        if parsed == [""] and marked == [_EMPTY_LIST_MARK]:
            return []
        return [_empty_lists(item, other) for item, other in zip(parsed, marked, strict=False)]
    return parsed


def merge_layers(layers: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Merge values like Helm: maps merge, anything else replaces; later layers win."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _merge(merged, layer)
    return merged


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            # None is kept: Helm reads it as "remove this key from the chart defaults".
            result[key] = copy.deepcopy(value)
    return result


def check_layers(layers: Sequence[Layer], chart_dir: Path = environments.CHART_DIR) -> None:
    """Check each layer against the schema alone (without `required`), so errors name their file."""
    validator = _layer_validator(chart_dir)
    problems = []
    for layer in layers:
        for error in sorted(validator.iter_errors(_without_nulls(layer.values)), key=str):
            problems.append(f"{layer.source}: {_describe(error)}")
    if problems:
        raise errors.ValuesError("\n".join(problems))


@functools.cache
def _layer_validator(chart_dir: Path) -> jsonschema.protocols.Validator:
    schema = json.loads((chart_dir / "values.schema.json").read_text(encoding="utf-8"))
    partial = _strip_required(schema)
    validator_class = jsonschema.validators.validator_for(partial)
    return validator_class(partial)


@functools.cache
def _load_chart(chart_dir: Path) -> helm_python.Chart:
    helm_python.disable_logging()
    try:
        return helm_python.Chart.load(str(chart_dir))
    except helm_python.HelmError as error:
        raise errors.InputError(f"{_display(chart_dir)}: cannot load the chart: {error}") from None


def _strip_required(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _strip_required(value) for key, value in node.items() if key != "required"}
    if isinstance(node, list):
        return [_strip_required(item) for item in node]
    return node


def _without_nulls(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _without_nulls(value) for key, value in node.items() if value is not None}
    return node


def _describe(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        where = f"{path}." if error.absolute_path else ""
        return (
            f"{where}{', '.join(unknown)}: unknown key; "
            f"{'allowed here: ' + ', '.join(allowed) if allowed else 'this map takes no keys'}"
        )
    if error.validator == "type":
        return f"{path}: {error.instance!r} is not of type {error.validator_value}"
    if (
        error.validator == "contains"
        and isinstance(error.validator_value, dict)
        and "const" in error.validator_value
    ):
        return f"{path}: {error.instance!r} must include {error.validator_value['const']!r}"
    if error.validator == "enum":
        choices = ", ".join(repr(choice) for choice in schema.get("enum", []))
        return f"{path}: {error.instance!r} is not one of {choices}"
    return f"{path}: {error.message}"


def _schema_message(helm_message: str) -> str:
    """Turn Helm's "at '/a/b': ..." lines into "a.b: ..." lines."""
    lines = []
    for line in helm_message.splitlines():
        match = re.match(r"\s*- at '([^']*)': (.*)", line)
        if match:
            path = match.group(1).strip("/").replace("/", ".") or "(top level)"
            lines.append(f"{path}: {match.group(2)}")
    return "; ".join(lines) or helm_message.strip()


def _fail_message(helm_message: str) -> str:
    """The text of a template's `fail`, without Helm's "execution error at (...)" prefix."""
    match = re.search(r"execution error at \(([^)]*)\): (.*)", helm_message, re.DOTALL)
    return match.group(2).strip() if match else helm_message.strip()


# libyaml's loader when PyYAML was built with it: the same safe loading, about ten times faster on
# the rendered manifests (their large literal blocks: scripts, rules, the dashboard).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_manifests(rendered: dict[str, str]) -> tuple[Manifest, ...]:
    manifests = []
    for template, text in rendered.items():
        if not template.endswith((".yaml", ".yml")):
            continue
        for body in yaml.load_all(text, Loader=_YAML_LOADER):
            if body:
                manifests.append(Manifest(template, body))
    return tuple(sorted(manifests, key=_install_order))


def _install_order(manifest: Manifest) -> tuple[int, str, str]:
    rank = KIND_ORDER.index(manifest.kind) if manifest.kind in KIND_ORDER else len(KIND_ORDER)
    return (rank, manifest.kind, manifest.name)


def _display(path: Path) -> str:
    """A path as the user would type it: relative below the working directory, else absolute."""
    relative = os.path.relpath(path)
    return str(path.resolve()) if relative.startswith("..") else relative


# `render -o DIR` records what it wrote in this file (JSON), so that a later render replaces only its
# own files. No .json/.yaml suffix: `kubectl apply -f DIR` and Argo CD's directory sources read every
# such file in the folder as a manifest.
RENDER_MANIFEST = ".tritonops-render"
# Staging folders and the record's temporary file start with this; an interrupted render leaves
# nothing else behind, and the next render clears them.
_TEMPORARY_PREFIX = ".tritonops-render.tmp-"
_FOREIGN_SHOWN = 5


@dataclass(frozen=True)
class DirectoryWrite:
    """What `write_directory` did: the files it wrote and its own stale files it removed."""

    directory: Path
    written: tuple[Path, ...]
    removed: tuple[Path, ...]


def write_directory(rendering: Rendering, directory: Path) -> DirectoryWrite:
    """Write one file per object into `directory`, touching nothing tritonops did not write.

    `directory` must be new, empty, or hold only what an earlier `write_directory` wrote (listed
    in its `.tritonops-render` record, unchanged since). Anything else is refused with an InputError
    before a byte is written. The files are staged in a hidden folder inside `directory`, then each
    renamed into place (a reader sees a whole old file or a whole new one, never half of one), the
    record is updated, and this tool's own files that no longer render are removed. A new folder
    is created with the usual permissions (0777 less the umask).
    """
    shown = _display(directory)
    if directory.exists() and not directory.is_dir():
        raise errors.InputError(f"-o {shown}: exists and is not a directory; pick an empty or new folder")
    created = _make_directory(directory)
    try:
        own = _own_files(directory, shown)
        names = [_file_name(manifest) for manifest in rendering.manifests]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise errors.RenderError(
                f"the chart rendered two objects with one kind and name: {', '.join(twice)}"
            )
        staging = Path(tempfile.mkdtemp(prefix=_TEMPORARY_PREFIX, dir=directory))
        try:
            digests = {}
            for name, manifest in zip(names, rendering.manifests, strict=True):
                text = manifest.to_yaml()
                with (staging / name).open("x", encoding="utf-8") as handle:
                    handle.write(text)
                digests[name] = _text_digest(text)
            # Record the union first: whatever happens next, every file of ours in DIR is listed.
            _write_record(directory, rendering, {**own, **digests})
            for name in names:
                os.replace(staging / name, directory / name)
            stale = sorted(set(own) - set(digests))
            for name in stale:
                (directory / name).unlink(missing_ok=True)
            _write_record(directory, rendering, digests)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only what this call created, and only while still empty
        raise
    return DirectoryWrite(
        directory, tuple(directory / name for name in names), tuple(directory / name for name in stale)
    )


def _file_name(manifest: Manifest) -> str:
    """`<install rank>-<kind>-<name>.yaml`: sorts in install order, and stays the same name from one
    render to the next, so re-rendered folders diff cleanly."""
    rank, _, _ = _install_order(manifest)
    return f"{rank + 1:02d}-{manifest.kind.lower()}-{manifest.name}.yaml"


def _make_directory(directory: Path) -> list[Path]:
    """Create `directory` and missing parents (mode 0777 less the umask); the ones created, deepest first."""
    missing = []
    for folder in (directory, *directory.parents):
        if folder.exists():
            break
        missing.append(folder)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise errors.InputError(
            f"-o {_display(directory)}: cannot create the folder: {error.strerror or error}"
        ) from None
    return missing


def _own_files(directory: Path, shown: str) -> dict[str, str]:
    """{name: sha256} of the files an earlier render wrote here; InputError if anything else is here."""
    record, problem = _read_record(directory)
    try:
        entries = sorted(os.listdir(directory))
    except OSError as error:
        raise errors.InputError(f"-o {shown}: cannot list the folder: {error.strerror or error}") from None
    own, foreign, leftovers = {}, [], []
    for entry in entries:
        path = directory / entry
        if entry == RENDER_MANIFEST:
            continue
        if entry.startswith(_TEMPORARY_PREFIX) and not path.is_symlink():
            leftovers.append(path)  # left by an interrupted render (the prefix is ours alone)
            continue
        recorded = record.get(entry)
        if recorded is None or not path.is_file() or path.is_symlink():
            foreign.append(entry)
        elif _file_digest(path) != recorded:
            foreign.append(f"{entry} (changed since tritonops wrote it)")
        else:
            own[entry] = recorded
    if foreign:
        listed = ", ".join(foreign[:_FOREIGN_SHOWN])
        more = f" and {len(foreign) - _FOREIGN_SHOWN} more" if len(foreign) > _FOREIGN_SHOWN else ""
        raise errors.InputError(
            f"-o {shown}: holds files tritonops did not write ({listed}{more}){problem}; nothing was "
            "changed. Pick an empty or new folder (e.g. -o rendered/<env>): tritonops only replaces "
            "files it wrote there itself"
        )
    for path in leftovers:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return own


def _read_record(directory: Path) -> tuple[dict[str, str], str]:
    """The record of an earlier render: ({name: sha256}, "") or ({}, why it cannot be used)."""
    path = directory / RENDER_MANIFEST
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        files = document["files"]
        record = {str(name): str(digest) for name, digest in files.items()}
    except FileNotFoundError:
        return {}, ""
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, f"; its {RENDER_MANIFEST} is unreadable"
    # Only plain file names: the record can never point outside the folder or at a hidden file.
    return {
        name: digest
        for name, digest in record.items()
        if name == os.path.basename(name) and name.endswith(".yaml") and not name.startswith(".")
    }, ""


def _write_record(directory: Path, rendering: Rendering, digests: dict[str, str]) -> None:
    document = {
        "writer": "tritonops render -o",
        "environment": rendering.environment.name,
        "files": dict(sorted(digests.items())),
    }
    target = directory / RENDER_MANIFEST
    temporary = directory / f"{_TEMPORARY_PREFIX}record-{os.getpid()}"
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    os.replace(temporary, target)


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""
