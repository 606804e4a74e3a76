# The image the chart's promotion Job runs (promotion.job.image): the tritonops CLI and its
# dependencies. Build and push it from the repository root:
#   docker build -t REGISTRY/tritonops:0.1.0 . && docker push REGISTRY/tritonops:0.1.0
# then set promotion.job.image.repository, .tag (and .digest) in the chart's values.
#
# It is large, about 1.5 GB: it installs every runtime dependency of the package (checkov for the
# gates, the nvidia-pytriton wheel with the Triton server, onnxruntime, MLflow, ...), although a
# promotion needs only a few of them. A slimmer, promotion-only image (an install extra holding
# just what `promote --service` imports) is future work.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/tritonops
# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml (or README.md, the
# package's readme) changes, not on every source change. An empty package stands in for the source
# so that `pip install -e .` resolves and installs every dependency.
COPY pyproject.toml README.md ./
RUN mkdir -p src/tritonops && touch src/tritonops/__init__.py && pip install -e .
# Then the source, and the package itself without its dependencies (already installed).
# Editable on purpose: the package reads the chart's own files from the source tree
# (charts/triton/files/committed_state.py is the one parser of current.json, shared with the pods),
# which a plain `pip install .` would leave behind.
COPY . .
RUN pip install -e . --no-deps

# Non-root, numeric: the chart sets the UID it writes the repository as (Triton's 1000 by default).
USER 1000:1000
ENTRYPOINT ["tritonops"]
CMD ["--help"]
