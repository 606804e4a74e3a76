"""The only module that imports tritonclient: Triton's ModelConfig protobuf and the client calls
(health, repository index, load/unload with the restricted-API header, readiness per version,
metadata, model config, per-version statistics, inference), plus the metrics page read with
prometheus_client's parser. tritonclient's exceptions become ours at one choke point.

Repository calls (load, unload, index) go over gRPC when the endpoint has a gRPC address: over HTTP a
load holds one of the server's HTTP worker threads for as long as the model takes to initialise, so
probes and inference on the HTTP port queue behind slow loads once the loads outnumber the threads
(measured in tests/triton/test_slow_load.py). Over gRPC the HTTP port is untouched."""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from tritonops import errors
from tritonops.triton import server as triton_server

ModelConfig = model_config_pb2.ModelConfig
DataType = model_config_pb2.DataType
ModelInstanceGroup = model_config_pb2.ModelInstanceGroup
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"


def data_type_name(value: int) -> str:
    """`TYPE_FP32` for the enum value."""
    return str(model_config_pb2.DataType.Name(value))


def data_type_value(name: str) -> int:
    """The enum value for `TYPE_FP32`."""
    return int(model_config_pb2.DataType.Value(name))


@dataclass(frozen=True)
class RequestCounts:
    """What one loaded version has answered since it was loaded (Triton's statistics extension)."""

    version: int
    success: int
    failure: int
    # Requests run and model executions: their ratio is the batch the scheduler formed on average.
    inferences: int = 0
    executions: int = 0

    @property
    def answered(self) -> int:
        return self.success + self.failure


class Client:
    """A Triton endpoint: HTTP at `address` (host:port), and gRPC at `grpc_address` when given, for
    the repository calls; optionally with the restricted-API header and key, sent with every call
    but the health checks (a chart may restrict metadata, model-config, statistics or inference too)."""

    def __init__(
        self,
        address: str,
        *,
        grpc_address: str | None = None,
        api_header: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.address = address
        self.grpc_address = grpc_address
        self.timeout_s = timeout_s
        self._headers = {api_header: api_key} if api_header and api_key else {}
        # Triton's gRPC server looks for a restricted protocol's header under this prefix.
        self._grpc_headers = {GRPC_HEADER_PREFIX + api_header: api_key} if api_header and api_key else {}
        self._client = httpclient.InferenceServerClient(
            address, connection_timeout=timeout_s, network_timeout=timeout_s
        )
        self._grpc = grpcclient.InferenceServerClient(grpc_address) if grpc_address else None

    def close(self) -> None:
        self._client.close()
        if self._grpc is not None:
            self._grpc.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def repository_address(self) -> str:
        """Where load, unload and the index go: the gRPC address when there is one."""
        return self.grpc_address or self.address

    def live(self) -> bool:
        with _translated(self.address):
            return bool(self._client.is_server_live())

    def model_ready(self, name: str, version: str | int = "") -> bool:
        with _translated(self.address):
            return bool(self._client.is_model_ready(name, str(version), headers=self._headers))

    def repository_index(self) -> list[dict[str, Any]]:
        """Every model and version the server knows: {name, version, state, reason} (strings)."""
        with _translated(self.repository_address):
            if self._grpc is not None:
                index = self._grpc.get_model_repository_index(
                    headers=self._grpc_headers, as_json=True, client_timeout=self.timeout_s
                )
                return [dict(entry) for entry in index.get("models", [])]
            return list(self._client.get_model_repository_index(headers=self._headers))

    def ready_versions(self, name: str) -> list[int]:
        """The versions of `name` the index shows READY, ascending."""
        return sorted(
            int(entry["version"])
            for entry in self.repository_index()
            if entry.get("name") == name
            and entry.get("state") == "READY"
            and str(entry.get("version", "")).isdigit()
        )

    def load(
        self, name: str, *, config: Mapping[str, Any] | None = None, timeout_s: float | None = None
    ) -> None:
        """Load (or reload) a model; a config override pins it without touching the file on disk.
        `timeout_s` bounds the call over gRPC (the server may carry on loading after it)."""
        override = json.dumps(config) if config else None
        with _translated(self.repository_address, model=name):
            if self._grpc is not None:
                self._grpc.load_model(
                    name,
                    headers=self._grpc_headers,
                    config=override,
                    client_timeout=timeout_s if timeout_s is not None else self.timeout_s,
                )
            else:
                self._client.load_model(name, headers=self._headers, config=override)

    def unload(self, name: str, *, timeout_s: float = 60.0) -> None:
        """Unload and wait until the index no longer shows the model as READY (unload returns early)."""
        with _translated(self.repository_address, model=name):
            if self._grpc is not None:
                self._grpc.unload_model(name, headers=self._grpc_headers, client_timeout=timeout_s)
            else:
                self._client.unload_model(name, headers=self._headers)
        deadline = time.monotonic() + timeout_s
        while any(
            entry.get("name") == name and entry.get("state") == "READY" for entry in self.repository_index()
        ):
            if time.monotonic() >= deadline:
                raise errors.TritonUnavailable(f"{name}: still READY {timeout_s:g} s after unload")
            time.sleep(0.1)

    def metadata(self, name: str) -> dict[str, Any]:
        with _translated(self.address, model=name):
            return dict(self._client.get_model_metadata(name, headers=self._headers))

    def model_config(self, name: str, version: str | int = "") -> Any:
        """The config the server runs `name` (at `version`) with, as Triton's ModelConfig protobuf."""
        with _translated(self.address, model=name):
            document = self._client.get_model_config(name, str(version), headers=self._headers)
        config = ModelConfig()
        try:
            json_format.ParseDict(document, config, ignore_unknown_fields=True)
        except json_format.ParseError as error:
            raise errors.TritonRequestError(
                f"{name} on {self.address}: the model config is not a ModelConfig ({error})"
            ) from error
        return config

    def request_counts(self, name: str) -> dict[int, RequestCounts]:
        """Requests each loaded version of `name` has answered (success and failure), by version.
        A version that is unloaded and loaded again starts from zero."""
        with _translated(self.address, model=name):
            document = self._client.get_inference_statistics(name, headers=self._headers)
        counts = {}
        for entry in document.get("model_stats", []):
            if not str(entry.get("version", "")).isdigit():
                continue
            stats = entry.get("inference_stats", {})
            version = int(entry["version"])
            counts[version] = RequestCounts(
                version,
                int(stats.get("success", {}).get("count", 0)),
                int(stats.get("fail", {}).get("count", 0)),
                int(entry.get("inference_count", 0)),
                int(entry.get("execution_count", 0)),
            )
        return counts

    def infer(
        self, name: str, inputs: Mapping[str, np.ndarray[Any, Any]], *, version: str | int = ""
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Run one inference; returns every output by name."""
        return self.infer_answer(name, inputs, version=version)[1]

    def infer_answer(
        self, name: str, inputs: Mapping[str, np.ndarray[Any, Any]], *, version: str | int = ""
    ) -> tuple[int, dict[str, np.ndarray[Any, Any]]]:
        """Run one inference; returns the version that answered (the response's model_version) and
        every output by name."""
        tensors = []
        for tensor_name, array in inputs.items():
            tensor = httpclient.InferInput(tensor_name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        with _translated(self.address, model=name):
            result = self._client.infer(name, tensors, model_version=str(version), headers=self._headers)
            response = result.get_response()
            answered = str(response.get("model_version", ""))
            outputs = {output["name"]: result.as_numpy(output["name"]) for output in response["outputs"]}
        return int(answered) if answered.isdigit() else 0, outputs


# gRPC status codes (tritonclient puts `StatusCode.X` in the exception's status).
_GRPC_TEMPORARY = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED")


@contextlib.contextmanager
def _translated(address: str, *, model: str | None = None) -> Iterator[None]:
    """tritonclient's exceptions, as ours: the type decides retry (temporary) or rollback (permanent)."""
    subject = f"{model} on {address}" if model else address
    try:
        yield
    except InferenceServerException as error:
        status = str(error.status() or "")
        message = _without_tracebacks(error.message() or str(error))
        if status == "403" or "restricted" in message.lower():
            # Over gRPC Triton names the header in its gRPC form ("triton-grpc-protocol-<header>"),
            # not the one the user configured and the HTTP API expects.
            message = message.replace(GRPC_HEADER_PREFIX, "")
            raise errors.RepositoryApiForbidden(
                f"{subject}: repository API refused the call (the restricted-API key is missing or "
                f"wrong): {message}"
            ) from error
        if "failed to load" in message or "load failed" in message:
            raise errors.ModelLoadError(f"{subject}: {message}") from error
        if status == "StatusCode.DEADLINE_EXCEEDED":
            raise errors.TritonUnavailable(f"{subject}: no answer within the deadline ({message})") from error
        if status in ("400", "404", "500") or (
            status.startswith("StatusCode.") and status not in _GRPC_TEMPORARY
        ):
            raise errors.TritonRequestError(f"{subject}: {message}") from error
        raise errors.TritonUnavailable(f"{subject}: {message}") from error
    except (ConnectionError, OSError) as error:
        raise errors.TritonUnavailable(f"{subject}: no answer ({error})") from error


# A Python backend's traceback inside Triton's message ("\n\nAt:\n  file(line): function\n..."):
# the line before it says what went wrong.
_BACKEND_TRACEBACK = re.compile(r"\n+At:\n(?:[ \t]+.*\n?)*")


def _without_tracebacks(message: str) -> str:
    return _BACKEND_TRACEBACK.sub("", message).strip().rstrip(";").strip()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape_metrics(url: str, *, timeout_s: float = 5.0) -> Samples:
    """The Prometheus text page at `url` as {(metric, sorted labels): value}."""
    try:
        with triton_server.LOOPBACK_OPENER.open(url, timeout=timeout_s) as response:
            text = response.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError) as error:
        raise errors.TritonUnavailable(f"{url}: no metrics ({error})") from error
    try:
        return parse_metrics(text)
    except ValueError as error:
        raise errors.TritonRequestError(f"{url}: not a Prometheus text page ({error})") from error


def parse_metrics(text: str) -> Samples:
    """A Prometheus text page as {(metric, sorted labels): value}, each series under the name the
    page gives it, which is the name Prometheus stores and queries use.

    prometheus_client's parser does the reading (escapes, NaN and +Inf, timestamps). Given a
    `# TYPE x counter` line it renames the counter's samples to OpenMetrics names (`x` becomes
    `x_total`, as for all of Triton's counters), so the TYPE lines are dropped first: every sample
    is then read as untyped and keeps its name. Raises ValueError on a line that is not Prometheus
    text."""
    untyped = "\n".join(line for line in text.splitlines() if line.split(None, 2)[:2] != ["#", "TYPE"])
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): float(sample.value)
        for family in text_string_to_metric_families(untyped)
        for sample in family.samples
    }


def metric_total(
    samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """The sum of `name` over every series whose labels include `labels`."""
    return sum(
        value
        for (metric, series), value in samples.items()
        if metric == name and all((key, want) in series for key, want in labels.items())
    )
