"""Accessors for rendered objects, shared by the chart tests."""

from __future__ import annotations

from typing import Any

from tritonops.chart import render


def triton_container(item: render.Rendering) -> dict[str, Any]:
    pod = item.one("Deployment")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "triton")


def pod_spec(item: render.Rendering) -> dict[str, Any]:
    return item.one("Deployment")["spec"]["template"]["spec"]


def server_args(item: render.Rendering) -> list[str]:
    """The tritonserver command line, after the launcher's `--`."""
    args = triton_container(item)["args"]
    return args[args.index("--") + 1 :]


def launcher_args(item: render.Rendering) -> list[str]:
    args = triton_container(item)["args"]
    return args[: args.index("--")]
