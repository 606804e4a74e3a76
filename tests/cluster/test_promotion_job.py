"""The chart's promotion Job really promotes: its rendered command and arguments, run through the
CLI in-process, promote a version on two real Triton replicas (the local runtime) that the rendered
Service's EndpointSlices point at (served by the fake API server), with the Job's mounts (the model
repository, the key file, /tmp) mapped onto local folders. Rerun, as Argo CD or Helm would rerun a
recreated Job, it is a no-op."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helpers import PROMOTION_JOB
from tests.cluster.fake_apiserver import FakeApiServer, endpoint_slice, pod_endpoint
from tests.promotion import models
from tests.promotion.conftest import Fleet
from tritonops.chart import render


def render_job(tmp_path: Path, **job: Any) -> render.Rendering:
    """`local` (the environment the fleet runs) with the promotion Job on."""
    values = {"promotion": {"job": {**PROMOTION_JOB["promotion"]["job"], **job}}}
    path = tmp_path / "promotion-job.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return render.render("local", extra_files=[path])


def local_mounts(item: render.Rendering, fleet: Fleet, tmp_path: Path) -> dict[str, Path]:
    """Each mount of the Job's container -> the local folder that plays its volume: the repository's
    claim is the fleet's repository, the key Secret a folder holding the fleet's key, /tmp a folder."""
    pod = item.one("Job")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    deployment = item.one("Deployment")["spec"]["template"]["spec"]
    claim = next(v for v in deployment["volumes"] if v["name"] == "models")["persistentVolumeClaim"]
    secret = item.one("Secret")["metadata"]["name"]
    places: dict[str, Path] = {}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "persistentVolumeClaim" in volume:
            assert volume["persistentVolumeClaim"]["claimName"] == claim["claimName"]
            places[mount["mountPath"]] = fleet.repository
        elif "secret" in volume:
            assert volume["secret"]["secretName"] == secret
            folder = tmp_path / "secret"
            for item_ in volume["secret"]["items"]:
                folder.mkdir(exist_ok=True)
                (folder / item_["path"]).write_text(fleet.key.key or "", encoding="utf-8")
            places[mount["mountPath"]] = folder
        else:
            assert "emptyDir" in volume
            places[mount["mountPath"]] = tmp_path / "emptydir" / mount["name"]
            places[mount["mountPath"]].mkdir(parents=True)
    return places


def mapped(text: str, places: dict[str, Path]) -> str:
    """`text` (an argument, `--flag=VALUE`, or a variable's value) with a path under a mount moved to
    its local folder."""
    flag, equals, value = text.partition("=") if text.startswith("--") else ("", "", text)
    for mount in sorted(places, key=len, reverse=True):
        if value == mount or value.startswith(mount + "/"):
            return f"{flag}{equals}{places[mount]}{value[len(mount) :]}"
    return text


def serve_the_service(fake: FakeApiServer, item: render.Rendering, fleet: Fleet) -> tuple[str, str]:
    """EndpointSlices for the rendered Service, one per replica (each has its own ports here)."""
    service = item.one("Service")["metadata"]
    fake.slices[service["namespace"]] = [
        endpoint_slice(
            f"{service['name']}-{index}",
            service["name"],
            [pod_endpoint(replica.name, replica.http_address.rsplit(":", 1)[0])],
            namespace=service["namespace"],
            ports=(
                ("http", int(replica.http_address.rsplit(":", 1)[1])),
                ("grpc", int((replica.grpc_address or "").rsplit(":", 1)[1])),
            ),
        )
        for index, replica in enumerate(fleet.replicas)
    ]
    return service["name"], service["namespace"]


def test_the_rendered_job_command_promotes_every_replica_and_a_rerun_is_a_noop(
    fleet_runtime: Fleet, fake_api, kubeconfig, run_cli, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    fleet = fleet_runtime
    version = fleet.new_version()
    models.linear_version(fleet.repository, "linear", version, scale=3.0)  # the folder CI dropped in
    item = render_job(tmp_path, version=version, extraArgs=["--json"])
    service, namespace = serve_the_service(fake_api, item, fleet)
    (container,) = item.one("Job")["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["tritonops"]
    assert f"--service={service}" in container["args"] and f"--namespace={namespace}" in container["args"]
    assert f"--api-header={fleet.key.header}" in container["args"]
    places = local_mounts(item, fleet, tmp_path)
    for variable in container["env"]:
        monkeypatch.setenv(variable["name"], mapped(variable["value"], places))
    args = [mapped(arg, places) for arg in container["args"]]
    working_dir = Path(mapped(container["workingDir"], places))

    result = run_cli(*args, cwd=working_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    outcome = json.loads(result.stdout)
    assert (outcome["result"], outcome["version"]) == ("committed", version)
    assert fleet.record().version == version and fleet.served() == [(version,), (version,)]
    # The replicas came from the Service's EndpointSlices, in the release namespace, by its label.
    assert any(
        f"/namespaces/{namespace}/endpointslices" in request and f"service-name%3D{service}" in request
        for request in fake_api.requests
    ), fake_api.requests

    again = run_cli(*args, cwd=working_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["result"] == "noop"
    assert fleet.record().version == version
