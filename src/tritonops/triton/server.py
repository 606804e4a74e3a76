"""The one place that knows how to run the nvidia-pytriton wheel's `tritonserver` (Triton 2.51) here.

The wheel ships the server, the Python backend and one stub per Python version, but no ONNX Runtime
backend. `assemble_backends` builds a backends folder Triton can use:

    <work>/backends/python -> <wheel>/backends/python        symlink: libtriton_python.so finds its
                                                              bundled libraries through $ORIGIN
    <work>/backends/onnxruntime/model.py                      tritonops' Python-based ORT backend
    <work>/backends/onnxruntime/triton_python_backend_stub -> <wheel>/python_backend_stubs/3.X/...
    <work>/backends/onnxruntime/triton_python_backend_utils.py -> <wheel>/backends/python/...

With the stub and utils next to model.py, the Python backend runs the `onnxruntime` backend's stubs
from that folder (python_be.cc, TRITONBACKEND_Initialize). Plain `backend: "python"` models need the
stub in `backends/python` itself; it is linked into the wheel's folder when that folder is writable.

The stub embeds the system's libpython 3.X and ignores PYTHONPATH. It takes its prefix from the first
`python3` on PATH (what pytriton relies on), so `environment()` puts this interpreter's scripts folder
(the venv's bin) first on PATH: every stub then sees the venv's site-packages. It also puts those
site-packages on PYTHONPATH, which our model.py adds to sys.path itself when PATH points elsewhere.

On a machine without a GPU the server logs `Failed to initialize NVML`, `DCGM unable to start` and
`CudaDriverHelper has not been initialized`: harmless, it carries on on the CPU.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

from tritonops import errors

LOG = logging.getLogger(__name__)

STUB_NAME = "triton_python_backend_stub"
UTILS_NAME = "triton_python_backend_utils.py"
LOOPBACK = "127.0.0.1"
POLL_INTERVAL_S = 0.1
LOG_TAIL_LINES = 40
# A server that missed its start deadline may be stuck loading models: it gets little time to exit.
FAILED_START_GRACE_S = 5.0


def wheel_root() -> Path:
    """`<site-packages>/pytriton/tritonserver`, found without importing pytriton."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise errors.ServerError("nvidia-pytriton is not installed: it ships the tritonserver binary")
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not root.is_dir():
        raise errors.ServerError(f"nvidia-pytriton has no tritonserver folder at {root}")
    return root


def binary() -> Path:
    """The wheel's `tritonserver` executable."""
    path = wheel_root() / "bin" / "tritonserver"
    if not path.is_file():
        raise errors.ServerError(f"tritonserver binary missing at {path}")
    return path


def python_stub() -> Path:
    """The Python backend stub built for the running interpreter's version."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    path = wheel_root() / "python_backend_stubs" / version / STUB_NAME
    if not path.is_file():
        raise errors.ServerError(f"nvidia-pytriton has no Python backend stub for Python {version} at {path}")
    return path


def site_packages() -> list[str]:
    """This interpreter's site-packages folders (the venv's), where numpy and onnxruntime live."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def search_path_additions() -> dict[str, list[str]]:
    """All the local server needs on top of the environment it starts in, as entries to put first:

    - PATH: this interpreter's scripts folder (the venv's bin), because the Python backend stub takes
      its prefix from the first `python3` on PATH;
    - PYTHONPATH: this interpreter's site-packages, where numpy and onnxruntime live for model.py.

    The backends folder reaches the server as `--backend-directory`, so no LD_LIBRARY_PATH is needed.
    """
    return {"PATH": [sysconfig.get_path("scripts")], "PYTHONPATH": site_packages()}


def environment(
    base: dict[str, str] | None = None, additions: dict[str, list[str]] | None = None
) -> dict[str, str]:
    """The server's environment: `base` (default os.environ) with `additions` (default
    `search_path_additions()`) put first on their search paths."""
    env = dict(os.environ if base is None else base)
    for name, entries in (search_path_additions() if additions is None else additions).items():
        env[name] = _prepend(list(entries), env.get(name, os.defpath if name == "PATH" else ""))
    return env


def _prepend(entries: list[str], search_path: str) -> str:
    existing = [entry for entry in search_path.split(os.pathsep) if entry]
    return os.pathsep.join(dict.fromkeys([*entries, *existing]))


def backend_source() -> Path:
    """Our Python-based ONNX Runtime backend, as shipped in the package."""
    resource = importlib.resources.files("tritonops.triton.backends.onnxruntime") / "model.py"
    return Path(str(resource))


def assemble_backends(work_dir: Path) -> Path:
    """Build (or refresh) `<work_dir>/backends` for `--backend-directory`; returns that folder."""
    backends = Path(work_dir) / "backends"
    onnxruntime = backends / "onnxruntime"
    onnxruntime.mkdir(parents=True, exist_ok=True)
    wheel_python = wheel_root() / "backends" / "python"
    stub = python_stub()
    _link(backends / "python", wheel_python)
    _link(onnxruntime / STUB_NAME, stub)
    _link(onnxruntime / UTILS_NAME, wheel_python / UTILS_NAME)
    _copy(backend_source(), onnxruntime / "model.py")
    _link_wheel_stub(wheel_python, stub)
    LOG.debug("assembled Triton backends in %s", backends)
    return backends


def _link(link: Path, target: Path) -> None:
    """Point `link` at `target`, replacing whatever was there, atomically."""
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    temporary = link.with_name(f".{link.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    temporary.symlink_to(target)
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    temporary.replace(link)


def _copy(source: Path, destination: Path) -> None:
    """Copy via a temporary file, so a stub starting meanwhile never reads half a model.py."""
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}")
    shutil.copyfile(source, temporary)
    temporary.replace(destination)


def _link_wheel_stub(wheel_python: Path, stub: Path) -> None:
    """Give plain `backend: "python"` models their stub (RUNTIME.md); best effort, never fatal."""
    link = wheel_python / STUB_NAME
    if link.exists():
        return
    try:
        _link(link, Path(os.path.relpath(stub, wheel_python)))
    except OSError as error:
        LOG.warning(
            "cannot link the Python backend stub into %s (%s): plain python models will not load", link, error
        )


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on the loopback now (Triton cannot bind port 0 and report it)."""
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)
        ]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def command(
    repository: Path,
    *,
    backend_directory: Path,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    address: str = LOOPBACK,
    model_control_mode: str = "explicit",
    load_models: Iterable[str] = (),
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The tritonserver command line; `extra_args` come last so they can override ours."""
    args = [
        str(binary()),
        f"--model-repository={repository}",
        f"--backend-directory={backend_directory}",
        f"--http-address={address}",
        f"--http-port={http_port}",
        f"--grpc-address={address}",
        f"--grpc-port={grpc_port}",
        f"--metrics-address={address}",
        f"--metrics-port={metrics_port}",
        f"--model-control-mode={model_control_mode}",
    ]
    if model_control_mode == "explicit":
        args += [f"--load-model={name}" for name in load_models]
    return [*args, *extra_args]


class Server:
    """A running tritonserver process and its own process group; stop() leaves nothing behind."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        *,
        log_path: Path,
        http_port: int,
        grpc_port: int,
        metrics_port: int,
        address: str = LOOPBACK,
    ) -> None:
        self.process = process
        self.log_path = log_path
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.metrics_port = metrics_port
        self.address = address

    @property
    def url(self) -> str:
        """Base URL of the HTTP (KServe v2) endpoint."""
        return f"http://{self.address}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """host:port of the gRPC endpoint."""
        return f"{self.address}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """The Prometheus metrics page."""
        return f"http://{self.address}:{self.metrics_port}/metrics"

    @property
    def running(self) -> bool:
        """Whether the server process has not exited (checked without reaping it)."""
        return self.process.returncode is None and not _exited(self.process.pid, 0.0)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the server's log."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - 64 * 1024))
                text = log.read().decode("utf-8", errors="replace")
        except OSError as error:
            return f"(log unreadable: {error})"
        return "\n".join(text.splitlines()[-lines:])

    def wait_live(self, timeout_s: float) -> None:
        """Block until /v2/health/live answers 200; ServerError if the process exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.running:
                code = self.stop()
                raise self._failure(f"tritonserver exited with code {code} before it was live")
            if _answers(f"{self.url}/v2/health/live"):
                LOG.info("tritonserver live at %s (pid %d)", self.url, self.process.pid)
                return
            if time.monotonic() >= deadline:
                self.stop(grace_s=FAILED_START_GRACE_S)
                raise self._failure(f"tritonserver was not live at {self.url} within {timeout_s:g} s")
            time.sleep(POLL_INTERVAL_S)

    def stop(self, grace_s: float = 35.0) -> int:
        """SIGTERM the server, give it `grace_s` to unload models, then SIGKILL its whole process group."""
        if self.process.returncode is not None:
            return self.process.returncode  # reaped already: its group id may belong to someone else now
        if self.running:
            # Only the server: it stops its own stubs while unloading; a group-wide TERM races that.
            self.process.send_signal(signal.SIGTERM)
            if not _exited(self.process.pid, grace_s):
                LOG.warning(
                    "tritonserver pid %d ignored SIGTERM for %g s; killing it", self.process.pid, grace_s
                )
        # The unreaped server keeps the group id alive, so this reaches only its leftovers (stubs).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()

    def _failure(self, what: str) -> errors.ServerError:
        return errors.ServerError(f"{what}; last lines of {self.log_path}:\n{self.log_tail()}")

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


# Calls to local servers go straight to them: an http_proxy in the environment must not intercept
# loopback. Every HTTP call tritonops makes to a local process (health, probes, metrics) uses this.
LOOPBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _answers(url: str) -> bool:
    try:
        with LOOPBACK_OPENER.open(url, timeout=1.0) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _exited(pid: int, timeout_s: float) -> bool:
    """Wait for `pid` to exit without reaping it (WNOWAIT), so its group id cannot be reused meanwhile."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL_S)


def start(
    repository: Path,
    *,
    log_path: Path,
    http_port: int | None = None,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    backend_directory: Path | None = None,
    address: str = LOOPBACK,
    model_control_mode: str = "explicit",
    load_models: Iterable[str] = (),
    extra_args: Sequence[str] = (),
    timeout_s: float = 120.0,
) -> Server:
    """Launch tritonserver on `repository` and return it once /v2/health/live answers.

    Without `backend_directory`, backends are assembled next to the log. In explicit mode the HTTP
    endpoint opens only after the `load_models` have loaded, so `timeout_s` must cover that loading.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if http_port is None or grpc_port is None or metrics_port is None:
        # Ports not given: three free ones on the loopback now.
        free = iter(free_ports(3))
        http_port, grpc_port, metrics_port = (
            port if port is not None else next(free) for port in (http_port, grpc_port, metrics_port)
        )
    backends = backend_directory or assemble_backends(log_path.parent)
    args = command(
        Path(repository).resolve(),
        backend_directory=backends,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        address=address,
        model_control_mode=model_control_mode,
        load_models=load_models,
        extra_args=extra_args,
    )
    LOG.info("starting %s", " ".join(args))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment(),
            start_new_session=True,
        )
    server = Server(
        process,
        log_path=log_path,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        address=address,
    )
    try:
        server.wait_live(timeout_s)
    except BaseException:
        server.stop(grace_s=FAILED_START_GRACE_S)
        raise
    return server
