"""Exactly one model-repository source: NFS/PVC, object store, baked image, or verified download."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.chart.helpers import launcher_args, pod_spec, server_args, triton_container
from tritonops import errors

ONLY_PVC_OFF = {"pvc": {"enabled": False}}
SHA = "b" * 64


def _volumes(item):
    return {v["name"]: v for v in pod_spec(item)["volumes"]}


def _mounts(item):
    return {m["name"]: m for m in triton_container(item)["volumeMounts"]}


def test_nfs_creates_a_bound_read_write_many_volume_mounted_read_only(rendered):
    dev = rendered["dev"]
    pv = dev.one("PersistentVolume")
    pvc = dev.one("PersistentVolumeClaim")
    assert pv["spec"]["nfs"] == {
        "server": "10.0.40.10",
        "path": "/exports/triton-dev/models",
    }
    assert pv["spec"]["accessModes"] == ["ReadWriteMany"] == pvc["spec"]["accessModes"]
    assert pv["spec"]["claimRef"] == {"namespace": "triton-dev", "name": pvc["metadata"]["name"]}
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
    assert pvc["spec"]["storageClassName"] == "", "static binding, never a dynamic provisioner"
    assert _volumes(dev)["models"]["persistentVolumeClaim"] == {
        "claimName": pvc["metadata"]["name"],
        "readOnly": True,
    }
    assert _mounts(dev)["models"]["readOnly"] is True
    assert _mounts(dev)["models"]["mountPath"] == "/models"


def _nfs_names(item) -> tuple[str, str, str, str, str]:
    """(PV name, PVC name, the PVC's volumeName, the PV's claimRef name, the Deployment's claimName)."""
    pv = item.one("PersistentVolume")
    pvc = item.one("PersistentVolumeClaim")
    return (
        pv["metadata"]["name"],
        pvc["metadata"]["name"],
        pvc["spec"]["volumeName"],
        pv["spec"]["claimRef"]["name"],
        _volumes(item)["models"]["persistentVolumeClaim"]["claimName"],
    )


def test_created_volume_and_claim_are_named_after_their_nfs_export(rendered):
    pv, pvc, volume_name, claim_ref, claim_name = _nfs_names(rendered["dev"])
    assert re.fullmatch(r"triton-dev-triton-models-[0-9a-f]{8}", pv), pv
    assert re.fullmatch(r"triton-models-[0-9a-f]{8}", pvc), pvc
    assert pv.rsplit("-", 1)[1] == pvc.rsplit("-", 1)[1], "one hash of the export for both"
    assert volume_name == pv and claim_ref == claim_name == pvc


@pytest.mark.parametrize(
    "nfs",
    [{"server": "10.0.40.11"}, {"path": "/exports/triton-dev/models-v2"}],
    ids=["server", "path"],
)
def test_a_changed_nfs_export_is_a_new_volume_claim_and_deployment_claim(rendered, render_with, nfs):
    # A PersistentVolume's volume source and a claim's volumeName are immutable (kubernetes PR
    # #54761): the upgrade must create new objects, and the Deployment must roll onto the new claim.
    before = _nfs_names(rendered["dev"])
    after = _nfs_names(render_with("dev", {"modelRepository": {"pvc": {"nfs": nfs}}}))
    assert after[0] != before[0], "a new PersistentVolume"
    assert after[1] != before[1], "a new claim"
    assert after[2:] == (after[0], after[1], after[1]), "claim, volume and Deployment agree"


def test_the_same_nfs_export_keeps_its_names(rendered, render_with):
    overrides = {"modelRepository": {"pvc": {"nfs": {"server": "10.0.40.11", "path": "/exports/x"}}}}
    assert _nfs_names(render_with("dev", overrides)) == _nfs_names(render_with("dev", overrides))
    # Mount options can change in place: they are not part of the name.
    options = {"modelRepository": {"pvc": {"nfs": {"mountOptions": ["nfsvers=4.2", "hard"]}}}}
    assert _nfs_names(render_with("dev", options)) == _nfs_names(rendered["dev"])


def test_existing_claim_creates_no_volume(rendered):
    prod = rendered["prod"]
    assert not prod.of_kind("PersistentVolume") and not prod.of_kind("PersistentVolumeClaim")
    assert _volumes(prod)["models"]["persistentVolumeClaim"]["claimName"] == "triton-models-prod"


def test_object_store_reads_the_uri_with_credentials_from_a_secret(render_with):
    item = render_with(
        "dev",
        {
            "modelRepository": {
                **ONLY_PVC_OFF,
                "objectStore": {
                    "enabled": True,
                    "uri": "s3://models/triton",
                    "credentialsSecret": "s3-creds",
                },
            },
            "server": {"committedState": {"enabled": False}},
            "agent": {"enabled": False},
        },
    )
    assert "--model-repository=s3://models/triton" in server_args(item)
    assert triton_container(item)["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert "models" not in _volumes(item)
    assert not [arg for arg in launcher_args(item) if arg.startswith("--committed-state")]


def test_object_store_with_irsa_uses_the_service_account_annotation(render_with):
    role = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/triton"}
    item = render_with(
        "dev",
        {
            "modelRepository": {
                **ONLY_PVC_OFF,
                "objectStore": {"enabled": True, "uri": "s3://models/triton"},
            },
            "server": {"committedState": {"enabled": False}},
            "agent": {"enabled": False},
            "serviceAccount": {"annotations": role},
        },
    )
    assert "envFrom" not in triton_container(item)
    assert item.one("ServiceAccount")["metadata"]["annotations"] == role


def test_models_baked_into_the_image_need_no_volume(render_with):
    item = render_with("dev", {"modelRepository": {**ONLY_PVC_OFF, "image": {"enabled": True}}})
    assert "models" not in _volumes(item)
    assert "--model-repository=/models" in server_args(item)


def _download(artifacts):
    return {"modelRepository": {**ONLY_PVC_OFF, "download": {"enabled": True, "artifacts": artifacts}}}


def test_download_init_container_verifies_every_artifact_before_triton_starts(render_with):
    item = render_with(
        "dev",
        _download(
            [{"url": "https://models.example/m/1/model.onnx", "sha256": SHA, "path": "m/1/model.onnx"}]
        ),
    )
    init = pod_spec(item)["initContainers"][0]
    script = init["command"][2]
    assert "sha256sum -c" in script
    assert f"fetch 'https://models.example/m/1/model.onnx' '{SHA}' '/models/m/1/model.onnx'" in script
    assert _volumes(item)["models"]["emptyDir"]["sizeLimit"] == "10Gi"
    assert _mounts(item)["models"]["readOnly"] is True
    assert init["securityContext"]["readOnlyRootFilesystem"] is True


def _run_fetch_script(script: str, tmp_path, artifact_bytes: bytes, sha: str):
    """Run the rendered init script with a local `wget` stand-in that copies a local file."""
    source = tmp_path / "source.onnx"
    source.write_bytes(artifact_bytes)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    wget = bin_dir / "wget"
    wget.write_text(f'#!/bin/sh\n# wget -q -O DEST URL\ncp "{source}" "$3"\n')
    wget.chmod(0o755)
    script = script.replace("/models/", f"{tmp_path}/models/")
    return subprocess.run(
        ["sh", "-ec", script],
        capture_output=True,
        text=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        check=False,
    )


def test_download_script_refuses_a_checksum_mismatch(render_with, tmp_path):
    import hashlib

    payload = b"onnx-bytes"
    good = hashlib.sha256(payload).hexdigest()
    for sha, should_pass in ((good, True), ("c" * 64, False)):
        item = render_with(
            "dev", _download([{"url": "https://m.example/x", "sha256": sha, "path": "m/1/model.onnx"}])
        )
        script = pod_spec(item)["initContainers"][0]["command"][2]
        result = _run_fetch_script(script, tmp_path, payload, sha)
        placed = tmp_path / "models" / "m" / "1" / "model.onnx"
        if should_pass:
            assert result.returncode == 0, result.stderr
            assert placed.read_bytes() == payload
            placed.unlink()
        else:
            assert result.returncode != 0
            assert "sha256 mismatch" in result.stderr
            assert not placed.exists(), "a mismatching artifact must never land in the repository"


@pytest.mark.parametrize(
    ("repository", "message"),
    [
        (
            {"pvc": {"enabled": True}, "image": {"enabled": True}},
            "modelRepository: enable exactly one source",
        ),
        ({"pvc": {"enabled": False}}, "modelRepository: enable exactly one source"),
        (
            {"pvc": {"existingClaim": "x"}},
            "modelRepository.pvc: set either existingClaim or nfs.server, not both",
        ),
        (
            {"pvc": {"nfs": {"server": "", "path": ""}}},
            "modelRepository.pvc: set existingClaim, or nfs.server",
        ),
        ({"pvc": {"nfs": {"server": "nfs", "path": ""}}}, "modelRepository.pvc.nfs.path: required"),
        ({**ONLY_PVC_OFF, "objectStore": {"enabled": True}}, "modelRepository.objectStore.uri: required"),
        (
            {**ONLY_PVC_OFF, "download": {"enabled": True}},
            "modelRepository.download.artifacts: list at least one",
        ),
    ],
    ids=[
        "two-sources",
        "no-source",
        "claim-and-nfs",
        "pvc-without-target",
        "nfs-without-path",
        "object-store-without-uri",
        "download-without-artifacts",
    ],
)
def test_source_guards_fail_naming_the_value_path(render_with, repository, message):
    with pytest.raises(errors.RenderError, match=message.replace(".", r"\.")):
        render_with("dev", {"modelRepository": repository})


def test_object_store_refuses_the_committed_state_it_cannot_read(render_with):
    with pytest.raises(
        errors.RenderError,
        match=r"server\.committedState\.enabled: the committed state is read from a filesystem",
    ):
        render_with(
            "dev", {"modelRepository": {**ONLY_PVC_OFF, "objectStore": {"enabled": True, "uri": "gs://b/m"}}}
        )
