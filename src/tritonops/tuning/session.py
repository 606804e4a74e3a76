"""The restore guarantee of `tune`, and the checks that come before anything changes.

A session holds one model on one server for the run: every load goes through `apply`, and when
the session ends (normally, on an error, on Ctrl-C or SIGTERM) the original config is loaded back
by a load that sends it explicitly: after a load with an override, a plain load may keep the
override or read config.pbtxt again (behaviour 12, tests/triton/test_config_override.py), and the
file may not be what the server ran anyway. Then the served config is compared with the original.

SIGINT and SIGTERM raise KeyboardInterrupt while the session is open (SIGTERM: a CI job's timeout
or `kill`), except while a load is in flight: the signal is held until the load has answered, so
the restore never races a load the server is still running (two loads of one model at once load
it twice, behaviour 14). A second signal during the restore is held too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from google.protobuf import json_format

from tritonops import errors
from tritonops.promotion import fleet
from tritonops.triton import client as triton_client
from tritonops.triton import perf_analyzer

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How long a variant's load (and the restore's) may take: a GPU model with warmup can take minutes.
LOAD_TIMEOUT_S = 300.0
ORIGINAL_FILE = "original-config.json"
RESTORE_REQUEST_FILE = "restore-request.json"


def check(client: triton_client.Client, model: str, *, where: str) -> Any:
    """Before anything changes: perf_analyzer runs here, the endpoint answers, the key opens its
    repository API, and the model is served. Returns the config the server runs it with."""
    perf_analyzer.perf_analyzer_binary()
    perf_analyzer.perf_analyzer_env()
    try:
        client.live()
    except errors.TritonUnavailable as error:
        raise errors.TritonUnavailable(
            f"{where}: no answer from Triton ({error}); is the server (or its port-forward) running?"
        ) from None
    try:
        index = client.repository_index()
    except errors.RepositoryApiForbidden as error:
        raise errors.InputError(
            f"{error}; give the key the server expects (--api-key-file FILE or $TRITONOPS_API_KEY), "
            "and --api-header if it is not the default"
        ) from None
    states = {str(entry.get("name")): str(entry.get("state", "")) for entry in index}
    if model not in states:
        # The index lists top-level dot-folders too (the promotion tool's `.tritonops` work area).
        known = ", ".join(sorted(name for name in states if not name.startswith("."))) or "none"
        raise errors.InputError(f"{model}: {where} knows no model of that name (its models: {known})")
    if not client.model_ready(model):
        raise errors.InputError(
            f"{model}: not ready on {where} (its state: {states[model] or 'unknown'}); tune measures a "
            "model the server serves: load it first"
        )
    return client.model_config(model)


class Session:
    """The run's hold on `model` on the server `client` talks to (see the module docstring).
    `saved` is a folder where the original config is written first, for a restore by hand."""

    def __init__(
        self, client: triton_client.Client, model: str, original: Any, *, saved: Path | None = None
    ) -> None:
        self.client = client
        self.model = model
        self.original = original
        self.original_json = dict(json_format.MessageToDict(original, preserving_proto_field_name=True))
        self.saved = saved
        self.changed = False
        # What the restore found: None before it ran, [] when the served config is the original,
        # else the fields that differ.
        self.differs: list[str] | None = None
        self._holding = False
        self._held: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Session:
        if self.saved is not None:
            self._save(self.saved)
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._on_signal)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            self._holding = True  # a second Ctrl-C must not cut the restore short
            self.restore()
        finally:
            for number, handler in self._previous.items():
                signal.signal(number, handler)
            self._holding = False
        if kind is None and self._held is not None:
            raise KeyboardInterrupt  # a signal arrived during the restore: still an interrupted run

    def apply(self, config: dict[str, Any]) -> None:
        """Load `config` as the model's override; a signal waits until the load has answered."""
        self.changed = True
        with self._hold_signals():
            self.client.load(self.model, config=config, timeout_s=LOAD_TIMEOUT_S)

    def restore(self) -> None:
        """Load the original config back (if anything was loaded) and check what is served."""
        if not self.changed:
            self.differs = []
            return
        try:
            # A variant's load that timed out may still run on the server: a restore load beside it
            # would load the model twice (behaviour 14).
            fleet.wait_until_not_loading(self.client, self.model, LOAD_TIMEOUT_S)
            self.client.load(self.model, config=self.original_json, timeout_s=LOAD_TIMEOUT_S)
            served = self.client.model_config(self.model)
        except errors.TritonOpsError as error:
            raise errors.RestoreFailed(
                self._by_hand(f"could not load the original config back: {error}")
            ) from error
        self.differs = _differing_fields(self.original, served)
        if self.differs:
            log.warning(
                "%s: the served config differs from the original after the restore, in: %s",
                self.model,
                ", ".join(self.differs),
            )

    @contextlib.contextmanager
    def _hold_signals(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            if self._held is not None:
                # Also when the load failed: the interrupt is what the run must answer now.
                raise KeyboardInterrupt

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        if self._held is None:
            self._held = number
        if not self._holding:
            raise KeyboardInterrupt

    def _save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ORIGINAL_FILE).write_text(json.dumps(self.original_json, indent=2) + "\n", encoding="utf-8")
        request = {"parameters": {"config": json.dumps(self.original_json)}}
        (folder / RESTORE_REQUEST_FILE).write_text(json.dumps(request) + "\n", encoding="utf-8")

    def _by_hand(self, problem: str) -> str:
        text = f"{self.model} on {self.client.address}: {problem}; it may still run a tuning variant"
        if self.saved is None:
            return text
        return (
            f"{text}. Load the original by hand: curl -X POST http://{self.client.address}/v2/repository/"
            f"models/{self.model}/load -H '<api-header>: <key>' -d @{self.saved / RESTORE_REQUEST_FILE}"
        )


def _differing_fields(original: Any, served: Any) -> list[str]:
    """The top-level config fields whose values differ between two ModelConfigs."""
    names = {field.name for field, _ in original.ListFields()} | {
        field.name for field, _ in served.ListFields()
    }
    return sorted(name for name in names if _field(original, name) != _field(served, name))


def _field(config: Any, name: str) -> Any:
    value = getattr(config, name)
    return list(value) if hasattr(value, "__len__") and not isinstance(value, str | bytes) else value
