"""The sample model repository (`examples/model-repository/`) the demo and the tests use, built
deterministically from code: `linear` (dynamic batching, committed as version 1) and `mlp`.

    python -m tritonops.repository.example_repository [--check] [OUTPUT]
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

from tritonops.chart import environments
from tritonops.repository import checksums
from tritonops.triton import onnx_models

DEFAULT_OUTPUT = environments.PROJECT_ROOT / "examples" / "model-repository"
COMMITTED_AT = "2026-11-25T00:00:00Z"

LINEAR_CONFIG = """\
# y = x @ W + b: four features in, two out; batched dynamically by Triton.
name: "linear"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "input" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "output" data_type: TYPE_FP32 dims: [ 2 ] } ]
dynamic_batching { max_queue_delay_microseconds: 100 }
instance_group [ { count: 1 kind: KIND_CPU } ]
# The committed version (current.json says the same); `tritonops promote` and `rollback` rewrite this pin.
version_policy { specific { versions: [ 1 ] } }
"""

MLP_CONFIG = """\
# A small MLP (8 -> 16 -> 3): a second model, loaded on demand through the repository API.
name: "mlp"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "input" data_type: TYPE_FP32 dims: [ 8 ] } ]
output [ { name: "output" data_type: TYPE_FP32 dims: [ 3 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""


def build(output: Path) -> None:
    """Write the whole sample repository into `output` (replacing it)."""
    if output.exists():
        shutil.rmtree(output)
    onnx_models.linear(output / "linear" / "1" / "model.onnx")
    (output / "linear" / "config.pbtxt").write_text(LINEAR_CONFIG, encoding="utf-8")
    onnx_models.mlp(output / "mlp" / "1" / "model.onnx")
    (output / "mlp" / "config.pbtxt").write_text(MLP_CONFIG, encoding="utf-8")
    checksums.write_manifests(output)
    committed = {
        "apiVersion": "tritonops/v1",
        "kind": "CommittedState",
        "models": {
            "linear": {
                "version": 1,
                "digest": checksums.version_digest(output / "linear" / "1"),
                "configDigest": "sha256:"
                + hashlib.sha256((output / "linear" / "config.pbtxt").read_bytes()).hexdigest(),
                "committedAt": COMMITTED_AT,
            }
        },
    }
    (output / "current.json").write_text(json.dumps(committed, indent=2) + "\n", encoding="utf-8")


def differences(expected: Path, actual: Path) -> list[str]:
    """Files that differ between two trees (names relative to the roots)."""
    comparison = filecmp.dircmp(expected, actual)
    found: list[str] = []

    def walk(node: filecmp.dircmp[str], prefix: str) -> None:
        found.extend(
            prefix + name for name in node.left_only + node.right_only + node.diff_files + node.funny_files
        )
        for name, child in node.subdirs.items():
            walk(child, f"{prefix}{name}/")

    walk(comparison, "")
    return sorted(found)


def _write(output: Path) -> int:
    """Replace `output` with a fresh build, unless it holds files the build does not make: those
    are someone's (a model added by hand), and a generator never deletes what it did not write."""
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / "model-repository"
        build(fresh)
        foreign = _only_in(output, fresh) if output.exists() else []
        if foreign:
            print(
                f"{output}: holds files the sample build does not make ({', '.join(foreign[:5])}); "
                "nothing was changed. Move them elsewhere, then run `tritonops docs --write` again",
                file=sys.stderr,
            )
            return 2
        if output.exists():
            shutil.rmtree(output)
        shutil.copytree(fresh, output)
    print(f"wrote the sample repository to {output}")
    return 0


def _only_in(tree: Path, other: Path) -> list[str]:
    """Paths under `tree` that `other` does not have (names relative to the roots)."""
    theirs = {path.relative_to(other) for path in other.rglob("*")}
    return sorted(
        str(path.relative_to(tree)) for path in tree.rglob("*") if path.relative_to(tree) not in theirs
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritonops.repository.example_repository")
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when the committed files differ from a fresh build"
    )
    args = parser.parse_args(argv)
    if not args.check:
        return _write(args.output)
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / "model-repository"
        build(fresh)
        stale = differences(fresh, args.output) if args.output.exists() else ["(missing)"]
    if stale:
        print(
            f"{args.output} is stale ({', '.join(stale)}); run `tritonops docs --write`",
            file=sys.stderr,
        )
        return 1
    print(f"{args.output} matches a fresh build")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
