# The image the chart's promotion Job runs (promotion.job.image): the tritonops CLI and its
# dependencies, nothing else. Build and push it from the repository root:
#   docker build -t REGISTRY/tritonops:0.1.0 . && docker push REGISTRY/tritonops:0.1.0
# then set promotion.job.image.repository, .tag (and .digest) in the chart's values.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/tritonops
COPY . .
# Editable on purpose: the package reads the chart's own files from the source tree
# (charts/triton/files/committed_state.py is the one parser of current.json, shared with the pods),
# which a plain `pip install .` would leave behind.
RUN pip install -e .

# Non-root, numeric: the chart sets the UID it writes the repository as (Triton's 1000 by default).
USER 1000:1000
ENTRYPOINT ["tritonops"]
CMD ["--help"]
