# The set-up commands of the README: `make demo`, `make test` and `make bench`. Each creates the
# virtual environment .venv (with the Python found as python3) when missing, and installs what
# it needs when that is missing or pyproject.toml changed: demo the package alone, test the
# `test` extra, bench the `bench` extra. Each keeps its own stamp file in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean wheel-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	touch $@

# Everything at once (the test tools and the bench's peer library), for development.
$(BIN)/.installed: $(VENV)/.installed-test $(VENV)/.installed-bench
	touch $@

demo: $(VENV)/.installed-runtime
	$(BIN)/dala demo

test: $(VENV)/.installed-test
	$(BIN)/ruff check dala_events projections tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest

# BENCH_ARGS: options of `python -m benchmarks`, e.g. BENCH_ARGS="--learners 50 --only writes".
bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# The package as a user installs it: a wheel (not an editable install) in a new virtual
# environment, its dependencies from PyPI, and the main job run from an empty folder.
wheel-check: | $(BIN)/python
	rm -rf build/wheel-check && mkdir -p build/wheel-check/run
	$(BIN)/python -m pip wheel --quiet --no-deps . -w build/wheel-check
	$(PYTHON) -m venv build/wheel-check/venv
	build/wheel-check/venv/bin/python -m pip install --quiet build/wheel-check/*.whl
	cd build/wheel-check/run && ../venv/bin/dala demo && ../venv/bin/dala verify
	rm -rf build/wheel-check

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
