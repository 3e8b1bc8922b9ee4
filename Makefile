# leopard_reid — two commands do all set-up on a fresh machine:
#   make demo   creates .venv with pip, installs the project, runs the main job on the embedded default
#   make test   same venv, runs the test suite (notebooks included)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m leopard_reid.cli demo --out demo_out

test: $(STAMP)
	$(PY) -m ruff check leopard_reid tests benchmarks
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check leopard_reid tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_match.py

clean:
	rm -rf demo_out .pytest_cache .ruff_cache
