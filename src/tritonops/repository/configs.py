"""Read `config.pbtxt` with Triton's own ModelConfig protobuf, so every field name and enum is
checked exactly as Triton checks it; parse errors keep their line and column."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from tritonops.repository.findings import FindingSink
from tritonops.triton import client as triton_client

# Larger than any sane text config; past this the file is not read (it is not a config).
MAX_CONFIG_BYTES = 4 * 1024 * 1024

# platform -> backend, as Triton resolves them.
PLATFORM_BACKENDS = {
    "onnxruntime_onnx": "onnxruntime",
    "tensorrt_plan": "tensorrt",
    "pytorch_libtorch": "pytorch",
    "tensorflow_savedmodel": "tensorflow",
    "tensorflow_graphdef": "tensorflow",
    "ensemble": "",
}
# backend -> the model file Triton looks for in a version folder (unless default_model_filename).
DEFAULT_MODEL_FILES = {
    "onnxruntime": "model.onnx",
    "tensorrt": "model.plan",
    "pytorch": "model.pt",
    "python": "model.py",
    "openvino": "model.xml",
}
PLATFORM_MODEL_FILES = {
    "tensorflow_savedmodel": "model.savedmodel",
    "tensorflow_graphdef": "model.graphdef",
}
# Backends whose configs Triton can complete from the model itself when config.pbtxt is absent.
AUTO_COMPLETE_BACKENDS = {"onnxruntime", "tensorrt", "tensorflow"}


@dataclass(frozen=True)
class ParsedConfig:
    """A config.pbtxt and what Triton's protobuf made of it."""

    path: Path
    text: str
    config: triton_client.ModelConfig

    def line_of(self, *fragments: str) -> int | None:
        """The first line holding all fragments (e.g. a tensor's `name: "x"`), for findings."""
        for number, line in enumerate(self.text.splitlines(), start=1):
            if all(fragment in line for fragment in fragments):
                return number
        return None

    def line_of_field(self, field: str) -> int | None:
        pattern = re.compile(rf"^\s*{re.escape(field)}\s*[:{{\[]")
        for number, line in enumerate(self.text.splitlines(), start=1):
            if pattern.search(line):
                return number
        return None

    @property
    def backend(self) -> str:
        """The backend Triton will use: `backend`, else the platform's."""
        return str(self.config.backend or PLATFORM_BACKENDS.get(self.config.platform, ""))

    @property
    def model_filename(self) -> str | None:
        """The file (or folder) Triton loads from a version folder, or None when unknown."""
        if self.config.default_model_filename:
            return str(self.config.default_model_filename)
        if self.config.platform in PLATFORM_MODEL_FILES:
            return PLATFORM_MODEL_FILES[self.config.platform]
        return DEFAULT_MODEL_FILES.get(self.backend)


def read_config(path: Path, sink: FindingSink) -> ParsedConfig | None:
    """Parse a config.pbtxt; on any problem add one finding and return None."""
    file = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            sink.error(f"{size} bytes is not a text model config; expected a small config.pbtxt", file=file)
            return None
        raw = path.read_bytes()
    except OSError as error:
        sink.error(f"cannot read: {error.strerror or error}; check the file's permissions", file=file)
        return None
    if b"\x00" in raw:
        sink.error("binary content where a text protobuf config is expected", file=file)
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        sink.error(f"not UTF-8 text (byte {error.start}); save the config as UTF-8", file=file)
        return None
    config = triton_client.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        line, column = error.GetLine(), error.GetColumn()
        message = str(error)
        message = re.sub(r"^\d+:\d+ : ", "", message)
        message = re.sub(r"^'[^']*': ", "", message)
        sink.error(f"invalid config: {message}", file=file, line=line or None, column=column or None)
        return None
    return ParsedConfig(path, text, config)
