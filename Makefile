# Two entry points, each working on a fresh machine: `make demo`, `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch, installed before sharescan[torch] so that pip keeps
# it: a bare `torch` requirement pulls a multi-GB CUDA build on Linux.
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# Where that index cannot be reached (a CI with only the package registry),
# give up within seconds and take torch from the configured registry instead.
PIP_NET := --timeout 10 --retries 1
# Test workers: two pytest-xdist processes (the fuzz cases stay on one of
# them: they start their own workers). On two idle cores this takes the suite
# from ~75 s to ~60 s; on a machine busy with other work one process is
# faster: `make test JOBS=0`.
JOBS ?= 2

.PHONY: setup demo test browser check lint typecheck fixtures bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet $(PIP_NET) '$(TORCH)' --index-url $(TORCH_INDEX) \
	  || $(BIN)/pip install --quiet '$(TORCH)'
	$(BIN)/pip install --quiet -e '.[torch,dev,zoo]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	mkdir -p reports/demo
	$(BIN)/sharescan analyze fixtures/tiny_lm_folded.onnx fixtures/tiny_lm.pt fixtures/pair_a.safetensors fixtures/pair_b.safetensors --report reports/demo/analysis.md

# The browser test drives Debian's Chromium: installed here (a no-op when present) so
# that `make test` works on a fresh machine too.
browser:
	.ci/install_browser.sh

test: $(STAMP) browser
	$(BIN)/python -m pytest -q $(if $(filter 0,$(JOBS)),,-n $(JOBS) --dist loadgroup)

# Lint and type-check (CI runs these after `make test`; `make -k check` runs both).
check: lint typecheck

lint: $(STAMP)
	$(BIN)/ruff check sharescan tests benchmarks fixtures

typecheck: $(STAMP)
	$(BIN)/mypy sharescan

fixtures: $(STAMP)
	$(BIN)/python -m fixtures.make_fixtures

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_analyze.py

clean:
	rm -rf $(VENV) reports/demo
