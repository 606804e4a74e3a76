"""The deployment environments: their values files, namespaces and release names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tritonops import errors

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CHART_DIR = PROJECT_ROOT / "charts" / "triton"
VALUES_DIR = PROJECT_ROOT / "values"
ARGOCD_DIR = PROJECT_ROOT / "deploy" / "argocd"
RELEASE_NAME = "triton"


@dataclass(frozen=True)
class Environment:
    """Where and how a release of the chart is deployed."""

    name: str
    namespace: str
    release: str = RELEASE_NAME

    @property
    def values_files(self) -> tuple[Path, ...]:
        """The layered values files: the platform's base, then the environment's own."""
        return (VALUES_DIR / "base.yaml", VALUES_DIR / f"{self.name}.yaml")


ENVIRONMENTS: dict[str, Environment] = {
    env.name: env
    for env in (
        Environment("dev", "triton-dev"),
        Environment("prod", "triton-prod"),
        Environment("local", "triton-local"),
        # The kind tier's profile (`make test-kind`): gated like the others, installed only there.
        Environment("ci-kind", "triton-ci"),
    )
}


def get(name: str) -> Environment:
    """The named environment, or an InputError that lists the known ones."""
    try:
        return ENVIRONMENTS[name]
    except KeyError:
        known = ", ".join(ENVIRONMENTS)
        raise errors.InputError(f"--env {name!r}: unknown environment; choose one of {known}") from None
