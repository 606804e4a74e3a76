"""The search space of `tune`: which serving configs of one model are worth measuring, as a
deterministic ordered list of variants, and each variant as the full config a load sends.

A variant changes only what decides serving throughput and latency: `max_batch_size`, dynamic
batching (on or off, its `max_queue_delay_microseconds` and `preferred_batch_size`) and the
instance group (count, and kind where the server has GPUs). Everything else (name, backend or
platform, inputs, outputs, version_policy, parameters) comes from the original config, the one the
server runs now, so a variant is that config with those fields replaced.

What the model allows decides the ranges: a model whose graph has a dynamic first dim on every
input and output can batch (max_batch_size 1 ... cap), one with a fixed first dim cannot
(max_batch_size 0 only, so only the instance group varies). Batches larger than the requests in
flight never form (perf_analyzer sends one item per request), so the cap is the smallest power of
two at or above the highest concurrency measured, bounded by MAX_BATCH_CAP.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format, text_format

from tritonops import errors
from tritonops.repository import signatures
from tritonops.triton import client as triton_client

MAX_BATCH_CAP = 128
# Queue delays tried with dynamic batching, ascending: 0 sends what is queued at once; longer ones
# wait for fuller batches, trading latency for throughput.
QUEUE_DELAYS_US = (0, 100, 1000, 5000)
DEFAULT_MAX_INSTANCES = 4
KIND_CPU, KIND_GPU = "KIND_CPU", "KIND_GPU"
# Scheduling this search does not model: such models are refused rather than tuned wrongly.
UNSUPPORTED_SCHEDULING = ("sequence_batching", "ensemble_scheduling")
# Fields of a served config that the server chose, left out of a config.pbtxt written from it.
SERVER_FILLED = ("runtime",)


@dataclass(frozen=True)
class Variant:
    """One serving config: max_batch_size, dynamic batching (queue delay in microseconds,
    preferred batch size or None for Triton's default, which is max_batch_size), instances."""

    max_batch_size: int
    dynamic_batching: bool = False
    queue_delay_us: int = 0
    preferred_batch_size: int | None = None
    instances: int = 1
    kind: str = KIND_CPU

    def key(self) -> tuple[int, bool, int, int, str]:
        """What a served config must match to be this variant (the preferred batch size aside:
        Triton fills it in, and the variant's label says which one was asked for)."""
        return (
            self.max_batch_size,
            self.dynamic_batching,
            self.queue_delay_us if self.dynamic_batching else 0,
            self.instances,
            self.kind,
        )

    def label(self) -> str:
        """`batch 16, dynamic (delay 100 us, preferred 8), 2 x CPU`: what progress lines show."""
        if self.max_batch_size == 0:
            batching = "no batching"
        elif self.dynamic_batching:
            preferred = f", preferred {self.preferred_batch_size}" if self.preferred_batch_size else ""
            batching = f"batch {self.max_batch_size}, dynamic (delay {self.queue_delay_us} us{preferred})"
        else:
            batching = f"batch {self.max_batch_size}, no dynamic batching"
        return f"{batching}, {self.instances} x {self.kind.removeprefix('KIND_')}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_batch_size": self.max_batch_size,
            "dynamic_batching": self.dynamic_batching,
            "max_queue_delay_microseconds": self.queue_delay_us,
            "preferred_batch_size": self.preferred_batch_size,
            "instances": self.instances,
            "kind": self.kind,
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> Variant:
        return cls(
            int(document["max_batch_size"]),
            bool(document["dynamic_batching"]),
            int(document["max_queue_delay_microseconds"]),
            None if document.get("preferred_batch_size") is None else int(document["preferred_batch_size"]),
            int(document["instances"]),
            str(document["kind"]),
        )


@dataclass(frozen=True)
class Space:
    """The variants of one model and the original config they are built from (protobuf JSON with
    proto field names, as Triton reports it)."""

    model: str
    original: dict[str, Any]
    baseline: Variant
    batchable: bool
    batch_sizes: tuple[int, ...]
    queue_delays_us: tuple[int, ...]
    instance_counts: tuple[int, ...]
    kinds: tuple[str, ...]

    def variants(self) -> list[Variant]:
        """Every variant, in a fixed order: kind, instance count, then no dynamic batching first
        and dynamic batching by batch size, queue delay and preferred batch size, ascending. The
        baseline's equal is left out (the baseline is measured as the original config)."""
        found = []
        for kind in self.kinds:
            for count in self.instance_counts:
                for variant in self.variants_for(count, kind):
                    if variant != self.baseline:
                        found.append(variant)
        return found

    def variants_for(self, instances: int, kind: str) -> list[Variant]:
        if not self.batchable:
            return [Variant(0, instances=instances, kind=kind)]
        found = [Variant(self.batch_sizes[-1], instances=instances, kind=kind)]
        for size in self.batch_sizes:
            for delay in self.queue_delays_us:
                found.append(Variant(size, True, delay, None, instances, kind))
                # A preferred size below the maximum sends a batch as soon as it is reached instead
                # of waiting out the delay for a full one; only a delay makes that a different config.
                preferred = preferred_size(size)
                if delay > 0 and preferred:
                    found.append(Variant(size, True, delay, preferred, instances, kind))
        return found

    def override(self, variant: Variant) -> dict[str, Any]:
        """The full config a load sends for `variant`: the original with the variant's fields."""
        config = copy.deepcopy(self.original)
        if variant == self.baseline:
            return config
        config["max_batch_size"] = variant.max_batch_size
        if variant.dynamic_batching:
            # Other dynamic-batching settings of the original (priorities, ordering) are kept.
            batching = dict(config.get("dynamic_batching") or {})
            batching["max_queue_delay_microseconds"] = str(variant.queue_delay_us)
            if variant.preferred_batch_size:
                batching["preferred_batch_size"] = [variant.preferred_batch_size]
            else:
                batching.pop("preferred_batch_size", None)
            config["dynamic_batching"] = batching
        else:
            config.pop("dynamic_batching", None)
        config["instance_group"] = [{"count": variant.instances, "kind": variant.kind}]
        return config

    def config_text(self, variant: Variant, base: Any | None = None) -> str:
        """`variant` as config.pbtxt text. `base` (a ModelConfig, e.g. the repository's own
        config.pbtxt) keeps that file's fields; without it the original served config is used."""
        config = triton_client.ModelConfig()
        if base is None:
            document = self.override(variant)
            # What the server filled in for its own backend (the local runtime's Python-based
            # ONNX backend says runtime "model.py"): another server fills its own.
            for field in SERVER_FILLED:
                document.pop(field, None)
            json_format.ParseDict(document, config)
        else:
            config.CopyFrom(base)
            document = json_format.MessageToDict(config, preserving_proto_field_name=True)
            tuned = self.override(variant)
            for field in ("max_batch_size", "input", "output", "dynamic_batching", "instance_group"):
                document.pop(field, None)
                if field in tuned:
                    document[field] = tuned[field]
            config = triton_client.ModelConfig()
            json_format.ParseDict(document, config)
        body = str(text_format.MessageToString(config))
        if config.max_batch_size == 0:
            # protobuf omits zero values; say it, since it decides how dims are read.
            body = f"max_batch_size: 0\n{body}"
        return f"# Tuned by `tritonops tune` for {self.model}: {variant.label()}.\n{body}"


def preferred_size(max_batch_size: int) -> int | None:
    """The preferred batch size tried below the maximum: half of it, from 4 up."""
    return max_batch_size // 2 if max_batch_size >= 4 else None


def build(
    config: Any,
    *,
    concurrency: Sequence[int],
    signature: signatures.Signature | None = None,
    max_instances: int = DEFAULT_MAX_INSTANCES,
    kinds: Sequence[str] | None = None,
    queue_delays_us: Sequence[int] = QUEUE_DELAYS_US,
    allow_smaller_batch: bool = False,
) -> Space:
    """The space of a model from the config the server runs (a ModelConfig) and, when the model
    file is at hand, its ONNX graph's signature; `concurrency` are the levels that will be measured.

    max_batch_size is also the largest batch a client request may carry: below the current one,
    requests that work now would be refused (HTTP 400), so the space starts at the current one
    unless `allow_smaller_batch` (every client sends smaller batches, e.g. one item each)."""
    name = str(config.name)
    for field in UNSUPPORTED_SCHEDULING:
        if config.HasField(field):
            raise errors.InputError(
                f"{name}: uses {field}, which `tune` does not model (it tunes dynamic batching and "
                "instance groups of models with the default or dynamic batcher)"
            )
    if config.platform == "ensemble":
        raise errors.InputError(f"{name}: an ensemble; tune each of its composing models instead")
    if max_instances < 1:
        raise errors.InputError(f"--max-instances {max_instances}: must be at least 1")
    original = dict(json_format.MessageToDict(config, preserving_proto_field_name=True))
    batchable = _batchable(config, signature)
    cap = 1
    while cap < max(concurrency) and cap < MAX_BATCH_CAP:
        cap *= 2
    sizes = tuple(2**power for power in range(1, cap.bit_length()) if 2**power <= cap) or (cap,)
    if not allow_smaller_batch and batchable:
        floor = int(config.max_batch_size)
        sizes = tuple(size for size in sizes if size >= floor) or (floor,)
    doubling = {2**power for power in range(max_instances.bit_length()) if 2**power <= max_instances}
    counts = tuple(sorted({*doubling, max_instances}))
    return Space(
        model=name,
        original=original,
        baseline=baseline_of(config),
        batchable=batchable,
        batch_sizes=sizes,
        queue_delays_us=tuple(sorted(set(queue_delays_us))),
        instance_counts=counts,
        kinds=tuple(kinds) if kinds else served_kinds(config),
    )


def served_kinds(config: Any) -> tuple[str, ...]:
    """KIND_CPU, and KIND_GPU first when the server runs the model on GPUs (Triton reports
    KIND_AUTO resolved: KIND_GPU where it found GPUs)."""
    on_gpu = any(
        triton_client.ModelInstanceGroup.Kind.Name(group.kind) == KIND_GPU for group in config.instance_group
    )
    return (KIND_GPU, KIND_CPU) if on_gpu else (KIND_CPU,)


def baseline_of(config: Any) -> Variant:
    """The original config in the variant's terms (its first instance group, for the label)."""
    group = config.instance_group[0] if config.instance_group else None
    kind = triton_client.ModelInstanceGroup.Kind.Name(group.kind) if group is not None else KIND_CPU
    dynamic = config.HasField("dynamic_batching")
    preferred = list(config.dynamic_batching.preferred_batch_size) if dynamic else []
    # Triton fills preferred_batch_size with max_batch_size when a config leaves it empty.
    explicit = preferred[0] if len(preferred) == 1 and preferred[0] != config.max_batch_size else None
    return Variant(
        int(config.max_batch_size),
        dynamic,
        int(config.dynamic_batching.max_queue_delay_microseconds) if dynamic else 0,
        explicit,
        sum(int(g.count) or 1 for g in config.instance_group) or 1,
        kind,
    )


def _batchable(config: Any, signature: signatures.Signature | None) -> bool:
    """Whether tune may vary batching: the config batches (max_batch_size > 0) and, when the ONNX
    graph is at hand, every input and output has a dynamic first dim. A config written with
    max_batch_size 0 is never switched to batching: a dynamic first dim is not always a batch dim
    (tokens, detections), and the dynamic batcher would join requests along it."""
    if config.max_batch_size <= 0:
        return False
    if signature is not None:
        tensors = (*signature.inputs, *signature.outputs)
        return bool(tensors) and all(t.dims and t.dims[0] == -1 for t in tensors)
    return True
