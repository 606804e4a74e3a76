#!/usr/bin/env bash
# `make test-gpu`: the prod render's Triton container on a real NVIDIA GPU (tests/gpu/test_gpu_node.py).
#
#   scripts/test-gpu.sh           where a GPU is visible: prepare .gpu-bundle when it is missing (needs
#                                 the project's venv), then run the GPU check; evidence lands in
#                                 tests/resources/gpu/. Where none is: one pytest skip with the reason.
#   scripts/test-gpu.sh prepare   only prepare .gpu-bundle (~45 MB), for a GPU machine without the venv
#                                 (this workplace's device: carry .gpu-bundle, see tests/resources/gpu/README.md)
#
# Environment: TRITONOPS_GPU_BUNDLE (default .gpu-bundle), TRITONOPS_GPU_EVIDENCE (default
# tests/resources/gpu), TRITONOPS_GPU_PYTHON (the interpreter with torch and pytest; default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

venv_python=.venv/bin/python
bundle=${TRITONOPS_GPU_BUNDLE:-.gpu-bundle}
export TRITONOPS_GPU_BUNDLE=$bundle
# This checkout's package, whichever checkout the venv was installed from.
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}

prepare() {
    "$venv_python" -m tests.gpu.bundle --bundle "$bundle"
}

if [[ ${1:-} == prepare ]]; then
    prepare
    exit 0
fi

gpu_visible=false
if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU [0-9]'; then
    gpu_visible=true
    if [[ ! -f $bundle/plan.json && -x $venv_python ]]; then
        prepare
    fi
    # The torch interpreter runs the check: the launcher, the readiness script and the model's stub
    # all use it, as the pod uses its image's python3.
    python=${TRITONOPS_GPU_PYTHON:-python3}
else
    # Nothing to run: any interpreter with pytest reports the skip and its reason.
    python=$venv_python
    [[ -x $python ]] || python=python3
fi
# --confcutdir: tests/conftest.py imports the project's package, which a GPU image may not have.
status=0
"$python" -m pytest -q -p no:cacheprovider --confcutdir=tests/gpu -m gpu tests/gpu/test_gpu_node.py || status=$?
# pytest exits 5 when the module skipped as a whole: fine without a GPU, a failure with one.
if [[ $status -eq 5 ]]; then
    if $gpu_visible; then
        echo "test-gpu: a GPU is visible but the GPU check skipped (reason above)" >&2
        exit 1
    fi
    exit 0
fi
exit "$status"
