"""One error hierarchy for tritonops; the CLI picks the exit code from the type."""

from __future__ import annotations


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
