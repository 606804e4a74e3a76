"""`cluster.endpoints.discover` lists a Service's pods from its EndpointSlices, through the real
`kubernetes` client talking to a fake API server (no cluster runs here)."""

from __future__ import annotations

import socket
import urllib.parse
from pathlib import Path

import pytest

from tests.cluster.fake_apiserver import TOKEN, endpoint_slice, pod_endpoint, write_kubeconfig
from tritonops import errors
from tritonops.cluster import endpoints
from tritonops.cluster.endpoints import Connection, Endpoint


def test_two_slices_are_joined_and_sorted_by_pod(fake_api, kubeconfig):
    fake_api.slices["ml"] = [
        endpoint_slice("triton-b", "triton", [pod_endpoint("triton-2", "10.0.0.12")]),
        endpoint_slice(
            "triton-a",
            "triton",
            [pod_endpoint("triton-1", "10.0.0.11"), pod_endpoint("triton-0", "10.0.0.10")],
        ),
        endpoint_slice("other", "other", [pod_endpoint("other-0", "10.0.0.99")]),
    ]
    found = endpoints.discover("triton")
    assert found.ready == (
        Endpoint("triton-0", "10.0.0.10:8000", "10.0.0.10:8001"),
        Endpoint("triton-1", "10.0.0.11:8000", "10.0.0.11:8001"),
        Endpoint("triton-2", "10.0.0.12:8000", "10.0.0.12:8001"),
    )
    assert (found.namespace, found.not_ready, found.terminating) == ("ml", (), ())
    # The selector is the Service's label, in the kubeconfig context's namespace, with its token.
    path, _, query = fake_api.requests[0].partition("?")
    assert path == "/apis/discovery.k8s.io/v1/namespaces/ml/endpointslices" and len(fake_api.requests) == 1
    assert urllib.parse.parse_qs(query) == {"labelSelector": ["kubernetes.io/service-name=triton"]}
    assert fake_api.authorizations == [f"Bearer {TOKEN}"]


def test_every_page_of_a_long_list_is_read(fake_api, kubeconfig):
    fake_api.page_size = 1
    fake_api.slices["ml"] = [
        endpoint_slice(f"triton-{i}", "triton", [pod_endpoint(f"triton-{i}", f"10.0.0.{i}")])
        for i in range(3)
    ]
    found = endpoints.discover("triton")
    assert [endpoint.name for endpoint in found.ready] == ["triton-0", "triton-1", "triton-2"]
    assert len(fake_api.requests) == 3 and "continue=2" in fake_api.requests[-1]


def test_not_ready_and_terminating_endpoints_are_left_out_and_named(fake_api, kubeconfig):
    fake_api.slices["ml"] = [
        endpoint_slice(
            "triton-a",
            "triton",
            [
                pod_endpoint("triton-0", "10.0.0.10", ready=True, serving=True),
                pod_endpoint("triton-1", "10.0.0.11", ready=None),  # unknown reads as ready
                pod_endpoint("triton-2", "10.0.0.12", ready=False, serving=True),
                pod_endpoint("triton-3", "10.0.0.13", ready=False, serving=False),
                pod_endpoint("triton-4", "10.0.0.14", ready=False, serving=True, terminating=True),
            ],
        )
    ]
    found = endpoints.discover("triton")
    assert [endpoint.name for endpoint in found.ready] == ["triton-0", "triton-1"]
    assert found.not_ready == ("triton-2", "triton-3")
    assert found.terminating == ("triton-4",)


def test_a_pod_in_two_slices_counts_once_ready_first(fake_api, kubeconfig):
    # Slices are rewritten one by one: a pod can show in an old slice (not ready) and a new one.
    fake_api.slices["ml"] = [
        endpoint_slice("old", "triton", [pod_endpoint("triton-0", "10.0.0.10", ready=False)]),
        endpoint_slice("new", "triton", [pod_endpoint("triton-0", "10.0.0.10")]),
    ]
    found = endpoints.discover("triton")
    assert [endpoint.name for endpoint in found.ready] == ["triton-0"] and found.not_ready == ()


def test_ports_are_taken_by_name_not_by_position(fake_api, kubeconfig):
    ports = (("metrics", 9102), ("grpc", 9001), ("http", 9000))
    fake_api.slices["ml"] = [
        endpoint_slice("triton-a", "triton", [pod_endpoint("triton-0", "10.0.0.10")], ports=ports)
    ]
    assert endpoints.discover("triton").ready == (Endpoint("triton-0", "10.0.0.10:9000", "10.0.0.10:9001"),)


def test_a_slice_without_the_http_port_is_refused_naming_its_ports(fake_api, kubeconfig):
    fake_api.slices["ml"] = [
        endpoint_slice("web-a", "web", [pod_endpoint("web-0", "10.0.0.10")], ports=(("", 80),))
    ]
    with pytest.raises(errors.InputError) as caught:
        endpoints.discover("web")
    assert "EndpointSlice web-a has no port named 'http' (its ports: (unnamed)=80)" in str(caught.value)


def test_ipv6_addresses_are_bracketed(fake_api, kubeconfig):
    fake_api.slices["ml"] = [
        endpoint_slice("triton-v6", "triton", [pod_endpoint("triton-0", "fd00::a")], address_type="IPv6")
    ]
    assert endpoints.discover("triton").ready == (Endpoint("triton-0", "[fd00::a]:8000", "[fd00::a]:8001"),)


@pytest.mark.parametrize(
    "v6_first", [True, False], ids=["ipv6-slice-listed-first", "ipv4-slice-listed-first"]
)
def test_a_dual_stack_pod_is_addressed_at_its_ipv4_address(fake_api, kubeconfig, v6_first):
    # A dual-stack Service has one slice per family, both listing every pod; their names end in
    # random characters, so the order the API lists them in says nothing.
    v4 = endpoint_slice("triton-x7k2p", "triton", [pod_endpoint("triton-0", "10.0.0.10")])
    v6 = endpoint_slice("triton-a9q4m", "triton", [pod_endpoint("triton-0", "fd00::a")], address_type="IPv6")
    fake_api.slices["ml"] = [v6, v4] if v6_first else [v4, v6]
    assert endpoints.discover("triton").ready == (Endpoint("triton-0", "10.0.0.10:8000", "10.0.0.10:8001"),)


def test_fqdn_slices_are_skipped(fake_api, kubeconfig):
    fqdn = endpoint_slice(
        "triton-fqdn", "triton", [pod_endpoint("triton-9", "triton.example.com")], address_type="FQDN"
    )
    v4 = endpoint_slice("triton-v4", "triton", [pod_endpoint("triton-0", "10.0.0.10")])
    fake_api.slices["ml"] = [fqdn, v4]
    assert [endpoint.name for endpoint in endpoints.discover("triton").ready] == ["triton-0"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo: [\n", "not valid YAML at line 2 (expected the node content, but found '<stream end>')"),
        ("- a\n- b\n", "holds a YAML list, not a kubeconfig (a mapping with apiVersion, clusters"),
        ("hello\n", "holds a bare string, not a kubeconfig (a mapping with apiVersion, clusters"),
        (
            "clusters: 5\ncontexts: []\nusers: []\ncurrent-context: x\n",
            "a field has the wrong type ('int' object is not iterable); fix it",
        ),
    ],
    ids=["bad-yaml", "a-list", "a-string", "a-field-of-the-wrong-type"],
)
def test_a_malformed_kubeconfig_is_one_line_naming_the_file(run_cli, tmp_path, monkeypatch, text, message):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    path = tmp_path / "kubeconfig"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(errors.InputError) as caught:
        endpoints.discover("triton", connection=Connection(kubeconfig=path))
    assert str(caught.value).startswith(f"kubeconfig {path}"), str(caught.value)
    assert message in str(caught.value)
    # Through the CLI: exit 2 and that one line, as from $KUBECONFIG too.
    monkeypatch.setenv("KUBECONFIG", str(path))
    result = run_cli("status", "--service", "triton", "--repository", str(tmp_path))
    assert result.returncode == 2 and result.stderr.startswith(f"tritonops: kubeconfig {path}")
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_a_directory_given_as_the_kubeconfig_is_named_as_one(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(errors.InputError) as caught:
        endpoints.discover("triton", connection=Connection(kubeconfig=tmp_path))
    assert str(caught.value).startswith(
        f"kubeconfig {tmp_path}: is a directory; give the kubeconfig file itself (e.g. {tmp_path / 'config'})"
    )


def test_no_slice_names_the_namespace_and_selector(fake_api, kubeconfig):
    with pytest.raises(errors.InputError) as caught:
        endpoints.discover("tritn", namespace="prod")
    message = str(caught.value)
    assert "no EndpointSlice in namespace prod has the label kubernetes.io/service-name=tritn" in message
    assert fake_api.requests[0].startswith("/apis/discovery.k8s.io/v1/namespaces/prod/")


def test_no_ready_endpoint_is_a_temporary_error_naming_the_pods(fake_api, kubeconfig):
    fake_api.slices["ml"] = [
        endpoint_slice(
            "triton-a",
            "triton",
            [
                pod_endpoint("triton-0", "10.0.0.10", ready=False),
                pod_endpoint("triton-1", "10.0.0.11", ready=False, terminating=True),
            ],
        )
    ]
    with pytest.raises(errors.TemporaryError) as caught:
        endpoints.discover("triton")
    assert "Service ml/triton: no ready endpoint (not ready: triton-0; terminating: triton-1)" in str(
        caught.value
    )


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [
        (
            403,
            errors.InputError,
            'need list on endpointslices (apiGroups: ["discovery.k8s.io"]) in that namespace',
        ),
        (404, errors.InputError, "has no discovery.k8s.io/v1 EndpointSlices (404)"),
        (500, errors.TemporaryError, "failed to list EndpointSlices (500"),
    ],
    ids=["forbidden", "no-api", "server-error"],
)
def test_an_api_refusal_says_what_is_missing(fake_api, kubeconfig, status, kind, words):
    fake_api.fail_with = status
    with pytest.raises(kind) as caught:
        endpoints.discover("triton")
    assert words in str(caught.value)


def test_an_unreachable_api_is_a_temporary_error_naming_the_server(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(errors.TemporaryError) as caught:
        endpoints.discover("triton", connection=Connection(kubeconfig=path))
    assert f"the Kubernetes API at http://127.0.0.1:{port} did not answer" in str(caught.value)


def test_a_missing_kubeconfig_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope"))
    with pytest.raises(errors.InputError) as caught:
        endpoints.discover("triton")
    assert f"kubeconfig {tmp_path / 'nope'}: no such file" in str(caught.value)


def test_an_unknown_context_is_named(fake_api, kubeconfig):
    with pytest.raises(errors.InputError) as caught:
        endpoints.discover("triton", connection=Connection(context="prod"))
    assert f"kubeconfig {kubeconfig}, context prod:" in str(caught.value)


def test_an_explicit_kubeconfig_wins_over_in_cluster(fake_api, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")  # as in a pod; no token mounted here
    path = write_kubeconfig(tmp_path / "kubeconfig", fake_api.url)
    fake_api.slices["default"] = [endpoint_slice("t", "triton", [pod_endpoint("triton-0", "10.0.0.10")])]
    found = endpoints.discover("triton", connection=Connection(kubeconfig=path))
    assert found.namespace == "default" and [e.name for e in found.ready] == ["triton-0"]


def test_in_cluster_without_a_token_says_so(monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(errors.InputError) as caught:
        endpoints.discover("triton")
    assert "in-cluster Kubernetes config:" in str(caught.value)
    assert "is a ServiceAccount token mounted?" in str(caught.value)


def test_the_kubeconfig_path_list_in_kubeconfig_is_honoured(fake_api, tmp_path, monkeypatch):
    path = write_kubeconfig(tmp_path / "kubeconfig", fake_api.url, namespace="ml")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'absent'}:{path}")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    fake_api.slices["ml"] = [endpoint_slice("t", "triton", [pod_endpoint("triton-0", "10.0.0.10")])]
    assert [e.name for e in endpoints.discover("triton").ready] == ["triton-0"]


def test_discovery_needs_no_cluster_module_outside_cluster():
    # The package root stays light: the kubernetes client loads only with cluster.endpoints.
    source = (Path(endpoints.__file__).parent / "__init__.py").read_text(encoding="utf-8")
    assert "import" not in source.split('"""')[-1]
