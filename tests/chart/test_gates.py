"""The static gates pass on every environment and catch what they exist to catch."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.chart.helpers import PROMOTION_JOB
from tritonops import errors
from tritonops.chart import gates, render


@pytest.fixture(scope="module")
def full_report() -> gates.GateReport:
    return gates.run_gates(["dev", "prod", "local"], policy=True)


@pytest.mark.slow
def test_every_gate_passes_on_every_environment(full_report):
    assert full_report.passed, "\n".join(str(f) for f in full_report.findings)
    assert set(full_report.timings) >= {
        "helm-lint",
        "values-schema",
        "kubernetes-schema",
        "custom-resources",
        "argocd",
        "checkov",
    }
    assert full_report.objects_checked >= 26


@pytest.mark.slow
def test_every_checkov_skip_is_used_and_has_a_reason(full_report):
    assert not full_report.unused_skips, full_report.unused_skips
    assert all(skip.reason for skip, _ in full_report.skips_applied)


@pytest.fixture(scope="module")
def job_report(tmp_path_factory: pytest.TempPathFactory) -> gates.GateReport:
    """Every environment with the promotion Job on, through every gate."""
    values = tmp_path_factory.mktemp("job") / "promotion-job.yaml"
    values.write_text(yaml.safe_dump(PROMOTION_JOB), encoding="utf-8")
    return gates.run_gates(["dev", "prod", "local"], policy=True, extra_files=[values])


JOB_SKIPS = {
    ("CKV_K8S_38", "Job/*-promote-*"),
    ("CKV_K8S_40", "Job/*-promote-*"),
    ("CKV2_K8S_6", "Pod/*-promote-*"),
}


@pytest.mark.slow
def test_every_gate_passes_with_the_promotion_job_on_every_environment(job_report, full_report):
    assert job_report.passed, "\n".join(str(f) for f in job_report.findings)
    # Job, Role, RoleBinding and a ServiceAccount more per environment.
    assert job_report.objects_checked == full_report.objects_checked + 3 * 4
    assert not job_report.unused_skips, job_report.unused_skips
    applied = {(skip.check, skip.resource) for skip, _ in job_report.skips_applied}
    assert applied >= JOB_SKIPS
    # Without the Job its skips cover nothing checkov examines: neither used nor reported unused.
    assert not {(skip.check, skip.resource) for skip, _ in full_report.skips_applied} & JOB_SKIPS


def test_a_skip_is_unused_only_where_it_covers_an_examined_object():
    everywhere = gates.Skip("CKV_K8S_43", "tags", "*")
    job_only = gates.Skip("CKV_K8S_38", "needs the API", "Job/*-promote-*")
    examined = {"Deployment/triton", "Service/triton"}
    assert gates.unused_skips([everywhere, job_only], [], examined) == [everywhere]
    assert gates.unused_skips([everywhere, job_only], [], examined | {"Job/triton-promote-linear-v3-0"}) == [
        everywhere,
        job_only,
    ]
    assert gates.unused_skips([everywhere, job_only], [(everywhere, "dev:Deployment/triton")], examined) == []


@pytest.mark.slow
def test_lint_cli_passes_and_exits_zero(run_cli):
    result = run_cli("lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("PASSED")


def _with_extra_objects(tmp_path, objects):
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"extraObjects": objects}))
    return extra


def test_kubernetes_schema_rejects_unknown_fields(tmp_path):
    bad = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x", "namespace": "triton-dev", "bogus": 1},
    }
    item = render.render("dev", extra_files=[_with_extra_objects(tmp_path, [bad])])
    findings = gates.kubernetes_schema(item)
    assert [f.subject for f in findings] == ["ConfigMap/x"]
    assert "bogus" in findings[0].message


def test_custom_resource_of_unknown_kind_is_a_finding(tmp_path):
    odd = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "triton-dev"},
    }
    item = render.render("dev", extra_files=[_with_extra_objects(tmp_path, [odd])])
    assert [f.message for f in gates.custom_resource_checks(item)] == ["no check for this kind"]


@pytest.mark.slow
def test_checkov_fails_a_privileged_pod_the_skips_do_not_cover(tmp_path):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "rogue", "namespace": "triton-dev"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox:1.36.1", "securityContext": {"privileged": True}}]
        },
    }
    item = render.render("dev", extra_files=[_with_extra_objects(tmp_path, [pod])])
    findings, _, _ = gates.checkov([item])
    rogue = {f.message.split()[0] for f in findings if f.subject == "Pod/rogue"}
    assert "CKV_K8S_16" in rogue, "privileged containers must fail the policy gate"
    assert all(f.subject == "Pod/rogue" for f in findings)


def test_skips_without_a_reason_are_refused(tmp_path):
    skips = tmp_path / "skips.yaml"
    skips.write_text("skips:\n  - check: CKV_K8S_43\n")
    with pytest.raises(errors.InputError, match=r"skips\[0\]: every skip needs `check` and a `reason`"):
        gates.load_skips(skips)


def test_skip_scope_matches_kind_and_name_patterns():
    skip = gates.Skip("CKV_K8S_8", "one-shot pod", "Pod/*-test-infer")
    assert skip.matches("CKV_K8S_8", "Pod/triton-test-infer")
    assert not skip.matches("CKV_K8S_8", "Deployment/triton")
    assert not skip.matches("CKV_K8S_9", "Pod/triton-test-infer")


def test_helm_lint_is_clean_in_strict_mode(rendered):
    for item in rendered.values():
        assert gates.helm_lint(item) == []


def test_lint_with_bad_values_exits_2_before_any_gate(run_cli):
    result = run_cli("lint", "--no-policy", "--set", "ports.http=0")
    assert result.returncode == 2
    assert "--set: ports.http" in result.stderr


def _rule(**rule):
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "r", "namespace": "triton-dev", "labels": {"release": "monitoring-dev"}},
        "spec": {"groups": [{"name": "triton", "rules": [rule]}]},
    }


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"alert": "TritonDown", "expr": "up == 0", "for": "5m", "labels": {"severity": "critical"}}, []),
        ({"record": "triton:x", "expr": "sum(x)"}, []),
        (
            {"alert": "A", "record": "b", "expr": "x"},
            ["spec.groups[0].rules[0]: set exactly one of alert or record"],
        ),
        ({"alert": "A", "expr": " "}, ["spec.groups[0].rules[0].expr: required"]),
        (
            {"alert": "A", "expr": "x", "for": "five minutes"},
            ["spec.groups[0].rules[0].for: 'five minutes' is not a Prometheus duration"],
        ),
        (
            {"alert": "A", "expr": "x", "labels": {"severity": 1}},
            ["spec.groups[0].rules[0].labels.severity: must be a string"],
        ),
        (
            {"record": "r", "expr": "x", "for": "1m"},
            ["spec.groups[0].rules[0]: recording rules take no `for` or `annotations`"],
        ),
    ],
    ids=[
        "good-alert",
        "good-record",
        "alert-and-record",
        "empty-expr",
        "bad-for",
        "non-string-label",
        "record-with-for",
    ],
)
def test_prometheus_rule_checks(rule, expected):
    from tritonops.chart import custom_resources

    assert custom_resources.check_prometheus_rule(_rule(**rule), []) == expected


DIGEST = "sha256:" + "ab" * 32


def test_an_open_repository_api_is_a_settings_finding(render_with):
    item = render_with("dev", {"repositoryApi": {"restricted": {"enabled": False}}})
    findings, notes = gates.settings(item)
    assert [(f.gate, f.scope, f.subject) for f in findings] == [
        ("settings", "dev", "repositoryApi.restricted.enabled")
    ]
    assert "remote code execution" in findings[0].message and notes == []


def test_prod_without_an_image_digest_is_a_note_not_a_finding(render_with, rendered):
    findings, notes = gates.settings(rendered["prod"])
    assert findings == []
    assert [(n.scope, n.subject) for n in notes] == [("prod", "image.digest")]
    assert "pin the digest" in notes[0].message
    assert gates.settings(render_with("prod", {"image": {"digest": DIGEST}})) == ([], [])
    assert gates.settings(rendered["dev"]) == ([], [])  # only prod must pin


def test_prod_promotion_job_without_an_image_digest_is_a_note(render_with):
    _, notes = gates.settings(render_with("prod", PROMOTION_JOB))
    assert [n.subject for n in notes] == ["image.digest", "promotion.job.image.digest"]
    assert f"{PROMOTION_JOB['promotion']['job']['image']['repository']}:0.1.0" in notes[1].message
    pinned = {
        "promotion": {
            "job": {**PROMOTION_JOB["promotion"]["job"], "image": {"repository": "r", "digest": DIGEST}}
        }
    }
    assert [n.subject for n in gates.settings(render_with("prod", pinned))[1]] == ["image.digest"]
    assert gates.settings(render_with("dev", PROMOTION_JOB)) == ([], [])


def test_lint_prints_notes_and_fails_on_an_open_repository_api(run_cli):
    clean = run_cli("lint", "--no-policy", "--env", "prod", "--json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    report = json.loads(clean.stdout)
    assert report["passed"] and [n["subject"] for n in report["notes"]] == ["image.digest"]
    opened = run_cli("lint", "--no-policy", "--env", "dev", "--set", "repositoryApi.restricted.enabled=false")
    assert opened.returncode == 1
    assert "  FAIL [settings] dev: repositoryApi.restricted.enabled: false opens" in opened.stdout


@pytest.mark.parametrize(
    "args",
    [["-f", "does-not-exist.yaml"], ["--bogus-flag"], ["--env", "staging"]],
    ids=["missing-values-file", "unknown-flag", "unknown-env"],
)
def test_lint_json_errors_are_json_on_stdout(run_cli, args):
    result = run_cli("lint", "--no-policy", "--json", *args)
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document["exit_code"] == 2 and document["error"]
    assert result.stderr == f"tritonops: {document['error']}\n"
