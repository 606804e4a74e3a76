"""Replicas from an endpoint list, and the restricted-API key from a file or the environment."""

from __future__ import annotations

import pytest

from tritonops import errors
from tritonops.promotion import replicas


def test_endpoints_become_replicas_with_their_grpc_address():
    found = replicas.from_endpoints("http://10.0.0.5:8000?grpc=8001, 10.0.0.6:8000,http://h:8000?grpc=g:9001")
    assert found == (
        replicas.Replica("10.0.0.5:8000", "10.0.0.5:8000", "10.0.0.5:8001"),
        replicas.Replica("10.0.0.6:8000", "10.0.0.6:8000", None),
        replicas.Replica("h:8000", "h:8000", "g:9001"),
    )


@pytest.mark.parametrize(
    ("endpoints", "words"),
    [
        ("", "no endpoint given"),
        ("https://h:8000", "is not an endpoint"),
        ("http://h:8000/v2", "is not an endpoint"),
        ("http://h", "has no valid port"),
        ("http://h:99999", "has no valid port"),
        ("http://h:8000?grpcport=1", "unknown option 'grpcport'"),
        ("http://h:8000?grpc=x", "grpc='x' is not a port"),
        ("h:8000,http://h:8000", "h:8000 is listed twice"),
        ("http://triton.triton-prod.svc:8000", "triton.triton-prod.svc is a Kubernetes Service name"),
        ("http://triton.ns.svc.cluster.local:8000", "is a Kubernetes Service name"),
    ],
    ids=[
        "empty",
        "https",
        "path",
        "no-port",
        "port-range",
        "unknown-option",
        "bad-grpc",
        "twice",
        "service",
        "service-fqdn",
    ],
)
def test_a_bad_endpoint_is_refused_naming_it(endpoints, words):
    with pytest.raises(errors.InputError, match="--endpoints") as raised:
        replicas.from_endpoints(endpoints)
    assert words in str(raised.value)


def test_the_key_file_wins_over_the_environment_and_is_never_shown(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    key = replicas.api_key("admin-key", key_file, environ={replicas.KEY_ENV: "from-env"})
    assert (key.header, key.key) == ("admin-key", "from-file")
    assert "from-file" not in repr(key)
    assert replicas.api_key("admin-key", environ={replicas.KEY_ENV: " from-env "}).key == "from-env"
    assert replicas.api_key("admin-key", environ={}).key is None


@pytest.mark.parametrize("content", [None, ""], ids=["missing", "empty"])
def test_an_unusable_key_file_is_refused_naming_it(tmp_path, content):
    key_file = tmp_path / "key"
    if content is not None:
        key_file.write_text(content)
    with pytest.raises(errors.InputError, match=f"--api-key-file {key_file}"):
        replicas.api_key("admin-key", key_file, environ={})
