"""The static gates every environment must pass before anything is deployed.

helm lint (strict), the values schema, every rendered object against the Kubernetes OpenAPI
schema of a pinned version in strict mode, custom-resource checks, the Argo CD Applications,
settings that are unsafe whatever the schema allows (an open model-repository API), and checkov's
Kubernetes policies with zero failed checks (skips listed, each with a reason, in
ci/checkov-skips.yaml). Notes say what deserves a look but fails nothing (a prod image without a
digest).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import yaml

from tritonops import errors
from tritonops.chart import custom_resources, environments, render

log = logging.getLogger(__name__)

# The Kubernetes version rendered objects are validated against (the oldest the platform runs).
KUBERNETES_VERSION = "1.31.0"
CHECKOV_SKIPS_FILE = environments.PROJECT_ROOT / "ci" / "checkov-skips.yaml"


@dataclass(frozen=True)
class Finding:
    """One problem a gate found."""

    gate: str
    scope: str
    subject: str
    message: str

    def __str__(self) -> str:
        return f"[{self.gate}] {self.scope}: {self.subject}: {self.message}"


@dataclass(frozen=True)
class Skip:
    """A checkov check the chart deliberately does not pass, and why."""

    check: str
    reason: str
    resource: str = "*"

    def matches(self, check_id: str, resource: str) -> bool:
        return check_id == self.check and fnmatch.fnmatchcase(resource, self.resource)


@dataclass(frozen=True)
class GateReport:
    """What the gates found, what checkov skips were applied, and how long each gate took."""

    environments: tuple[str, ...]
    findings: tuple[Finding, ...]
    skips_applied: tuple[tuple[Skip, str], ...] = ()
    unused_skips: tuple[Skip, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    objects_checked: int = 0
    # What deserves a look but fails nothing.
    notes: tuple[Finding, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.findings


def run_gates(
    env_names: Sequence[str],
    *,
    policy: bool = True,
    extra_files: Sequence[Path] = (),
    set_values: Sequence[str] = (),
) -> GateReport:
    """Render each environment and run every gate; bad values raise InputError before any gate."""
    timings: dict[str, float] = {}
    with _timed(timings, "render"):
        renderings = [
            render.render(name, extra_files=extra_files, set_values=set_values) for name in env_names
        ]
    findings: list[Finding] = []
    per_rendering = (
        ("helm-lint", helm_lint),
        ("values-schema", values_schema),
        ("kubernetes-schema", kubernetes_schema),
        ("custom-resources", custom_resource_checks),
    )
    for name, gate in per_rendering:
        with _timed(timings, name):
            for item in renderings:
                findings += gate(item)
    with _timed(timings, "argocd"):
        findings += argocd_applications()
    notes: list[Finding] = []
    with _timed(timings, "settings"):
        for item in renderings:
            found, noted = settings(item)
            findings += found
            notes += noted
    applied: list[tuple[Skip, str]] = []
    unused: list[Skip] = []
    if policy:
        with _timed(timings, "checkov"):
            policy_findings, applied, unused = checkov(renderings)
            findings += policy_findings
    objects = sum(len(item.manifests) for item in renderings)
    return GateReport(
        tuple(env_names), tuple(findings), tuple(applied), tuple(unused), timings, objects, tuple(notes)
    )


def settings(item: render.Rendering) -> tuple[list[Finding], list[Finding]]:
    """(findings, notes) on values the schema allows but a deployment should not run with."""
    env, values = item.environment.name, item.values
    findings, notes = [], []
    if not values["repositoryApi"]["restricted"]["enabled"]:
        findings.append(
            Finding(
                "settings",
                env,
                "repositoryApi.restricted.enabled",
                "false opens the model-repository API (load/unload, which accepts model files in "
                "the request) to anyone who reaches the port: remote code execution. Set it true",
            )
        )
    if env == "prod" and not values["image"].get("digest"):
        notes.append(
            Finding(
                "settings",
                env,
                "image.digest",
                f"empty: prod runs the tag {_image(item)}, which the registry can move; pin the "
                'digest (see "Image and server version" in the chart README)',
            )
        )
    job = values.get("promotion", {}).get("job", {})
    if env == "prod" and job.get("enabled") and not job["image"].get("digest"):
        notes.append(
            Finding(
                "settings",
                env,
                "promotion.job.image.digest",
                f"empty: prod's promotion Job runs the tag {job['image']['repository']}:"
                f"{job['image']['tag']}, which the registry can move; pin the digest",
            )
        )
    return findings, notes


def _image(item: render.Rendering) -> str:
    pod = item.one("Deployment")["spec"]["template"]["spec"]
    return str(next(c for c in pod["containers"] if c["name"] == "triton")["image"])


def helm_lint(item: render.Rendering) -> list[Finding]:
    """`helm lint --strict` with the environment's layered values."""
    overrides = render.merge_layers(layer.values for layer in item.layers)
    report = helm_python.lint(
        str(item.chart_dir),
        overrides,
        strict=True,
        namespace=item.environment.namespace,
        kube_version=f"v{KUBERNETES_VERSION}",
    )
    messages = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    found = [Finding("helm-lint", item.environment.name, m["path"], m["error"]) for m in messages]
    found += [Finding("helm-lint", item.environment.name, "chart", e) for e in report.get("errors", [])]
    return found


def values_schema(item: render.Rendering) -> list[Finding]:
    """The merged values against values.schema.json (render already refuses bad values; this proves it)."""
    chart = helm_python.Chart.load(str(item.chart_dir))
    try:
        chart.validate_schema(item.values)
    except helm_python.HelmValuesError as error:
        return [Finding("values-schema", item.environment.name, "values", str(error).strip())]
    return []


def kubernetes_schema(item: render.Rendering) -> list[Finding]:
    """Every built-in object against the pinned Kubernetes OpenAPI schema, unknown fields rejected."""
    found = []
    for manifest in item.manifests:
        if _is_custom(manifest.body):
            continue
        subject = f"{manifest.kind}/{manifest.name}"
        try:
            kubernetes_validate.validate(manifest.body, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path) or "(object)"
            found.append(
                Finding("kubernetes-schema", item.environment.name, subject, f"{where}: {error.message}")
            )
        except kubernetes_validate.SchemaNotFoundError:
            found.append(
                Finding(
                    "kubernetes-schema", item.environment.name, subject, "no schema for this apiVersion/kind"
                )
            )
    return found


def custom_resource_checks(item: render.Rendering) -> list[Finding]:
    """Custom resources against what their operators require; an unknown one is a finding too."""
    bodies = [manifest.body for manifest in item.manifests]
    found = []
    for manifest in item.manifests:
        if not _is_custom(manifest.body):
            continue
        subject = f"{manifest.kind}/{manifest.name}"
        check = custom_resources.RENDERED_CHECKS.get((manifest.body.get("apiVersion", ""), manifest.kind))
        if check is None:
            found.append(
                Finding("custom-resources", item.environment.name, subject, "no check for this kind")
            )
            continue
        found += [
            Finding("custom-resources", item.environment.name, subject, p)
            for p in check(manifest.body, bodies)
        ]
    return found


def argocd_applications(directory: Path = environments.ARGOCD_DIR) -> list[Finding]:
    """Each Argo CD Application: required fields, values files that exist, one per environment."""
    found = []
    covered = set()
    for path in sorted(directory.glob("*.yaml")):
        try:
            body = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            found.append(Finding("argocd", "deploy", path.name, f"invalid YAML: {error}"))
            continue
        problems = custom_resources.check_application(body, environments.PROJECT_ROOT)
        found += [Finding("argocd", "deploy", path.name, problem) for problem in problems]
        covered.add(body.get("spec", {}).get("destination", {}).get("namespace"))
    for name in ("dev", "prod"):
        namespace = environments.get(name).namespace
        if namespace not in covered:
            found.append(Finding("argocd", "deploy", name, f"no Application deploys to {namespace}"))
    return found


def load_skips(path: Path = CHECKOV_SKIPS_FILE) -> list[Skip]:
    """The checkov skips; each must name a check and give a reason."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise errors.InputError(f"{path}: cannot read the checkov skips: {error}") from None
    skips = []
    for index, entry in enumerate(document.get("skips") or []):
        if not isinstance(entry, dict) or not entry.get("check") or not str(entry.get("reason", "")).strip():
            raise errors.InputError(f"{path}: skips[{index}]: every skip needs `check` and a `reason`")
        skips.append(Skip(entry["check"], " ".join(str(entry["reason"]).split()), entry.get("resource", "*")))
    return skips


def checkov(
    renderings: Sequence[render.Rendering], skips_file: Path = CHECKOV_SKIPS_FILE
) -> tuple[list[Finding], list[tuple[Skip, str]], list[Skip]]:
    """checkov's Kubernetes policies on the rendered objects; listed skips applied, the rest must pass."""
    skips = load_skips(skips_file)
    failed, examined = _run_checkov(renderings)
    found, applied = [], []
    for check_id, name, scope, resource in failed:
        skip = next((s for s in skips if s.matches(check_id, resource)), None)
        if skip is None:
            found.append(Finding("checkov", scope, resource, f"{check_id} {name}"))
        else:
            applied.append((skip, f"{scope}:{resource}"))
    return found, applied, unused_skips(skips, applied, examined)


def unused_skips(
    skips: Sequence[Skip], applied: Sequence[tuple[Skip, str]], examined: set[str]
) -> list[Skip]:
    """The skips no failure used although checkov examined an object they cover. A skip scoped to
    objects these renderings do not hold (the promotion Job, when it is off) does not apply here,
    and is not reported: it is checked where they render (tests/chart/test_gates.py)."""
    used = {id(skip) for skip, _ in applied}
    return [
        skip
        for skip in skips
        if id(skip) not in used and any(fnmatch.fnmatchcase(resource, skip.resource) for resource in examined)
    ]


def _run_checkov(renderings: Sequence[render.Rendering]) -> tuple[list[tuple[str, str, str, str]], set[str]]:
    """Failed checks as (check id, check name, environment, KIND/NAME), and every KIND/NAME checkov
    examined (passed or failed)."""
    binary = _checkov_binary()
    with tempfile.TemporaryDirectory(prefix="tritonops-checkov-") as scratch:
        for item in renderings:
            Path(scratch, f"{item.environment.name}.yaml").write_text(item.stream(), encoding="utf-8")
        # BC_SKIP_MAPPING: no call home for guideline URLs; these machines have no network.
        environment = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": ""}
        command = [binary, "-d", scratch, "--framework", "kubernetes", "-o", "json", "--quiet"]
        result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    try:
        report = json.loads(result.stdout) if result.stdout.strip() else {}
    except json.JSONDecodeError:
        raise errors.ToolError(
            f"checkov printed no JSON (exit {result.returncode}): {result.stderr[-500:]}"
        ) from None
    reports = report if isinstance(report, list) else [report]
    failed = []
    examined = set()
    for entry in reports:
        results = entry.get("results") or {}
        for check in results.get("passed_checks", []):
            kind, _, name = _split_resource(check.get("resource", ""))
            examined.add(f"{kind}/{name}")
        for check in results.get("failed_checks", []):
            kind, _, name = _split_resource(check.get("resource", ""))
            scope = Path(check.get("file_path", "")).stem
            failed.append((check["check_id"], check.get("check_name", ""), scope, f"{kind}/{name}"))
            examined.add(f"{kind}/{name}")
    if result.returncode not in (0, 1) or (result.returncode == 1 and not failed):
        raise errors.ToolError(f"checkov failed (exit {result.returncode}): {result.stderr[-500:]}")
    return failed, examined


def _split_resource(resource: str) -> tuple[str, str, str]:
    """checkov names objects KIND.NAMESPACE.NAME."""
    kind, _, rest = resource.partition(".")
    namespace, _, name = rest.partition(".")
    return kind, namespace, name


def _checkov_binary() -> str:
    beside = Path(sys.executable).with_name("checkov")
    if beside.exists():
        return str(beside)
    found = shutil.which("checkov")
    if found is None:
        raise errors.ToolError("checkov is not installed; run `make setup`")
    return found


def _is_custom(body: dict[str, Any]) -> bool:
    group = str(body.get("apiVersion", "")).rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


class _timed:
    """Add the wall time of a block to timings[name]."""

    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.start
