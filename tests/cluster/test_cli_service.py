"""`--service` on promote, rollback, reconcile and status: the replicas come from the Service's
EndpointSlices (the fake API server here), never together with --endpoints, and need --repository."""

from __future__ import annotations

import pytest

from tests.cluster.fake_apiserver import endpoint_slice, pod_endpoint

COMMANDS = [
    ("promote", "linear", "--version", "2"),
    ("rollback", "linear"),
    ("reconcile",),
    ("status",),
]
IDS = ["promote", "rollback", "reconcile", "status"]


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_service_and_endpoints_exclude_each_other(run_cli, tmp_path, command):
    result = run_cli(
        *command, "--service", "triton", "--endpoints", "http://10.0.0.1:8000", "--repository", str(tmp_path)
    )
    assert result.returncode == 2
    assert "argument --endpoints: not allowed with argument --service" in result.stderr


def test_service_from_the_environment_with_endpoints_is_refused(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TRITONOPS_SERVICE", "triton")
    result = run_cli("reconcile", "--endpoints", "http://10.0.0.1:8000", "--repository", str(tmp_path))
    assert result.returncode == 2
    assert (
        "--service and --endpoints (or TRITONOPS_SERVICE and TRITONOPS_ENDPOINTS) both name" in result.stderr
    )


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_service_needs_a_repository(run_cli, fake_api, kubeconfig, monkeypatch, command):
    monkeypatch.delenv("TRITONOPS_REPOSITORY", raising=False)
    result = run_cli(*command, "--service", "triton")
    assert result.returncode == 2
    assert "--service: give --repository DIR too" in result.stderr
    assert fake_api.requests == []  # refused before asking the cluster


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_service_discovery_errors_are_one_line_not_a_traceback(
    run_cli, fake_api, kubeconfig, tmp_path, command
):
    result = run_cli(*command, "--service", "tritn", "--namespace", "prod", "--repository", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        "tritonops: --service tritn: no EndpointSlice in namespace prod has the label "
        "kubernetes.io/service-name=tritn"
    )
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_service_flags_reach_the_api_with_the_given_kubeconfig(run_cli, fake_api, tmp_path, monkeypatch):
    from tests.cluster.fake_apiserver import write_kubeconfig

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    path = write_kubeconfig(tmp_path / "given", fake_api.url)
    fake_api.fail_with = 403
    result = run_cli(
        "status",
        "--service",
        "triton",
        "--namespace",
        "ml",
        "--kubeconfig",
        str(path),
        "--context",
        "fake",
        "--repository",
        str(tmp_path),
    )
    assert result.returncode == 2
    assert "refused to list EndpointSlices in namespace ml (403 Forbidden)" in result.stderr
    assert fake_api.requests and "/namespaces/ml/" in fake_api.requests[0]


def test_json_callers_get_the_discovery_error_as_json(run_cli, fake_api, kubeconfig, tmp_path):
    fake_api.slices["ml"] = [
        endpoint_slice("t", "triton", [pod_endpoint("triton-0", "10.0.0.10", ready=False)])
    ]
    result = run_cli("reconcile", "--json", "--service", "triton", "--repository", str(tmp_path))
    assert result.returncode == 1  # not ready yet: temporary
    assert (
        '"error": "Service ml/triton: no ready endpoint (not ready: triton-0; terminating: none)'
        in result.stdout
    )


@pytest.mark.parametrize("command", [c[:1] for c in COMMANDS], ids=IDS)
def test_help_names_the_service_options(run_cli, command):
    result = run_cli(*command, "--help")
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    assert "--service SERVICE instead of --endpoints: every ready pod of this Kubernetes Service" in text
    for option in ("--namespace NAMESPACE", "--kubeconfig KUBECONFIG", "--context CONTEXT"):
        assert option in text


def test_status_names_the_pods_it_left_out(run_cli, fake_api, kubeconfig, tmp_path):
    fake_api.slices["ml"] = [
        endpoint_slice(
            "t",
            "triton",
            [
                pod_endpoint("triton-0", "127.0.0.1"),
                pod_endpoint("triton-1", "10.0.0.11", ready=False, serving=True),
                pod_endpoint("triton-2", "10.0.0.12", ready=False, terminating=True),
            ],
        )
    ]
    result = run_cli("status", "--service", "triton", "--repository", str(tmp_path))
    assert (
        "Service ml/triton: pods left out (not ready: triton-1; terminating: triton-2); each pod's agent "
        "converges it to the committed state once ready" in result.stderr
    ), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "given",
    [("--namespace", "ml"), ("--kubeconfig", "/k"), ("--context", "prod"), ("--wait-for-ready", "60")],
    ids=["namespace", "kubeconfig", "context", "wait-for-ready"],
)
@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_cluster_options_without_service_are_refused(run_cli, tmp_path, command, given):
    # Silently ignored, they would let a call meant for a cluster act on other replicas.
    result = run_cli(*command, "--endpoints", "http://10.0.0.1:8000", "--repository", str(tmp_path), *given)
    assert result.returncode == 2
    assert result.stderr.startswith(f"tritonops: {given[0]}: only used with --service SERVICE"), result.stderr


def test_the_namespace_variable_alone_does_not_refuse_endpoints(run_cli, tmp_path, monkeypatch):
    # The variables are ambient configuration, read only with --service.
    monkeypatch.setenv("TRITONOPS_NAMESPACE", "ml")
    result = run_cli("status", "--endpoints", "http://127.0.0.1:9", "--repository", str(tmp_path))
    assert "only used with --service" not in result.stderr


def test_the_namespace_variable_is_read_with_service(run_cli, fake_api, kubeconfig, tmp_path, monkeypatch):
    monkeypatch.setenv("TRITONOPS_NAMESPACE", "prod")
    run_cli("status", "--service", "triton", "--repository", str(tmp_path))
    assert "/namespaces/prod/" in fake_api.requests[0]


@pytest.mark.parametrize(
    "abbreviation",
    ["--repo=/elsewhere", "--serv=other", "--api-key=secret", "--names=kube-system", "--wait=5"],
    ids=["repository", "service", "api-key-file", "namespace", "wait-for-ready"],
)
def test_abbreviated_flags_are_refused(run_cli, fake_api, kubeconfig, tmp_path, abbreviation):
    # The chart's promotion Job refuses its own flags in promotion.job.extraArgs by their full
    # names: an abbreviation argparse accepted would slip past that guard.
    result = run_cli("promote", "linear", "--version", "2", "--service", "triton", "--repository", str(tmp_path),
                     abbreviation)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"tritonops: error: unrecognized arguments: {abbreviation} (see `tritonops promote --help`)"
    ), result.stderr
    assert fake_api.requests == []
