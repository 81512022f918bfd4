# The two set-up commands of the README: `make demo` and `make test`. Each creates the
# virtual environment .venv (with the Python found as python3) when missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/dala demo

test: $(BIN)/.installed
	$(BIN)/ruff check dala_events projections tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest

# BENCH_ARGS: options of `python -m benchmarks`, e.g. BENCH_ARGS="--learners 50 --only writes".
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
