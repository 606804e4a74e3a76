"""The rendered container's entrypoint (K1) on this machine: run where it exists, skipped (and
recorded) where it does not, never in place of the launcher."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from tritonops.chart import render
from tritonops.runtime import podspec
from tritonops.triton import server as triton_server

NGC_ENTRYPOINT = "/opt/nvidia/nvidia_entrypoint.sh"


def _plan(tmp_path: Path, entrypoint: list[str] | None = None) -> podspec.ReplicaPlan:
    extra = []
    if entrypoint is not None:
        extra.append(tmp_path / "entrypoint.yaml")
        extra[0].write_text(yaml.safe_dump({"image": {"entrypoint": entrypoint}}), encoding="utf-8")
    item = render.render("local", extra_files=extra)
    (plan,) = podspec.plan_replicas(
        item, replicas=1, repository=tmp_path, work_dir=tmp_path, port_offset=0, backends=tmp_path / "b"
    )
    return plan


def test_missing_ngc_entrypoint_is_skipped_and_recorded(tmp_path):
    assert not Path(NGC_ENTRYPOINT).exists(), "this test describes a machine without the NGC image"
    plan = _plan(tmp_path)
    assert plan.skipped_entrypoint == (NGC_ENTRYPOINT,)
    assert plan.command[:2] == (sys.executable, str(tmp_path / "volumes" / "scripts" / "launch.py"))
    assert NGC_ENTRYPOINT not in plan.command
    assert str(triton_server.binary()) in plan.command


def test_entrypoint_that_exists_here_runs_first(tmp_path):
    # /usr/bin/env execs its arguments, as NGC's entrypoint does after its checks.
    plan = _plan(tmp_path, ["/usr/bin/env"])
    assert plan.skipped_entrypoint == ()
    launcher = str(tmp_path / "volumes" / "scripts" / "launch.py")
    assert plan.command[:3] == ("/usr/bin/env", sys.executable, launcher)


def test_no_entrypoint_runs_the_args_and_skips_nothing(tmp_path):
    plan = _plan(tmp_path, [])
    assert plan.skipped_entrypoint == ()
    assert plan.command[0] == sys.executable


def test_skipped_entrypoint_survives_the_plan_file(tmp_path):
    plan = _plan(tmp_path)
    assert podspec.ReplicaPlan.from_dict(plan.to_dict()) == plan
