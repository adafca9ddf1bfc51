# SPDX-License-Identifier: GPL-2.0
# make run    set up, then run the suite (here if this machine can time rmap
#             walks, else in a QEMU guest) and print TAP and a summary table
# make test   set up, then run our tests: units and guest integration tests
# make lint   ruff, mypy and shellcheck

VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup run test test-unit lint clean bench-scale

setup:
	@./scripts/setup.sh

run: setup
	PYTHON=$(PY) ./run_tests.sh $(ARGS)

test: setup
	$(PY) -m pytest tests $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check tools/testing/rmap tests
	$(PY) -m mypy
	shellcheck run_tests.sh scripts/*.sh scripts/ground-truth/build.sh .ci/run automated/linux/rmap/rmap.sh

# The suite's own cost as scenarios grow (benchmarks/scale.py; not a test).
BENCH_ARGS ?=
bench-scale: setup
	$(PY) benchmarks/scale.py $(BENCH_ARGS)

clean:
	$(MAKE) -C tools/testing/rmap clean
