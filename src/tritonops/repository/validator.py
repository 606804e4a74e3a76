"""`repo validate`: check a model repository the way Triton will, before a load fails in prod."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonops import errors
from tritonops.repository import committed_state, configs, layout, signatures
from tritonops.repository.findings import Finding, FindingSink, Severity
from tritonops.triton import client as triton_client

# A queue delay past this adds more latency than batching usually wins back.
MAX_SANE_QUEUE_DELAY_US = 100_000
# Who the pod reads the repository as: the chart's securityContext.runAsUser/runAsGroup defaults.
POD_USER = (1000, 1000)
# Files named in one readability finding before "and N more".
NAMED_FILES = 4


@dataclass(frozen=True)
class ValidationReport:
    """Every finding for a repository (or one model of it)."""

    root: Path
    models: tuple[str, ...]
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def passed(self) -> bool:
        return not self.errors


def validate(
    root: Path,
    *,
    model: str | None = None,
    gpu_available: bool | None = None,
    local_tier: bool = False,
    pod_user: tuple[int, int] = POD_USER,
) -> ValidationReport:
    """Validate a repository; `gpu_available=False` flags KIND_GPU instance groups, `local_tier`
    what the local runtime's Triton (the nvidia-pytriton wheel) lacks.

    A committed state at the root (`current.json`) is checked as the pod's launcher checks it:
    every repository the launcher refuses to start with fails validation. Files and folders the
    pod's user (`pod_user`: uid, gid) cannot read are warnings.

    Raises InputError when the path itself is unusable (exit 2); everything else is a finding.
    """
    _check_root(root)
    sink = FindingSink()
    folders = layout.model_folders(root, sink)
    names = {folder.name for folder in folders}
    if model is not None:
        if model not in names:
            raise errors.InputError(f"--model {model!r}: no such model folder in {root}")
        folders = [folder for folder in folders if folder.name == model]
    if not folders:
        sink.warning("no model folders: Triton would start with an empty repository", file=str(root))
    findings = list(sink.findings)
    parsed: dict[str, configs.ParsedConfig | None] = {}
    for folder in folders:
        model_sink = FindingSink(model=folder.name)
        config = parsed[folder.name] = _validate_model(folder, model_sink, gpu_available, names)
        if local_tier and config is not None:
            _check_local_tier(config, model_sink)
        _check_readable_by(folder, pod_user, model_sink)
        findings += model_sink.findings
    for folder in folders:
        ensemble = parsed.get(folder.name)
        if ensemble is not None and ensemble.config.platform == "ensemble":
            ensemble_sink = FindingSink(model=folder.name, file=str(ensemble.path))
            _check_ensemble(ensemble, root, ensemble_sink)
            findings += ensemble_sink.findings
    # What the pod's launcher checks before it starts Triton, with the launcher's own code.
    findings += committed_state.check(root, model=model)
    root_sink = FindingSink()
    _check_readable_by(root, pod_user, root_sink, recurse=False, extra=[root / committed_state.DEFAULT_FILE])
    findings += root_sink.findings
    return ValidationReport(root, tuple(folder.name for folder in folders), tuple(findings))


def validate_version(
    parsed: configs.ParsedConfig, version_dir: Path, version: int, *, pod_user: tuple[int, int] = POD_USER
) -> list[Finding]:
    """`repo validate` of one version folder against its model's config, wherever the folder is (a
    promotion's staged candidate): the model file is there and its graph agrees with the config;
    files the pod's user cannot read are warnings. The config's own checks (and its pin, which
    names the committed versions, not this one) belong to `validate`."""
    model_dir = parsed.path.parent
    sink = FindingSink(model=model_dir.name)
    folder = layout.ModelFolder(model_dir.name, model_dir, parsed.path, {version: version_dir})
    _check_version_files(folder, parsed, sink)
    _check_readable_by(version_dir, pod_user, sink)
    return sink.findings


def validate_config(
    parsed: configs.ParsedConfig,
    model_dir: Path,
    versions: Sequence[int],
    committed: triton_client.ModelConfig | None = None,
    *,
    allow_smaller_batch: bool = False,
) -> list[Finding]:
    """`repo validate` of a new config for a model's committed `versions`, wherever the file is (a
    promotion of a tuned config.pbtxt): the config's own checks against the model folder (its name
    must be the folder's), each version's model file against it (the ONNX graph), and, given the
    `committed` config, the same backend and the same inputs and outputs by name and type: a
    config change must not change what the model is, nor what clients send and receive. A lower
    max_batch_size, a switch between max_batch_size 0 and > 0, and other dims or reshape of a
    tensor are errors too (clients sending what the committed config accepts would get HTTP 400),
    warnings with `allow_smaller_batch` (`promote --allow-smaller-batch`: a deliberate change)."""
    sink = FindingSink(model=model_dir.name)
    folder = layout.ModelFolder(
        model_dir.name, model_dir, parsed.path, {v: model_dir / str(v) for v in sorted(set(versions))}
    )
    if not parsed.config.name:
        sink.error(
            f'no name: write `name: "{model_dir.name}"` (the model\'s folder name)', file=str(parsed.path)
        )
    _check_config(parsed, folder, sink, None)
    _check_version_files(folder, parsed, sink)
    if committed is not None:
        _check_same_interface(parsed, committed, sink)
        _check_accepts_what_committed_accepts(parsed, committed, sink, allow_smaller_batch)
    return sink.findings


# The flag that lets a config accept less than the committed one (promote --allow-smaller-batch).
ALLOW_SMALLER_BATCH = "--allow-smaller-batch"


def _check_accepts_what_committed_accepts(
    parsed: configs.ParsedConfig,
    committed: triton_client.ModelConfig,
    sink: FindingSink,
    allowed: bool,
) -> None:
    """Requests the committed config accepts must stay valid: Triton answers a batch larger than
    max_batch_size with HTTP 400 ("batch-size must be <= N"), and a request shaped for other dims
    (or for a batch dim that is gone or new) likewise. Errors, or warnings when `allowed`."""
    config = parsed.config
    report = sink.warning if allowed else sink.error
    override = (
        f"allowed here ({ALLOW_SMALLER_BATCH}, or a rollback to a config committed before)"
        if allowed
        else f"give {ALLOW_SMALLER_BATCH} to promote it deliberately, once every client is ready for it"
    )
    at = {"file": str(parsed.path), "field": "max_batch_size", "line": parsed.line_of_field("max_batch_size")}
    old, new = committed.max_batch_size, config.max_batch_size
    if (old == 0) != (new == 0):
        report(
            f"max_batch_size {new} switches batching {'on' if new else 'off'} (the committed config says "
            f"{old}): clients send their tensors {'without' if new else 'with'} a batch dim now, and "
            f"requests shaped for the committed config are refused; {override}",
            **at,
        )
    elif new < old:
        report(
            f"max_batch_size {new} is lower than the committed config's {old}: every client sending "
            f'batches larger than {new} gets HTTP 400 ("batch-size must be <= {new}"); raise it to '
            f"{old} or more, or {override}",
            **at,
        )
    for kind, tensors, committed_tensors in (
        ("input", config.input, committed.input),
        ("output", config.output, committed.output),
    ):
        before = {t.name: t for t in committed_tensors}
        for tensor in tensors:
            previous = before.get(tensor.name)
            if previous is None:
                continue  # a renamed tensor: _check_same_interface says so
            for field_name, shown_old, shown_new in (
                ("dims", list(previous.dims), list(tensor.dims)),
                ("reshape", _reshape(previous), _reshape(tensor)),
            ):
                if shown_old != shown_new:
                    report(
                        f"{kind} {tensor.name!r}: {field_name} {shown_new} is not the committed "
                        f"config's {shown_old}: clients send and receive the committed shapes; "
                        f"{override}",
                        file=str(parsed.path),
                        field=f"{kind}[{tensor.name}].{field_name}",
                        line=parsed.line_of(f'"{tensor.name}"'),
                    )


def _reshape(tensor: Any) -> list[int] | None:
    return list(tensor.reshape.shape) if tensor.HasField("reshape") else None


def _check_same_interface(
    parsed: configs.ParsedConfig, committed: triton_client.ModelConfig, sink: FindingSink
) -> None:
    config, where = parsed.config, {"file": str(parsed.path)}
    before = configs.ParsedConfig(parsed.path, "", committed).backend
    if parsed.backend != before:
        sink.error(
            f"backend {parsed.backend or 'none'!r} is not the committed config's {before!r}: a config "
            "change keeps the model's backend (promote a new version for another model)",
            **where,
        )
    for kind, new, old in (
        ("input", config.input, committed.input),
        ("output", config.output, committed.output),
    ):
        wanted = {t.name: triton_client.data_type_name(t.data_type) for t in old}
        found = {t.name: triton_client.data_type_name(t.data_type) for t in new}
        if found != wanted:
            sink.error(
                f"{kind}s {sorted(found.items())} are not the committed config's {sorted(wanted.items())}: "
                f"a config change keeps the model's {kind}s (names and data types)",
                field=kind,
                **where,
            )


def _check_root(root: Path) -> None:
    wanted = "give the repository root (the folder holding model folders)"
    if not root.exists():
        raise errors.InputError(f"{root}: no such model repository; {wanted}")
    if not root.is_dir():
        raise errors.InputError(f"{root}: not a folder; {wanted}")
    if not os.access(root, os.R_OK | os.X_OK):
        raise errors.InputError(f"{root}: cannot read the folder; check its permissions")
    signs = _model_folder_signs(root)
    if signs:
        raise errors.InputError(
            f"{root}: looks like a model folder ({signs}), not a repository; {wanted}, "
            f"e.g. `tritonops repo validate {root.parent} --model {root.name}`"
        )
    if root.name.isdigit() and _model_folder_signs(root.parent):
        raise errors.InputError(
            f"{root}: looks like a version folder of the model {root.parent.name}, not a repository; "
            f"{wanted}, e.g. `tritonops repo validate {root.parent.parent} --model {root.parent.name}`"
        )


def _model_folder_signs(path: Path) -> str:
    """What makes `path` look like one model folder rather than a repository root ('' if nothing):
    a config.pbtxt, or version folders (1, 2, ...) while no sub-folder holds a config.pbtxt."""
    if (path / "config.pbtxt").is_file():
        return "it holds config.pbtxt"
    try:
        folders = [entry for entry in path.iterdir() if entry.is_dir()]
    except OSError:
        return ""
    versions = sorted((entry.name for entry in folders if entry.name.isdigit()), key=int)
    if versions and not any((entry / "config.pbtxt").is_file() for entry in folders):
        return f"version folder(s) {', '.join(versions)}"
    return ""


def _check_local_tier(parsed: configs.ParsedConfig, sink: FindingSink) -> None:
    """The local runtime runs the nvidia-pytriton wheel's Triton, which ships no repository agents."""
    for agent in parsed.config.model_repository_agents.agents:
        if agent.name == "checksum":
            sink.warning(
                "model_repository_agents lists the checksum agent, but the local tier's Triton (the "
                "nvidia-pytriton wheel) has no libtritonrepoagent_checksum.so: `tritonops up` fails to "
                "load this model. Keep the block for the cluster's image only, or verify files with "
                "`tritonops repo checksum --verify` instead",
                file=str(parsed.path),
                line=parsed.line_of_field("model_repository_agents"),
                field="model_repository_agents",
            )


def _check_readable_by(
    folder: Path,
    user: tuple[int, int],
    sink: FindingSink,
    *,
    recurse: bool = True,
    extra: Sequence[Path] = (),
) -> None:
    """One warning naming what the pod's user cannot read (files) or enter (folders), with the
    chmod that fixes it: the pod reads the repository as another user, over NFS."""
    if not os.access(folder, os.R_OK | os.X_OK):
        return  # unreadable here too: an error already says so
    blocked: list[tuple[Path, int]] = []

    def check(path: Path, is_dir: bool) -> None:
        try:
            info = path.stat()
        except OSError:
            return  # missing or broken: reported elsewhere
        needed = (stat.S_IROTH | stat.S_IXOTH) if is_dir else stat.S_IROTH
        if not _grants(info, user, needed):
            blocked.append((path, stat.S_IMODE(info.st_mode)))

    check(folder, True)
    for path in extra:
        if path.exists():
            check(path, False)
    if recurse:
        for directory, subdirs, files in os.walk(folder):
            subdirs.sort()
            for name in subdirs:
                check(Path(directory, name), True)
            for name in sorted(files):
                check(Path(directory, name), False)
    if not blocked:
        return
    shown = ", ".join(
        f"{path.relative_to(folder) if path != folder else path}{'/' if path.is_dir() else ''} ({mode:04o})"
        for path, mode in blocked[:NAMED_FILES]
    )
    more = f" and {len(blocked) - NAMED_FILES} more" if len(blocked) > NAMED_FILES else ""
    if recurse:
        fix = f"chmod -R o+rX {folder}"
    else:
        fix = " && ".join(f"chmod o+{'rx' if path.is_dir() else 'r'} {path}" for path, _ in blocked)
    sink.warning(
        f"the pod runs as another user (uid {user[0]}, gid {user[1]}) and cannot read {shown}{more}: "
        f"Triton or the launcher fails on it in the cluster. Run `{fix}`",
        file=str(folder),
    )


def _grants(info: os.stat_result, user: tuple[int, int], others_bits: int) -> bool:
    """Whether the mode lets `user` (uid, gid) have the access `others_bits` stands for."""
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == user[0]:
        return mode & (others_bits << 6) == others_bits << 6
    if info.st_gid == user[1]:
        return mode & (others_bits << 3) == others_bits << 3
    return mode & others_bits == others_bits


def _validate_model(
    path: Path, sink: FindingSink, gpu_available: bool | None, models: set[str]
) -> configs.ParsedConfig | None:
    folder = layout.read_model_folder(path, sink)
    if not folder.readable:
        return None
    parsed = configs.read_config(folder.config, sink) if folder.config else None
    if folder.config is None and not _missing_config(folder, sink):
        return None
    if parsed is not None:
        _check_config(parsed, folder, sink, gpu_available)
    if not folder.versions:
        sink.error("no version folders (1, 2, ...): Triton has nothing to load", file=str(path))
        return parsed
    _check_version_files(folder, parsed, sink)
    return parsed


def _missing_config(folder: layout.ModelFolder, sink: FindingSink) -> bool:
    """Report the missing config; True when Triton can auto-complete it (so checks go on)."""
    inferable = any(
        (version / "model.onnx").exists() or (version / "model.plan").exists()
        for version in folder.versions.values()
    )
    if inferable:
        sink.warning(
            "no config.pbtxt: Triton will auto-complete one from the model; commit an explicit config for production",
            file=str(folder.path),
        )
    else:
        sink.error(
            "no config.pbtxt, and Triton cannot auto-complete this model's config; write one (see `tritonops repo gen-config`)",
            file=str(folder.path),
        )
    return inferable


def _check_config(
    parsed: configs.ParsedConfig, folder: layout.ModelFolder, sink: FindingSink, gpu_available: bool | None
) -> None:
    config = parsed.config
    where = {"file": str(parsed.path)}
    if config.name and config.name != folder.name:
        sink.error(
            f"name {config.name!r} does not match the folder {folder.name!r}; Triton refuses the model: rename one of them",
            line=parsed.line_of_field("name"),
            field="name",
            **where,
        )
    _check_platform(parsed, folder, sink)
    if config.max_batch_size < 0:
        sink.error(
            "max_batch_size must be >= 0",
            line=parsed.line_of_field("max_batch_size"),
            field="max_batch_size",
            **where,
        )
    _check_tensors(parsed, sink)
    _check_dynamic_batching(parsed, sink)
    _check_instance_groups(parsed, sink, gpu_available)
    _check_version_policy(parsed, folder, sink)
    _check_warmup(parsed, folder, sink)


def _check_platform(parsed: configs.ParsedConfig, folder: layout.ModelFolder, sink: FindingSink) -> None:
    config = parsed.config
    where = {"file": str(parsed.path)}
    if config.platform and config.platform not in configs.PLATFORM_BACKENDS:
        known = ", ".join(sorted(configs.PLATFORM_BACKENDS))
        sink.error(
            f"unknown platform {config.platform!r}; one of {known}",
            line=parsed.line_of_field("platform"),
            field="platform",
            **where,
        )
    elif (
        config.platform
        and config.backend
        and configs.PLATFORM_BACKENDS[config.platform] not in ("", config.backend)
    ):
        sink.error(
            f"platform {config.platform!r} runs on backend {configs.PLATFORM_BACKENDS[config.platform]!r}, not {config.backend!r}; drop one",
            line=parsed.line_of_field("backend"),
            field="backend",
            **where,
        )
    if not config.platform and not config.backend:
        if any((v / "model.onnx").exists() for v in folder.versions.values()):
            sink.warning(
                'neither platform nor backend is set; Triton infers onnxruntime from model.onnx: set `backend: "onnxruntime"`',
                field="platform",
                **where,
            )
        else:
            sink.error('set `platform` or `backend` (e.g. backend: "python")', field="platform", **where)


def _check_tensors(parsed: configs.ParsedConfig, sink: FindingSink) -> None:
    config = parsed.config
    where = {"file": str(parsed.path)}
    if not config.input and not config.output:
        if parsed.backend in configs.AUTO_COMPLETE_BACKENDS:
            sink.info("no inputs or outputs listed: Triton fills them from the model", **where)
        elif config.platform != "ensemble":
            sink.error(
                "no inputs or outputs: list every tensor the model takes and returns", field="input", **where
            )
        return
    for kind, tensors in (("input", config.input), ("output", config.output)):
        seen: set[str] = set()
        for tensor in tensors:
            line = parsed.line_of(f'"{tensor.name}"')
            at = {"line": line, "field": f"{kind}[{tensor.name}]", **where}
            if not tensor.name:
                sink.error(f"an {kind} has no name", **{**at, "field": kind})
            elif tensor.name in seen:
                sink.error(f"duplicate {kind} name {tensor.name!r}", **at)
            seen.add(tensor.name)
            if tensor.data_type == triton_client.data_type_value("TYPE_INVALID"):
                sink.error(f"{kind} {tensor.name!r}: data_type is missing (e.g. TYPE_FP32)", **at)
            dims = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
            if not tensor.dims and not tensor.HasField("reshape"):
                sink.error(
                    f"{kind} {tensor.name!r}: dims is missing; give the shape (without the batch dim when max_batch_size > 0)",
                    **at,
                )
            bad = [d for d in dims if d == 0 or d < -1]
            if bad:
                sink.error(
                    f"{kind} {tensor.name!r}: dims {list(tensor.dims)} holds {bad[0]}; use a positive size or -1 for variable",
                    **at,
                )


def _check_warmup(parsed: configs.ParsedConfig, folder: layout.ModelFolder, sink: FindingSink) -> None:
    """model_warmup samples Triton builds requests from while loading: a sample it cannot build or
    run fails the load (ARCHITECTURE.md behaviour 15). Each refusal below was seen on Triton 2.51."""
    config = parsed.config
    inputs = {tensor.name: tensor for tensor in config.input}
    limit = max(config.max_batch_size, 1)
    for sample in config.model_warmup:
        label = f"model_warmup {sample.name!r}"
        at = {
            "file": str(parsed.path),
            "line": parsed.line_of(f'"{sample.name}"'),
            "field": f"model_warmup[{sample.name}]",
        }
        if sample.batch_size > limit:
            sink.error(
                f"{label}: batch_size {sample.batch_size} is more than the model takes "
                f"(max_batch_size {config.max_batch_size}); the load fails: use batch_size "
                + ("1" if limit == 1 else f"1 to {limit}"),
                **at,
            )
        missing = [n for n, t in inputs.items() if n not in sample.inputs and not t.optional]
        if missing:
            sink.error(
                f"{label}: no data for input(s) {', '.join(missing)}; the load fails: give every input "
                "an entry (`tritonops repo gen-config --warmup` writes one per input)",
                **at,
            )
        for name, entry in sorted(sample.inputs.items()):
            _check_warmup_input(parsed, folder, sink, f"{label} input {name!r}", inputs.get(name), entry, at)


def _check_warmup_input(
    parsed: configs.ParsedConfig,
    folder: layout.ModelFolder,
    sink: FindingSink,
    label: str,
    tensor: Any,
    entry: Any,
    at: dict[str, Any],
) -> None:
    source = entry.WhichOneof("input_data_type")
    if source is None:
        sink.error(
            f"{label}: no data; the load fails: set zero_data: true, random_data: true or input_data_file",
            **at,
        )
    elif source == "input_data_file" and not (folder.path / "warmup" / entry.input_data_file).is_file():
        sink.error(
            f"{label}: input_data_file {entry.input_data_file!r} is not in {folder.path / 'warmup'}; "
            "the load fails: put the raw tensor file there",
            **at,
        )
    dims = list(entry.dims)
    if any(dim < 1 for dim in dims):
        sink.error(
            f"{label}: dims {dims} hold a variable size; the load fails: give every dim a size (Triton runs this exact shape)",
            **at,
        )
    if tensor is None:
        return  # not a config input (or the config leaves inputs to auto-complete)
    if entry.data_type != tensor.data_type:
        sink.error(
            f"{label}: data_type {triton_client.data_type_name(entry.data_type)} but the input is "
            f"{triton_client.data_type_name(tensor.data_type)}; the load fails",
            **at,
        )
    expected = list(tensor.dims)
    if len(dims) != len(expected) or any(
        want not in (-1, got) for want, got in zip(expected, dims, strict=False)
    ):
        batch = " (without the batch dim, as max_batch_size > 0)" if parsed.config.max_batch_size > 0 else ""
        sink.error(
            f"{label}: dims {dims} do not fit the input's dims {expected}{batch}; the load fails: "
            "give a size for each dim, equal where the input's dim is not -1",
            **at,
        )


def _check_dynamic_batching(parsed: configs.ParsedConfig, sink: FindingSink) -> None:
    config = parsed.config
    if not config.HasField("dynamic_batching"):
        return
    at = {
        "file": str(parsed.path),
        "line": parsed.line_of_field("dynamic_batching"),
        "field": "dynamic_batching",
    }
    batching = config.dynamic_batching
    if config.max_batch_size == 0:
        # Triton 2.51 loads such a model and simply never batches it.
        sink.warning(
            "dynamic_batching has no effect with max_batch_size 0: Triton will not batch; set max_batch_size > 0 and dims without the batch dim",
            **at,
        )
    for size in batching.preferred_batch_size:
        if size <= 0 or (config.max_batch_size > 0 and size > config.max_batch_size):
            sink.error(
                f"preferred_batch_size {size} must be between 1 and max_batch_size {config.max_batch_size}",
                **at,
            )
    if batching.max_queue_delay_microseconds > MAX_SANE_QUEUE_DELAY_US:
        sink.warning(
            f"max_queue_delay_microseconds {batching.max_queue_delay_microseconds} adds up to "
            f"{batching.max_queue_delay_microseconds / 1000:.0f} ms to every request; start near 100-1000",
            **at,
        )


def _check_instance_groups(
    parsed: configs.ParsedConfig, sink: FindingSink, gpu_available: bool | None
) -> None:
    for group in parsed.config.instance_group:
        kind = triton_client.ModelInstanceGroup.Kind.Name(group.kind)
        at = {
            "file": str(parsed.path),
            "line": parsed.line_of("KIND_") or parsed.line_of_field("instance_group"),
            "field": "instance_group",
        }
        if group.count < 0:
            sink.error(f"instance_group count {group.count} must be >= 1", **at)
        if kind == "KIND_CPU" and group.gpus:
            sink.error("instance_group KIND_CPU lists gpus; drop them or use KIND_GPU", **at)
        if kind == "KIND_GPU" and gpu_available is False:
            sink.error(
                "instance_group KIND_GPU on an environment without GPUs: the load fails; use KIND_CPU there",
                **at,
            )


def _check_version_policy(
    parsed: configs.ParsedConfig, folder: layout.ModelFolder, sink: FindingSink
) -> None:
    config = parsed.config
    if not config.HasField("version_policy"):
        return
    at = {"file": str(parsed.path), "line": parsed.line_of_field("version_policy"), "field": "version_policy"}
    policy = config.version_policy
    if policy.HasField("specific"):
        missing = [v for v in policy.specific.versions if v not in folder.versions]
        if not policy.specific.versions:
            sink.error("version_policy specific lists no versions", **at)
        if missing:
            sink.error(
                f"version_policy pins version(s) {missing} but the folder holds {sorted(folder.versions) or 'none'}",
                **at,
            )
    if policy.HasField("latest") and policy.latest.num_versions < 1:
        sink.error("version_policy latest num_versions must be >= 1", **at)


def _check_version_files(
    folder: layout.ModelFolder, parsed: configs.ParsedConfig | None, sink: FindingSink
) -> None:
    if parsed is not None and parsed.config.platform == "ensemble":
        return
    filename = parsed.model_filename if parsed is not None else None
    for number, version_path in folder.versions.items():
        candidates = [filename] if filename else ["model.onnx", "model.plan"]
        present = [
            name
            for name in candidates
            if (version_path / name).exists() or os.path.islink(version_path / name)
        ]
        if not present:
            empty = not any(version_path.iterdir())
            problem = "empty version folder" if empty else f"no {' or '.join(candidates)}"
            sink.error(
                f"{problem}: Triton fails to load version {number}; add {candidates[0]}",
                version=str(number),
                file=str(version_path),
            )
            continue
        if parsed is not None and parsed.backend == "onnxruntime":
            _compare_onnx(version_path / present[0], parsed, sink, str(number))


def _compare_onnx(model_file: Path, parsed: configs.ParsedConfig, sink: FindingSink, version: str) -> None:
    try:
        signature = signatures.onnx_signature(model_file)
    except signatures.SignatureError as error:
        sink.error(str(error), version=version, file=str(model_file))
        return
    config = parsed.config
    if not config.input and not config.output:
        return
    batching = config.max_batch_size > 0
    for kind, configured, actual in (
        ("input", config.input, signature.inputs),
        ("output", config.output, signature.outputs),
    ):
        names = [t.name for t in actual]
        for tensor in configured:
            at = {
                "file": str(parsed.path),
                "line": parsed.line_of(f'"{tensor.name}"'),
                "field": f"{kind}[{tensor.name}]",
                "version": version,
            }
            graph = next((t for t in actual if t.name == tensor.name), None)
            if graph is None:
                sink.error(
                    f"{kind} {tensor.name!r} is not in the model; the model's {kind}s are {names}", **at
                )
                continue
            configured_type = triton_client.data_type_name(tensor.data_type)
            if configured_type != graph.data_type:
                sink.error(
                    f"{kind} {tensor.name!r}: config says {configured_type}, the model says {graph.data_type}; set data_type: {graph.data_type}",
                    **at,
                )
            dims = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
            problem = compare_dims(graph.dims, dims, config.max_batch_size, exact=kind == "output")
            if problem:
                sink.error(f"{kind} {tensor.name!r}: {problem}", **at)
        if kind == "input":
            listed = {t.name for t in configured}
            for graph_tensor in actual:
                if graph_tensor.name not in listed:
                    sink.error(
                        f"model input {graph_tensor.name!r} ({graph_tensor.data_type} {graph_tensor.shape_text()}) is missing from the config; add it",
                        file=str(parsed.path),
                        field="input",
                        version=version,
                    )
    if (
        not batching
        and signature.inputs
        and all(t.dims and t.dims[0] == -1 for t in (*signature.inputs, *signature.outputs))
    ):
        sink.warning(
            "every tensor's first dim is variable, so the model can batch, but max_batch_size is 0: "
            "Triton will not batch; consider max_batch_size > 0 with dims without the batch dim",
            file=str(parsed.path),
            field="max_batch_size",
            version=version,
        )


def compare_dims(
    graph: Sequence[int], configured: Sequence[int], max_batch_size: int, *, exact: bool = False
) -> str | None:
    """Triton's batch reasoning: with max_batch_size > 0 the graph's first dim is the (variable)
    batch dim and the config lists the rest; with 0 the config lists the full shape. A fixed graph
    dim must be matched exactly; a variable one accepts any configured size for inputs, but only
    -1 for outputs (`exact`), as NVIDIA's ONNX Runtime backend compares them."""
    shown = f"config dims {list(configured)} (max_batch_size {max_batch_size}) vs model shape {list(graph)}"
    if max_batch_size > 0:
        if not graph or graph[0] != -1:
            return (
                f"{shown}: the model's first dim is fixed, so it cannot batch; set max_batch_size: 0 "
                f"and dims: {list(graph)}"
            )
        expected_rest = list(graph[1:])
        if len(configured) != len(expected_rest):
            return f"{shown}: with max_batch_size > 0 dims exclude the batch dim: set dims: {expected_rest}"
        compared = zip(expected_rest, configured, strict=True)
    else:
        if len(configured) != len(graph):
            hint = f"dims: {list(graph)}"
            if graph and graph[0] == -1:
                hint += f", or max_batch_size > 0 with dims: {list(graph[1:])}"
            return f"{shown}: with max_batch_size 0 dims are the full shape: set {hint}"
        compared = zip(graph, configured, strict=True)
    for position, (model_dim, config_dim) in enumerate(compared):
        if model_dim != -1 and model_dim != config_dim:
            return f"{shown}: dim {position} is {model_dim} in the model but {config_dim} in the config"
        if exact and model_dim == -1 and config_dim != -1:
            return f"{shown}: dim {position} is variable in the model, so the config must say -1, not {config_dim}"
    return None


def _check_ensemble(parsed: configs.ParsedConfig, root: Path, sink: FindingSink) -> None:
    config = parsed.config
    steps = config.ensemble_scheduling.step
    if not steps:
        sink.error("ensemble has no ensemble_scheduling steps", field="ensemble_scheduling")
        return
    available = {t.name for t in config.input}
    produced: set[str] = set()
    for index, step in enumerate(steps):
        at = {"field": f"ensemble_scheduling.step[{index}]", "line": parsed.line_of(f'"{step.model_name}"')}
        step_dir = root / step.model_name
        if not step.model_name or not step_dir.is_dir():
            sink.error(f"step {index} uses model {step.model_name!r}, which is not in the repository", **at)
            continue
        step_config = _quiet_config(step_dir / "config.pbtxt")
        step_inputs = {t.name for t in step_config.input} if step_config else None
        step_outputs = {t.name for t in step_config.output} if step_config else None
        for model_tensor, ensemble_tensor in step.input_map.items():
            if step_inputs is not None and model_tensor not in step_inputs:
                sink.error(
                    f"step {index}: {step.model_name!r} has no input {model_tensor!r} (it has {sorted(step_inputs)})",
                    **at,
                )
            if ensemble_tensor not in available and ensemble_tensor not in _all_step_outputs(steps):
                sink.error(
                    f"step {index}: input_map value {ensemble_tensor!r} is neither an ensemble input nor any step's output",
                    **at,
                )
        for model_tensor, ensemble_tensor in step.output_map.items():
            if step_outputs is not None and model_tensor not in step_outputs:
                sink.error(
                    f"step {index}: {step.model_name!r} has no output {model_tensor!r} (it has {sorted(step_outputs)})",
                    **at,
                )
            produced.add(ensemble_tensor)
    for output in config.output:
        if output.name not in produced:
            sink.error(
                f"ensemble output {output.name!r} is not produced by any step's output_map",
                field=f"output[{output.name}]",
                line=parsed.line_of(f'"{output.name}"'),
            )


def _all_step_outputs(steps: Sequence[object]) -> set[str]:
    return {value for step in steps for value in step.output_map.values()}  # type: ignore[attr-defined]


def _quiet_config(path: Path) -> triton_client.ModelConfig | None:
    """A step model's config for cross-checks; its own problems are reported with that model."""
    if not path.is_file():
        return None
    parsed = configs.read_config(path, FindingSink())
    return parsed.config if parsed else None
