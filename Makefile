# Two commands do everything: `make run` (the whole mesh on loopback) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test venv lint typecheck proto proto-check clean

run: $(STAMP)
	$(BIN)/sluice up

# pytest exits 5 when it collects no test; that is reported, not hidden behind make's exit 2.
test: $(STAMP) proto-check lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS) || { rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)"; exit 0; fi; exit $$rc; }

venv: $(STAMP)

# torch is installed first and pinned: 2.13.0 is the CPU wheel; an unpinned torch would pull a
# multi-GB CUDA build. The stamp reinstalls whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[embeddings,dev]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy shared services tests

proto: $(STAMP)
	$(BIN)/python -m shared.protogen

proto-check: $(STAMP)
	$(BIN)/python -m shared.protogen --check

clean:
	rm -rf $(VENV) .sluice .mypy_cache .ruff_cache .pytest_cache
