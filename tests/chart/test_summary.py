"""`tritonops summary`: human text by default (no Python reprs), the same facts as JSON with --json."""

from __future__ import annotations

import json
import re

from tritonops.chart import summary

PYTHON_REPR = re.compile(r"[{\[]'|'[}\]]|': ")


def test_text_is_key_value_lines_without_python_reprs(rendered):
    for name in ("dev", "prod", "local"):
        text = summary.summarize(rendered[name])
        assert not PYTHON_REPR.search(text), text
        head, *lines = text.splitlines()
        assert head == f"{name}: release triton in namespace triton-{name}"
        facts = [line for line in lines if not line.startswith("    ")]
        assert all(re.fullmatch(r"  [a-z][a-z ]*( \(\d+\))?:( +\S.*)?", line) for line in facts), facts


def test_text_spells_out_budgets_gpus_and_objects(rendered):
    prod = summary.summarize(rendered["prod"])
    pdb = rendered["prod"].one("PodDisruptionBudget")["spec"]
    budget = ", ".join(f"{key} {value}" for key, value in pdb.items() if key != "selector")
    assert budget == "minAvailable 1, unhealthyPodEvictionPolicy AlwaysAllow"
    assert re.search(rf"^  disruption: +{budget}$", prod, re.MULTILINE)
    gpus = rendered["prod"].values["gpu"]
    assert re.search(
        rf"^  scheduling: +GPU {re.escape(gpus['resourceName'])} {gpus['count']}\b", prod, re.MULTILINE
    )
    listed = re.findall(r"^    (\S+) +(\S+)$", prod, re.MULTILINE)
    assert listed == [(m.kind, m.name) for m in rendered["prod"].manifests]
    dev = summary.summarize(rendered["dev"])
    assert re.search(r"^  disruption: +no PodDisruptionBudget$", dev, re.MULTILINE)


def test_json_lists_each_environment_with_the_same_facts(run_cli, rendered):
    result = run_cli("summary", "--json")
    assert result.returncode == 0, result.stderr
    documents = json.loads(result.stdout)
    assert [d["environment"] for d in documents] == ["dev", "prod"]
    prod = documents[1]
    assert prod == json.loads(json.dumps(summary.describe(rendered["prod"])))
    assert prod["namespace"] == "triton-prod"
    assert prod["objects"] == [{"kind": m.kind, "name": m.name} for m in rendered["prod"].manifests]
    pdb = rendered["prod"].one("PodDisruptionBudget")["spec"]
    assert prod["disruption_budget"] == {k: v for k, v in pdb.items() if k != "selector"}
    assert prod["replicas"]["autoscaled"]["max"] == rendered["prod"].values["autoscaling"]["maxReplicas"]


def test_text_cli_separates_environments_with_a_blank_line(run_cli):
    result = run_cli("summary", "--env", "dev", "--env", "local")
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.rstrip("\n").split("\n\n")
    assert [block.split(":", 1)[0] for block in blocks] == ["dev", "local"]


def test_an_image_without_a_digest_is_said_to_be_a_tag(rendered, render_with):
    prod = summary.summarize(rendered["prod"])
    image = rendered["prod"].one("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert re.search(rf"^  image: +{re.escape(image)} \(tag, not digest-pinned\)$", prod, re.MULTILINE)
    assert summary.describe(rendered["prod"])["image_digest_pinned"] is False
    pinned = render_with("prod", {"image": {"digest": "sha256:" + "ab" * 32}})
    text = summary.summarize(pinned)
    assert "not digest-pinned" not in text and "@sha256:" + "ab" * 32 in text
    assert summary.describe(pinned)["image_digest_pinned"] is True
