# Two commands do everything: `make run` (the whole mesh on loopback) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test venv lint typecheck proto proto-check clean k8s-config images test-containers

run: $(STAMP)
	$(BIN)/sluice up

# The real-LLM tests (-m llm) build llama.cpp on first use (4-14 min); run them with
# `make test PYTEST_ARGS=` or `.venv/bin/pytest -m llm`. The container tests (-m containers)
# build six images and run them with podman: `make test-containers`.
PYTEST_ARGS ?= -m "not llm and not containers"

# pytest exits 5 when it collects no test; that is reported, not hidden behind make's exit 2.
test: $(STAMP) proto-check lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS) || { rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)"; exit 0; fi; exit $$rc; }

venv: $(STAMP)

# torch is installed first and pinned: 2.13.0 is the CPU wheel; an unpinned torch would pull a
# multi-GB CUDA build. The stamp reinstalls whenever pyproject.toml changes. pip runs without
# --quiet, so a first `make run` shows what it downloads instead of minutes of silence.
$(STAMP): pyproject.toml
	@echo "Installing into $(VENV) (first run only; README, 'Install', gives the time and size) ..."
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on --upgrade pip
	$(BIN)/python -m pip install --progress-bar on "torch==2.13.0"
	$(BIN)/python -m pip install --progress-bar on -e ".[embeddings,dev]"
	@echo "Exporting all-MiniLM-L6-v2 to ONNX (once; the services then never load torch) ..."
	$(BIN)/python -m shared.embedding.onnx_export --if-missing
	$(BIN)/python -m shared.embedding.onnx_export --variant int8 --if-missing
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy shared services tests benchmarks

proto: $(STAMP)
	$(BIN)/python -m shared.protogen

proto-check: $(STAMP)
	$(BIN)/python -m shared.protogen --check

clean:
	rm -rf $(VENV) .sluice .mypy_cache .ruff_cache .pytest_cache

# The k8s ConfigMaps are generated from copies of the policy files, since kustomize reads only
# inside k8s/; this refreshes the copies (tests/k8s fails while one differs from its source).
k8s-config:
	grep -Ev '^(#|$$)' k8s/config-sources.txt | while read -r src dst; do cp "$$src" "$$dst"; done

# One image per target of the repo-root Dockerfile, as sluice/<target>:$(IMAGE_TAG): with docker
# where a Docker engine answers, else with podman, which deploy/images.sh installs and sets up
# (deploy/containers.conf) and gives a base image made with debootstrap when PYTHON_IMAGE is
# unset, as no registry image can be pulled here. Idempotent; rebuilds reuse the layer cache.
IMAGE_TAG ?= dev
images:
	IMAGE_TAG=$(IMAGE_TAG) deploy/images.sh

# Builds the images, then plays the dev overlay with podman kube play and runs each image
# hardened (tests/containers, README "Images"); not part of `make test`.
test-containers: $(STAMP) images
	IMAGE_TAG=$(IMAGE_TAG) $(BIN)/python -m pytest -m containers tests/containers -p no:cacheprovider
