# Two entry points, each working on a fresh machine: `make demo`, `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test fixtures bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	# The CPU wheel first: a bare `torch` requirement would pull a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	mkdir -p reports/demo
	$(BIN)/sharescan analyze fixtures/tiny_lm_folded.onnx fixtures/tiny_lm.pt fixtures/pair_a.safetensors fixtures/pair_b.safetensors --report reports/demo/analysis.md

test: $(STAMP)
	$(BIN)/python -m pytest -q

fixtures: $(STAMP)
	$(BIN)/python -m fixtures.make_fixtures

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_analyze.py

clean:
	rm -rf $(VENV) reports/demo
