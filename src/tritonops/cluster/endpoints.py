"""Every pod behind a Service, from its EndpointSlices: the replicas a promotion must address one by
one (a call sent to the Service itself reaches one pod it picks, ARCHITECTURE.md behaviour 6).

The Service's EndpointControllers write one or more `discovery.k8s.io/v1` EndpointSlices labelled
`kubernetes.io/service-name=<service>`; the replicas are the union of their endpoints. An endpoint
whose `conditions.ready` is true or unset (the API says consumers should read unknown as ready) is
addressed; a terminating one is left alone (its pod is going away); any other is reported as not
ready, so the caller can name the pods it did not reach. Ports are taken by name, as the chart's
Service names them (`http`, `grpc`), never by number. A dual-stack Service has an IPv4 and an IPv6
slice listing the same pods: IPv4 is addressed (slice names are random, their order says nothing);
`FQDN` slices (no pod IP) are skipped.

A promotion started with its Service (a first install, an Argo CD sync) finds no ready pod yet:
`discover(..., wait_s=N)` polls the slices for up to N seconds, saying who is not ready, until one is.

The only module that imports the `kubernetes` client; it translates its errors into ours here.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from tritonops import errors

log = logging.getLogger(__name__)

SERVICE_LABEL = "kubernetes.io/service-name"
# The chart's Service port names (charts/triton/templates/service.yaml).
HTTP_PORT = "http"
GRPC_PORT = "grpc"
DEFAULT_NAMESPACE = "default"
DEFAULT_KUBECONFIG = "~/.kube/config"
# Where the kubelet mounts a pod's ServiceAccount namespace (the in-cluster default namespace).
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
REQUEST_TIMEOUT_S = 15.0
# Why an RBAC refusal happened and what fixes it: the one permission discovery needs.
PERMISSION = 'list on endpointslices (apiGroups: ["discovery.k8s.io"])'
# While waiting for a ready endpoint: how often the slices are read, and how often an unchanged
# "not ready" line is repeated (a change is said at once).
POLL_S = 5.0
REPEAT_S = 30.0
# EndpointSlice address types: the one addressed first when a pod is in both, and the one skipped.
PREFERRED_ADDRESS_TYPE = "IPv4"
FQDN = "FQDN"


@dataclass(frozen=True)
class Endpoint:
    """One pod behind the Service: its name (the pod's, from targetRef) and its host:port pairs."""

    name: str
    http_address: str
    grpc_address: str | None


@dataclass(frozen=True)
class Discovery:
    """What the Service's EndpointSlices hold: the ready endpoints, sorted by name, and the names of
    the pods left out (not ready yet, or terminating)."""

    service: str
    namespace: str
    ready: tuple[Endpoint, ...]
    not_ready: tuple[str, ...] = ()
    terminating: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"Service {self.namespace}/{self.service}"


@dataclass(frozen=True)
class Connection:
    """How to reach the API: an explicit kubeconfig and/or context, else in-cluster when running in
    a pod, else $KUBECONFIG or ~/.kube/config with its current context."""

    kubeconfig: Path | None = None
    context: str | None = None


def discover(
    service: str,
    namespace: str | None = None,
    connection: Connection = Connection(),
    *,
    wait_s: float = 0.0,
    environ: Mapping[str, str] | None = None,
) -> Discovery:
    """The Service's pods from its EndpointSlices (all slices, all pages). With `wait_s`, the slices
    are read again every POLL_S seconds, for up to `wait_s` seconds, until an endpoint is ready (an
    absent slice and an API that fails for now are waited out too; a refusal is not). Raises when
    none is ready by then."""
    env = os.environ if environ is None else environ
    api, default_namespace = _api_client(connection, env)
    namespace = namespace or default_namespace
    deadline = time.monotonic() + wait_s
    said: tuple[str, float] | None = None
    try:
        while True:
            seen = _look(k8s.DiscoveryV1Api(api), service, namespace)
            if isinstance(seen, Discovery):
                return seen
            left = deadline - time.monotonic()
            if left <= 0:
                raise _gave_up(seen, wait_s)
            now = time.monotonic()
            if said is None or said[0] != seen.what or now - said[1] >= REPEAT_S:
                log.warning("%s; waiting up to %.0f s more for a ready endpoint", seen.what, left)
                said = (seen.what, now)
            time.sleep(min(POLL_S, left))
    finally:
        api.close()


@dataclass(frozen=True)
class _Miss:
    """A read of the slices that found no ready endpoint: the error it means, what it saw (a line
    for the wait's log), and the slices' pods when there were slices."""

    error: errors.TritonOpsError
    what: str
    found: Discovery | None = None


def _look(api: k8s.DiscoveryV1Api, service: str, namespace: str) -> Discovery | _Miss:
    """One read of the slices: the Discovery when an endpoint is ready, else what is missing."""
    where = f"Service {namespace}/{service}"
    selector = f"{SERVICE_LABEL}={service}"
    try:
        slices = list(_list_slices(api, namespace, selector))
    except errors.TemporaryError as error:
        return _Miss(error, f"{where}: {error}")
    if not slices:
        absent = errors.InputError(
            f"--service {service}: no EndpointSlice in namespace {namespace} has the label {selector}; "
            "check the Service's name and --namespace (kubectl get endpointslices -n "
            f"{namespace} -l {selector})"
        )
        return _Miss(absent, f"{where}: no EndpointSlice labelled {selector} yet")
    found = _join(service, namespace, slices)
    if found.ready:
        return found
    return _Miss(_none_ready(found), f"{where}: no ready endpoint yet ({_left_out(found)})", found)


def _none_ready(found: Discovery, waited_s: float = 0.0) -> errors.TemporaryError:
    if waited_s > 0:
        return errors.TemporaryError(
            f"{found.where}: no ready endpoint after waiting {waited_s:g} s (--wait-for-ready) "
            f"({_left_out(found)}); nothing was changed; see why its pods are not Ready "
            f"(kubectl get pods -n {found.namespace}; kubectl describe pod POD)"
        )
    return errors.TemporaryError(
        f"{found.where}: no ready endpoint ({_left_out(found)}); nothing was changed; wait for its pods "
        f"to become Ready (kubectl get pods -n {found.namespace}), or give --wait-for-ready SECONDS"
    )


def _left_out(found: Discovery) -> str:
    return (
        f"not ready: {', '.join(found.not_ready) or 'none'}; "
        f"terminating: {', '.join(found.terminating) or 'none'}"
    )


def _gave_up(miss: _Miss, wait_s: float) -> errors.TritonOpsError:
    """The error a miss means once the wait is over (its type, so its exit code, unchanged)."""
    if wait_s <= 0:
        return miss.error
    if miss.found is not None:
        return _none_ready(miss.found, wait_s)
    return type(miss.error)(
        f"{miss.error}; still so after waiting {wait_s:g} s (--wait-for-ready); nothing was changed"
    )


def _api_client(connection: Connection, env: Mapping[str, str]) -> tuple[k8s.ApiClient, str]:
    """A client and the default namespace. An explicit --kubeconfig/--context wins over in-cluster."""
    configuration = k8s.Configuration()
    explicit = connection.kubeconfig is not None or connection.context is not None
    if env.get("KUBERNETES_SERVICE_HOST") and not explicit:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except ConfigException as error:
            raise errors.InputError(
                f"in-cluster Kubernetes config: {error}; is a ServiceAccount token mounted? "
                "(or give --kubeconfig)"
            ) from error
        return _client(configuration), _pod_namespace()
    path = str(connection.kubeconfig or env.get("KUBECONFIG") or DEFAULT_KUBECONFIG)
    files = [Path(item).expanduser() for item in path.split(os.pathsep) if item]
    for file in files:
        _check_kubeconfig(file)
    if not any(file.is_file() for file in files):
        raise errors.InputError(
            f"kubeconfig {path}: no such file; give --kubeconfig FILE or set KUBECONFIG (or run in a pod)"
        )
    try:
        k8s_config.load_kube_config(
            config_file=path,
            context=connection.context,
            client_configuration=configuration,
            persist_config=False,
        )
        contexts, active = k8s_config.list_kube_config_contexts(config_file=path)
    except (ConfigException, ValueError, OSError, yaml.YAMLError) as error:
        raise errors.InputError(f"{_where(path, connection)}: {error}") from error
    except (TypeError, AttributeError) as error:
        # The client reads the documents with few checks: a field of the wrong type (`clusters: 5`)
        # surfaces as one of these from inside it.
        raise errors.InputError(
            f"{_where(path, connection)}: a field has the wrong type ({error}); fix it, or give another "
            "with --kubeconfig FILE (kubectl config view reads it)"
        ) from error
    chosen = next((c for c in contexts if c.get("name") == connection.context), active) or {}
    namespace = (chosen.get("context") or {}).get("namespace") or DEFAULT_NAMESPACE
    return _client(configuration), namespace


def _where(path: str, connection: Connection) -> str:
    return f"kubeconfig {path}" + (f", context {connection.context}" if connection.context else "")


def _check_kubeconfig(file: Path) -> None:
    """One file of the kubeconfig path: a directory, unreadable YAML or a document that is not a
    mapping is named here, in one line, rather than as a traceback from inside the client."""
    if file.is_dir():
        raise errors.InputError(
            f"kubeconfig {file}: is a directory; give the kubeconfig file itself (e.g. {file / 'config'}) "
            "with --kubeconfig FILE or KUBECONFIG"
        )
    if not file.is_file():
        return  # a path list may name absent files; the client skips them, and so do we
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise errors.InputError(f"kubeconfig {file}: cannot be read ({error})") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise errors.InputError(
            f"kubeconfig {file}: not valid YAML{line} ({problem}); fix the file, or give another "
            "with --kubeconfig FILE (kubectl config view checks it)"
        ) from error
    if document is not None and not isinstance(document, dict):
        raise errors.InputError(
            f"kubeconfig {file}: holds a {_yaml_kind(document)}, not a kubeconfig (a mapping with "
            "apiVersion, clusters, users, contexts); give the right file with --kubeconfig FILE"
        )


def _yaml_kind(document: object) -> str:
    if isinstance(document, list):
        return "YAML list"
    if isinstance(document, str):
        return "bare string"
    return type(document).__name__


def _client(configuration: k8s.Configuration) -> k8s.ApiClient:
    # One try: a promotion's caller decides whether to retry, and an unreachable API says so at once.
    configuration.retries = 0
    return k8s.ApiClient(configuration)


def _pod_namespace() -> str:
    try:
        return POD_NAMESPACE_FILE.read_text(encoding="utf-8").strip() or DEFAULT_NAMESPACE
    except OSError:
        return DEFAULT_NAMESPACE


def _list_slices(api: k8s.DiscoveryV1Api, namespace: str, selector: str) -> Iterator[Any]:
    """Every slice, following the list's continue token (the API may page a long list)."""
    token: str | None = None
    while True:
        try:
            page = api.list_namespaced_endpoint_slice(
                namespace, label_selector=selector, _continue=token, _request_timeout=REQUEST_TIMEOUT_S
            )
        except ApiException as error:
            raise _api_error(error, namespace, api.api_client.configuration.host) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            host = api.api_client.configuration.host
            raise errors.TemporaryError(
                f"the Kubernetes API at {host} did not answer ({_reason(error)}); check the kubeconfig's "
                "server and your network (kubectl cluster-info)"
            ) from error
        yield from page.items or ()
        token = page.metadata._continue if page.metadata else None
        if not token:
            return


def _api_error(error: ApiException, namespace: str, host: str) -> errors.TritonOpsError:
    status = error.status
    if status == 403:
        return errors.InputError(
            f"the Kubernetes API refused to list EndpointSlices in namespace {namespace} (403 Forbidden): "
            f"your credentials need {PERMISSION} in that namespace (a Role with verbs get, list, watch; "
            f"check with kubectl auth can-i list endpointslices.discovery.k8s.io -n {namespace})"
        )
    if status == 401:
        return errors.InputError(
            f"the Kubernetes API at {host} refused the credentials (401 Unauthorized): renew the "
            "kubeconfig's token or certificate"
        )
    if status == 404:
        return errors.InputError(
            f"the Kubernetes API at {host} has no discovery.k8s.io/v1 EndpointSlices (404): Kubernetes "
            "1.21 or later is needed"
        )
    if status is not None and status >= 500:
        return errors.TemporaryError(
            f"the Kubernetes API at {host} failed to list EndpointSlices ({status} {error.reason})"
        )
    return errors.InputError(
        f"the Kubernetes API at {host} refused to list EndpointSlices in namespace {namespace} "
        f"({status} {error.reason})"
    )


def _reason(error: BaseException) -> str:
    # urllib3 wraps the socket error (MaxRetryError.reason); its own text repeats the whole URL.
    reason = getattr(error, "reason", None)
    return str(reason or error).split(": ", 1)[-1]


def _join(service: str, namespace: str, slices: Iterable[Any]) -> Discovery:
    """The union of every slice's endpoints; a pod listed twice (dual-stack, or slices mid-update)
    counts once, ready first, at its IPv4 address when it has one. FQDN slices are skipped."""
    ready: dict[str, Endpoint] = {}
    not_ready: set[str] = set()
    terminating: set[str] = set()
    addressed = [item for item in slices if item.address_type != FQDN]
    # IPv4 slices first (a stable sort): a pod in both families is addressed at its IPv4 address,
    # whatever order the API lists the slices in (their names end in random characters).
    for item in sorted(addressed, key=lambda item: item.address_type != PREFERRED_ADDRESS_TYPE):
        ports = {port.name or "": port.port for port in item.ports or () if port.port is not None}
        slice_name = item.metadata.name if item.metadata else "?"
        for endpoint in item.endpoints or ():
            name = _pod_name(endpoint)
            conditions = endpoint.conditions
            if conditions is not None and conditions.terminating:
                terminating.add(name)
            elif conditions is not None and conditions.ready is False:
                not_ready.add(name)
            elif name not in ready:
                ready[name] = _endpoint(name, endpoint.addresses[0], ports, slice_name, service, namespace)
    return Discovery(
        service,
        namespace,
        tuple(sorted(ready.values(), key=lambda endpoint: endpoint.name)),
        tuple(sorted(not_ready - set(ready))),
        tuple(sorted(terminating - set(ready) - not_ready)),
    )


def _pod_name(endpoint: Any) -> str:
    reference = endpoint.target_ref
    if reference is not None and reference.name:
        return str(reference.name)
    return str(endpoint.addresses[0])


def _endpoint(
    name: str, address: str, ports: Mapping[str, int], slice_name: str, service: str, namespace: str
) -> Endpoint:
    if HTTP_PORT not in ports:
        named = ", ".join(f"{key or '(unnamed)'}={value}" for key, value in sorted(ports.items())) or "none"
        raise errors.InputError(
            f"Service {namespace}/{service}: EndpointSlice {slice_name} has no port named {HTTP_PORT!r} "
            f"(its ports: {named}); is this the chart's Service?"
        )
    host = f"[{address}]" if ":" in address else address
    grpc = f"{host}:{ports[GRPC_PORT]}" if GRPC_PORT in ports else None
    return Endpoint(name, f"{host}:{ports[HTTP_PORT]}", grpc)
