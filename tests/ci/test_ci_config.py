"""The copyable CI: the GitHub Actions workflow, chart-testing's config and the kind cluster config,
each checked against the real tool's schema or source, and the workflow's jobs doing what they claim."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.ci.conftest import CI_DIR, CT_CONFIG, ROOT, WORKFLOW, load_yaml

# --- the workflow against the GitHub Actions schema -----------------------------------------------


def check_workflow_schema(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with its vendored copy of SchemaStore's github-workflows schema (offline)."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_workflow_matches_the_github_actions_workflow_schema():
    result = check_workflow_schema(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("valid", "broken"),
    [
        ("        timeout-minutes: 90\n", "        timeout-minute: 90\n"),
        ("    needs: [lint-test, chart]\n", "    need: [lint-test, chart]\n"),
        ("  contents: read\n", "  contents: readonly\n"),
    ],
    ids=["misspelt-step-key", "misspelt-job-key", "unknown-permission-level"],
)
def test_workflow_schema_check_refuses_a_broken_copy(tmp_path, valid, broken):
    text = WORKFLOW.read_text(encoding="utf-8")
    assert valid in text
    copy_path = tmp_path / "ci.yml"
    copy_path.write_text(text.replace(valid, broken, 1), encoding="utf-8")
    result = check_workflow_schema(copy_path)
    assert result.returncode != 0, result.stdout


def test_workflow_header_says_where_to_copy_it():
    header = WORKFLOW.read_text(encoding="utf-8").split("\nname:", 1)[0]
    assert ".github/workflows/" in header


# --- actions: pinned to a release, given only inputs they declare ----------------------------------

# The `inputs` of each action's action.yml, at the release its major tag pointed to when read
# (2026-11-26): actions/checkout v7.0.1, actions/setup-python v7.0.0, actions/upload-artifact v7.0.0,
# azure/setup-helm v5 (node24), helm/chart-testing-action v2.8.0, helm/kind-action v1.14.0.
# GitHub only warns about an undeclared input, so a misspelt one is silently ignored.
ACTION_INPUTS: dict[str, set[str]] = {
    "actions/checkout@v7": {
        "repository", "ref", "token", "ssh-key", "ssh-known-hosts", "ssh-strict", "ssh-user",
        "persist-credentials", "path", "clean", "filter", "sparse-checkout", "sparse-checkout-cone-mode",
        "fetch-depth", "fetch-tags", "show-progress", "lfs", "submodules", "set-safe-directory",
        "github-server-url", "allow-unsafe-pr-checkout",
    },
    "actions/setup-python@v7": {
        "python-version", "python-version-file", "cache", "architecture", "check-latest", "token",
        "cache-dependency-path", "update-environment", "allow-prereleases", "freethreaded", "pip-version",
    },
    "actions/upload-artifact@v7": {
        "name", "path", "if-no-files-found", "retention-days", "compression-level", "overwrite",
        "include-hidden-files", "archive",
    },
    "azure/setup-helm@v5": {"version", "version-file", "token", "downloadBaseURL"},
    "helm/chart-testing-action@v2": {"version", "yamllint_version", "yamale_version"},
    "helm/kind-action@v1": {
        "version", "config", "kubeconfig", "node_image", "cluster_name", "wait", "verbosity",
        "kubectl_version", "registry", "registry_image", "registry_name", "registry_port",
        "registry_enable_delete", "install_only", "ignore_failed_clean", "cloud_provider",
    },
}  # fmt: skip

RELEASE_REF = re.compile(r"^[\w.-]+/[\w.-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")


def all_steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_every_action_is_pinned_to_a_release(workflow):
    refs = [step["uses"] for step in all_steps(workflow) if "uses" in step]
    assert refs
    unpinned = [ref for ref in refs if not RELEASE_REF.match(ref)]
    assert not unpinned, f"pin these to a release tag or commit: {unpinned}"


def test_every_action_input_is_one_the_action_declares(workflow):
    for step in all_steps(workflow):
        if "uses" not in step:
            continue
        assert step["uses"] in ACTION_INPUTS, f"{step['uses']}: record its action.yml inputs here"
        unknown = set(step.get("with", {})) - ACTION_INPUTS[step["uses"]]
        assert not unknown, f"{step['uses']} has no input {sorted(unknown)}"


# --- what each job does ----------------------------------------------------------------------------


def resolve(value: Any, *envs: dict[str, Any]) -> str:
    """`value` with `${{ env.NAME }}` replaced from the innermost env that sets NAME."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(next(env[name] for env in envs if name in env))

    return re.sub(r"\$\{\{\s*env\.(\w+)\s*\}\}", lookup, str(value))


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if step.get("uses", "").startswith(action + "@")]


def step_running(job: dict[str, Any], command: str) -> dict[str, Any]:
    """The one step whose script runs `command` (comment lines do not count)."""

    def runs(step: dict[str, Any]) -> bool:
        lines = step.get("run", "").splitlines()
        return any(command in line and not line.strip().startswith("#") for line in lines)

    (step,) = [step for step in job["steps"] if runs(step)]
    return step


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_.-]+):", text, flags=re.MULTILINE))


def test_permissions_are_read_only_and_a_new_push_cancels_the_old_run(workflow):
    assert workflow["permissions"] == {"contents": "read"}
    assert not [name for name, job in workflow["jobs"].items() if "permissions" in job]
    assert "github.ref" in workflow["concurrency"]["group"]
    assert workflow["concurrency"]["cancel-in-progress"]


def test_lint_test_runs_the_readme_commands_on_python_311(workflow):
    job = workflow["jobs"]["lint-test"]
    runs = [step.get("run", "").strip() for step in job["steps"]]
    assert runs.index("make lint") < runs.index("make test")
    (python,) = steps_using(job, "actions/setup-python")
    assert resolve(python["with"]["python-version"], workflow["env"]) == "3.11"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make test" in readme


def test_chart_job_lints_with_ct_against_the_target_branch_and_packages_the_chart(workflow):
    job = workflow["jobs"]["chart"]
    (checkout,) = steps_using(job, "actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0  # ct diffs against the target branch's history
    (helm,) = steps_using(job, "azure/setup-helm")
    assert re.fullmatch(r"v3\.\d+\.\d+", resolve(helm["with"]["version"], workflow["env"]))
    assert steps_using(job, "helm/chart-testing-action")
    lint = step_running(job, "ct lint")["run"]
    assert lint.count("ct lint --config ci/ct.yaml") == 2  # pull request and push alike
    assert '--target-branch "$TARGET_BRANCH"' in lint
    package = step_running(job, "helm package")
    assert package["run"].split() == ["helm", "package", "charts/triton", "--destination", "dist/"]
    (upload,) = steps_using(job, "actions/upload-artifact")
    assert upload["with"]["path"] == "dist/*.tgz"
    assert upload["with"]["if-no-files-found"] == "error"


def test_ct_in_ci_runs_the_linters_the_tests_run(workflow):
    (ct,) = steps_using(workflow["jobs"]["chart"], "helm/chart-testing-action")
    assert ct["with"]["yamllint_version"] == importlib.metadata.version("yamllint")
    assert ct["with"]["yamale_version"] == importlib.metadata.version("yamale")


def test_kind_job_frees_disk_then_runs_make_test_kind_on_the_actions_cluster(workflow):
    job = workflow["jobs"]["kind"]
    assert set(job["needs"]) == {"lint-test", "chart"}
    steps = job["steps"]
    free = step_running(job, "docker image prune")
    for path in ("/usr/share/dotnet", "/usr/local/lib/android", "/opt/ghc", "/opt/hostedtoolcache/CodeQL"):
        assert path in free["run"]
    (kind,) = steps_using(job, "helm/kind-action")
    assert steps.index(free) < steps.index(kind)
    assert kind["with"]["config"] == "ci/kind-config.yaml"
    assert resolve(kind["with"]["cluster_name"], job["env"]) == job["env"]["KIND_CLUSTER_NAME"]
    test = step_running(job, "make test-kind")
    assert steps.index(kind) < steps.index(test)
    # ci/kind.sh reuses the cluster KIND_CLUSTER_NAME names (the job's, not overridden by the step).
    assert "KIND_CLUSTER_NAME" not in test.get("env", {})
    # There a runner without docker, kind or helm must fail the job, not pass it as a skip.
    assert test["env"]["TRITONOPS_REQUIRE_KIND"] == "1"
    assert 'kind get clusters | grep -qx "$KIND_CLUSTER_NAME"' in (ROOT / "ci" / "kind.sh").read_text()
    # The image pull alone takes many minutes; a hang must fail the step, not the job, so that the
    # failure steps still run.
    assert 60 <= test["timeout-minutes"] < job["timeout-minutes"]


def test_kind_job_uploads_events_descriptions_and_every_containers_logs_on_failure(workflow):
    job = workflow["jobs"]["kind"]
    steps = job["steps"]
    after = steps[steps.index(step_running(job, "make test-kind")) + 1 :]
    assert after and all(step.get("if") == "failure()" for step in after)
    collect = step_running(job, "kind export logs")["run"]
    for command in ("kubectl get events -A", "kubectl describe pods -A", "kubectl logs", "--previous"):
        assert command in collect
    assert "initContainers" in collect and ".spec.containers" in collect
    (upload,) = steps_using(job, "actions/upload-artifact")
    assert upload in after
    folder = re.search(r"^out=(\S+)$", collect, flags=re.MULTILINE)
    assert folder is not None
    assert upload["with"]["path"].rstrip("/") == folder.group(1)


def workflow_make_targets() -> list[str]:
    text = WORKFLOW.read_text(encoding="utf-8")
    return sorted(set(re.findall(r"\bmake ([a-z][\w-]*)", text)))


@pytest.mark.parametrize("target", workflow_make_targets())
def test_every_make_target_the_workflow_runs_exists(target):
    assert target in makefile_targets()


# --- ci/ct.yaml: only keys chart-testing reads, with the types it decodes --------------------------

# chart-testing v3.14.0 (the release the workflow installs), pkg/config/config.go: the `mapstructure`
# tags of `Configuration`, which viper fills from the config file (flags of ct/cmd/*.go share the
# names). viper ignores any other key without a word, so a misspelt one silently does nothing.
DURATION = "duration"
CT_CONFIG_KEYS: dict[str, Any] = {
    "remote": str,
    "target-branch": str,
    "since": str,
    "build-id": str,
    "lint-conf": str,
    "chart-yaml-schema": str,
    "validate-maintainers": bool,
    "validate-chart-schema": bool,
    "validate-yaml": bool,
    "skip-helm-dependencies": bool,
    "additional-commands": list,
    "check-version-increment": bool,
    "all": bool,
    "charts": list,
    "chart-repos": list,
    "chart-dirs": list,
    "excluded-charts": list,
    "helm-extra-args": str,
    "helm-extra-set-args": str,
    "helm-lint-extra-args": str,
    "helm-repo-extra-args": list,
    "helm-dependency-extra-args": list,
    "debug": bool,
    "upgrade": bool,
    "skip-missing-values": bool,
    "skip-clean-up": bool,
    "namespace": str,
    "release-name": str,
    "release-label": str,
    "exclude-deprecated": bool,
    "kubectl-timeout": DURATION,  # time.Duration, written like 120s
    "print-logs": bool,
    "github-groups": bool,
    "use-helmignore": bool,
}


def ct_config_problems(config: dict[str, Any]) -> list[str]:
    """What chart-testing would ignore or misread in `config`, one line per key."""
    problems = []
    for key, value in config.items():
        expected = CT_CONFIG_KEYS.get(key)
        if expected is None:
            problems.append(f"{key}: not a chart-testing setting")
        elif expected is DURATION:
            if not (isinstance(value, str) and re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", value)):
                problems.append(f"{key}: expected a duration like 120s, got {value!r}")
        elif expected is list:
            if not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
                problems.append(f"{key}: expected a list of strings, got {value!r}")
        elif type(value) is not expected:
            problems.append(f"{key}: expected {expected.__name__}, got {value!r}")
    return problems


def test_ct_config_uses_only_chart_testing_settings(ct_config):
    assert ct_config_problems(ct_config) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"chart-dir": ["charts"]}, "chart-dir: not a chart-testing setting"),
        ({"chart-dirs": "charts"}, "chart-dirs: expected a list of strings"),
        ({"check-version-increment": "yes"}, "check-version-increment: expected bool"),
        ({"helm-extra-args": ["--timeout", "600s"]}, "helm-extra-args: expected str"),
        ({"kubectl-timeout": 120}, "kubectl-timeout: expected a duration"),
    ],
    ids=["misspelt-key", "string-for-list", "string-for-bool", "list-for-string", "number-for-duration"],
)
def test_ct_config_check_names_what_chart_testing_would_misread(ct_config, change, problem):
    broken = {**copy.deepcopy(ct_config), **change}
    assert any(line.startswith(problem) for line in ct_config_problems(broken))


def test_ct_config_lints_changed_charts_strictly(ct_config):
    assert ct_config["chart-dirs"] == ["charts"]
    assert ct_config["target-branch"] == "main"
    assert ct_config["check-version-increment"] is True
    assert ct_config["validate-maintainers"] is False
    assert ct_config["validate-chart-schema"] is True
    assert ct_config["validate-yaml"] is True
    # ct runs from the repository root: the rule files it names must be there.
    for key in ("lint-conf", "chart-yaml-schema"):
        assert (ROOT / ct_config[key]).is_file(), key
    assert (ROOT / ct_config["chart-dirs"][0] / "triton" / "Chart.yaml").is_file()
    assert CT_CONFIG.parent == CI_DIR


# --- ci/kind*.yaml against kind's v1alpha4 types ---------------------------------------------------

KIND_SCHEMA = Path(__file__).with_name("kind_cluster_v1alpha4.schema.json")


def kind_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(KIND_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def kind_problems(document: Any) -> list[str]:
    return [
        f"{error.json_path}: {error.message}"
        for error in sorted(kind_validator().iter_errors(document), key=lambda e: e.json_path)
    ]


@pytest.mark.parametrize("path", sorted(CI_DIR.glob("kind*.yaml")), ids=lambda path: path.name)
def test_kind_config_matches_kinds_v1alpha4_types(path):
    assert kind_problems(load_yaml(path)) == []


# Every section kind's configuration guide documents (site/content/docs/user/configuration.md,
# v0.32.0), in one config: the schema must not refuse what kind accepts.
KIND_EXAMPLE: dict[str, Any] = {
    "kind": "Cluster",
    "apiVersion": "kind.x-k8s.io/v1alpha4",
    "name": "app-1-cluster",
    "featureGates": {"CSIMigration": True},
    "runtimeConfig": {"api/alpha": "false"},
    "networking": {
        "ipFamily": "dual",
        "apiServerAddress": "127.0.0.1",
        "apiServerPort": 6443,
        "podSubnet": "10.244.0.0/16",
        "serviceSubnet": "10.96.0.0/12",
        "disableDefaultCNI": True,
        "kubeProxyMode": "nftables",
        "dnsSearch": None,
    },
    "kubeadmConfigPatches": ["kind: ClusterConfiguration\napiServer:\n  extraArgs:\n    v: '5'\n"],
    "containerdConfigPatches": ['[plugins."io.containerd.grpc.v1.cri".registry]\n'],
    "nodes": [
        {
            "role": "control-plane",
            "image": "kindest/node:v1.35.0",
            "extraPortMappings": [
                {"containerPort": 80, "hostPort": 80, "listenAddress": "0.0.0.0", "protocol": "TCP"}
            ],
            "kubeadmConfigPatchesJSON6902": [
                {
                    "group": "kubeadm.k8s.io",
                    "version": "v1beta3",
                    "kind": "ClusterConfiguration",
                    "patch": "[]",
                }
            ],
        },
        {
            "role": "worker",
            "labels": {"tier": "frontend"},
            "extraMounts": [
                {
                    "hostPath": "/tmp/models",
                    "containerPath": "/models",
                    "readOnly": True,
                    "propagation": "None",
                }
            ],
        },
    ],
}


def test_kind_schema_accepts_every_section_of_kinds_documented_config():
    assert kind_problems(KIND_EXAMPLE) == []


def _with(path: list[Any], value: Any, *, drop: str | None = None) -> dict[str, Any]:
    document = copy.deepcopy(KIND_EXAMPLE)
    node: Any = document
    for key in path[:-1]:
        node = node[key]
    if drop is not None:
        node.pop(drop)
    node[path[-1]] = value
    return document


@pytest.mark.parametrize(
    ("document", "where"),
    [
        (_with(["node"], [{"role": "control-plane"}], drop="nodes"), "$"),
        (_with(["nodes", 1, "label"], {"tier": "frontend"}, drop="labels"), "$.nodes[1]"),
        (_with(["networking", "kubeProxyMode"], "userspace"), "$.networking.kubeProxyMode"),
        (
            _with(["nodes", 0, "extraPortMappings", 0, "hostPort"], "80"),
            "$.nodes[0].extraPortMappings[0].hostPort",
        ),
        (_with(["nodes", 0, "role"], "worker"), "$.nodes"),
        (_with(["apiVersion"], "kind.x-k8s.io/v1alpha3"), "$.apiVersion"),
    ],
    ids=[
        "misspelt-nodes",
        "misspelt-labels",
        "unknown-proxy-mode",
        "string-port",
        "no-control-plane",
        "old-api",
    ],
)
def test_kind_schema_refuses_what_kind_would_refuse(document, where):
    assert any(problem.startswith(where + ":") for problem in kind_problems(document)), kind_problems(
        document
    )
