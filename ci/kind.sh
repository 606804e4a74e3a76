#!/usr/bin/env bash
# `make test-kind`: the kind tier (ci/README.md). Creates or reuses the kind cluster of
# ci/kind-config.yaml, builds the tritonops image the promotion Job runs (about 1.5 GB: every
# runtime dependency) and loads it onto the GPU node, pulls the Triton image on the GPU node with
# retries, then runs tests/kind, which mocks the GPU, fills the model repository claim (in a fresh
# namespace each run) and installs the chart. Where docker, kind, helm or kubectl are missing, it
# runs only the tier, which reports one skip naming what is missing, unless TRITONOPS_REQUIRE_KIND=1
# (the workflow's kind job), where that is a failure. The cluster stays up afterwards (for logs);
# delete it with `kind delete cluster --name "$KIND_CLUSTER_NAME"`.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
export KIND_CLUSTER_NAME=${KIND_CLUSTER_NAME:-tritonops}
export TRITONOPS_KIND_IMAGE=${TRITONOPS_KIND_IMAGE:-tritonops:kind}
PULL_ATTEMPTS=${PULL_ATTEMPTS:-4}

missing=$("$PY" -m tests.kind.cluster missing-tools)
if [[ -n "$missing" ]]; then
  echo "$missing" >&2
  if [[ "${TRITONOPS_REQUIRE_KIND:-0}" != "0" ]]; then
    exit 1
  fi
  exec "$PY" -m pytest -q tests/kind
fi

if ! kind get clusters | grep -qx "$KIND_CLUSTER_NAME"; then
  kind create cluster --name "$KIND_CLUSTER_NAME" --config ci/kind-config.yaml --wait 180s
fi
mkdir -p .tritonops/kind
export KUBECONFIG="$PWD/.tritonops/kind/kubeconfig"
kind get kubeconfig --name "$KIND_CLUSTER_NAME" > "$KUBECONFIG"
export TRITONOPS_KIND_CLUSTER="$KIND_CLUSTER_NAME"

gpu_node=$(kubectl get nodes -l tritonops.dev/kind-pool=gpu -o jsonpath='{.items[0].metadata.name}')

# The promotion Job runs where the repository claim is bound: the GPU node only.
docker build --tag "$TRITONOPS_KIND_IMAGE" .
kind load docker-image "$TRITONOPS_KIND_IMAGE" --name "$KIND_CLUSTER_NAME" --nodes "$gpu_node"

# The Triton image (about 15 GB) goes straight into the GPU node's containerd, once: never through
# the host's docker and `kind load` (a second copy the runner's disk cannot hold). Registries drop
# long pulls now and then, so retry with a growing pause; the kubelet would retry too, but slower
# and inside helm's --wait budget.
triton_image=$("$PY" -m tests.kind.cluster triton-image)
for attempt in $(seq 1 "$PULL_ATTEMPTS"); do
  if docker exec "$gpu_node" crictl pull "$triton_image"; then
    break
  fi
  if [[ "$attempt" == "$PULL_ATTEMPTS" ]]; then
    echo "pulling $triton_image on $gpu_node failed $PULL_ATTEMPTS times" >&2
    exit 1
  fi
  sleep $((attempt * 30))
done

exec "$PY" -m pytest -v -m cluster tests/kind
