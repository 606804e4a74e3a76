"""One error hierarchy for tritonops; the CLI picks the exit code from the type."""

from __future__ import annotations

from collections.abc import Sequence


class TritonOpsError(Exception):
    """Base of every error tritonops raises on purpose."""

    exit_code = 1


class InputError(TritonOpsError):
    """Unusable input (a values file, a flag, a path): the user must change something. Exit 2."""

    exit_code = 2


class ValuesError(InputError):
    """A values file or override is malformed, mistyped, or violates the chart's schema."""


class RenderError(InputError):
    """The chart refused to render this combination of values (a `fail` guard)."""


class GateFailure(TritonOpsError):
    """A static gate (lint, Kubernetes schema, policy) found problems in the rendered chart. Exit 1."""


class ToolError(TritonOpsError):
    """An external tool the gates rely on (checkov) is missing or crashed."""


class ServerError(TritonOpsError):
    """The local tritonserver exited early or missed its start deadline; the message carries its log tail."""


class TemporaryError(TritonOpsError):
    """Not yet (a server still starting, a model still loading): retry within a deadline."""


class PermanentError(TritonOpsError):
    """Will not get better by waiting (a model that fails to load, a refused request): roll back."""


class TritonUnavailable(TemporaryError):
    """The Triton endpoint did not answer."""


class ModelLoadError(PermanentError):
    """Triton refused to load a model; the message carries Triton's reason."""


class RepositoryApiForbidden(PermanentError):
    """The model-repository API refused the call: the restricted-API header or key is wrong or missing."""


class TritonRequestError(PermanentError):
    """Triton answered a request with an error (bad input, unknown model)."""


class VerificationFailed(PermanentError):
    """A loaded version answered wrongly (missing output, wrong shape or type, non-finite values, not
    what the golden file holds) or is not ready: it must not serve."""


class CandidateRejected(InputError):
    """A promotion candidate's files fail their checksum manifest or `repo validate` against the
    model's config: refused before any replica is touched. Exit 2; `.findings` holds the errors."""

    def __init__(self, message: str, findings: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.findings = tuple(findings)
        # What the chain did up to the refusal (promotion.chain.Outcome), set by the chain.
        self.outcome: object = None


class PromotionFailed(TritonOpsError):
    """A promotion failed at `.step` (materialize, verify, stage, load, check, commit, observe);
    every replica is back on the committed config. Exit 1; the message names the step and cause."""

    def __init__(self, step: str, cause: str | BaseException, *, outcome: object = None) -> None:
        super().__init__(f"promotion failed at step {step}: {cause}")
        self.step = step
        self.cause = cause
        # What the chain did before it failed (promotion.chain.Outcome), for --json and callers.
        self.outcome = outcome


class PromotionLocked(TritonOpsError):
    """Another promotion holds the repository's lock (its owner is named). Exit 3."""

    exit_code = 3


class StaleLock(PromotionLocked):
    """The repository's lock was left by a promotion that is gone (dead process, or no heartbeat
    for a minute); the message names it and the command that clears it. Exit 3."""


class BudgetNotMet(TritonOpsError):
    """`tune`: no variant measured met the p99 budget; the message names the closest one and its p99.
    The measurements are written and the server's original config is back. Exit 3."""

    exit_code = 3


class RestoreFailed(TritonOpsError):
    """`tune` could not load the model's original config back: the server may still run a variant.
    The message says where the original config was saved and how to load it by hand. Exit 1."""
