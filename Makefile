# Two commands matter: `make demo` and `make test`. Every target is idempotent: a second
# run does only what is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help
BIN := .venv/bin
DEVTEAM := $(BIN)/devteam
PYTEST_ARGS ?=
PYTEST_MARKS ?=
PYTEST_WORKERS ?= 6

.PHONY: help setup services image migrate lint test down demo bench

help:
	@echo "make demo   - set everything up and run the main job end to end"
	@echo "make test   - set everything up and run lint and the whole test suite"
	@echo "make setup | services | image | migrate | lint | down | bench"

setup:
	@bash scripts/setup.sh

services: setup
	@$(DEVTEAM) services up

image: services
	@$(DEVTEAM) image build

migrate: services
	@$(BIN)/alembic upgrade head

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The suite runs on PYTEST_WORKERS pytest-xdist workers (most of it waits on processes,
# Docker and Aider, so more workers than cores pay: 6 kept a 2-core machine busy, 4 did
# not), longest tests first with idle workers taking work queued on busy ones (worksteal),
# then the `serial` tests (they restart Postgres, Redis and dockerd) in one process.
# The parallel phase ends with its 15 slowest tests (the suite's time is watched).
# PYTEST_MARKS selects within both phases (`make test PYTEST_MARKS="unit or docker"`); a
# `-m` in PYTEST_ARGS would replace each phase's own and is refused.
test: setup services image migrate lint
	@if [[ " $(PYTEST_ARGS) " =~ [[:space:]]-m ]]; then \
	  echo "select tests with PYTEST_MARKS='...', not -m in PYTEST_ARGS (it would replace each phase's own -m)" >&2; \
	  exit 2; fi; \
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal --durations=15 \
	  -m "not serial$(if $(PYTEST_MARKS), and ($(PYTEST_MARKS)))" $(PYTEST_ARGS); a=$$?; \
	$(BIN)/pytest -m "serial$(if $(PYTEST_MARKS), and ($(PYTEST_MARKS)))" $(PYTEST_ARGS); b=$$?; \
	if [ $$a -eq 5 ] && [ $$b -eq 5 ]; then \
	  echo "pytest collected no tests: that is a failure" >&2; exit 1; fi; \
	for r in $$a $$b; do if [ $$r -ne 0 ] && [ $$r -ne 5 ]; then exit $$r; fi; done

down:
	@if [ -x $(DEVTEAM) ]; then $(DEVTEAM) services down; else echo "nothing to stop"; fi

demo: setup services image migrate
	$(DEVTEAM) demo

bench: setup services image migrate
	$(BIN)/python bench/runner.py
	$(BIN)/python bench/sandbox.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/setup.py
