# Two commands a user needs: `make demo` (set up + run the main job) and `make test`.
# `make serve` runs it as a service: Prefect server + UI, the deployments and a watched ./inbox.
# The environment is created on first use and refreshed when pyproject.toml or constraints change.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.vecpress-installed
# GPU=1 adds onnxruntime-gpu, a faiss GPU build and dask-cuda (see README "GPUs").
EXTRAS := dev$(if $(GPU),$(comma)gpu)
comma := ,

.PHONY: demo test test-fast typecheck lint clean install serve

# What `make serve` ingests nightly and watches (files dropped here are ingested within seconds).
SOURCES ?= ./inbox

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: any unpinned torch requirement would pull the multi-GB CUDA build.
	$(BIN)/python -m pip install -c constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vecpress demo

serve: $(STAMP)
	mkdir -p $(SOURCES)
	$(BIN)/vecpress serve $(SOURCES)

# The whole suite: lint, type check, every test (servers, whole CLI runs, failure paths).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -n 2

# The inner loop (docs/architecture.md): no servers, no whole CLI runs, a few minutes.
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not slow"

typecheck: $(STAMP)
	$(BIN)/mypy

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache .mypy_cache
