"""Findings: what `repo validate` reports, one per problem, each naming where and what to change."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any


class Severity(enum.StrEnum):
    """How bad a finding is: errors fail validation (exit 1), warnings and notes do not."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    """One problem in a model repository."""

    severity: Severity
    message: str
    model: str | None = None
    version: str | None = None
    file: str | None = None
    line: int | None = None
    column: int | None = None
    field: str | None = None

    def location(self) -> str:
        where = self.file or self.model or "repository"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where

    def __str__(self) -> str:
        field = f" [{self.field}]" if self.field else ""
        return f"{self.severity.value}: {self.location()}{field}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data


@dataclass
class FindingSink:
    """Collects findings for one model, filling in the model (and file) they belong to."""

    model: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        self.findings: list[Finding] = []

    def add(self, severity: Severity, message: str, **where: Any) -> None:
        where.setdefault("model", self.model)
        where.setdefault("file", self.file)
        self.findings.append(Finding(severity, message, **where))

    def error(self, message: str, **where: Any) -> None:
        self.add(Severity.ERROR, message, **where)

    def warning(self, message: str, **where: Any) -> None:
        self.add(Severity.WARNING, message, **where)

    def info(self, message: str, **where: Any) -> None:
        self.add(Severity.INFO, message, **where)
