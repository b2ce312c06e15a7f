# oddsflow — the two commands a newcomer needs:
#   make demo   set up everything, start local Kafka + Postgres, run a simulated match day end to end
#   make test   set up everything, start the services, run the whole test suite
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: setup services demo test test-unit check bench down clean

# The demo and the tests use the built-in dev secrets (provider tokens), which every process
# refuses outside dev mode.
demo test test-unit: export ODDSFLOW_ENV = dev

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test,dev]"
	touch $(STAMP)

setup: $(STAMP)

services: setup
	$(BIN)/oddsflow services up
	$(BIN)/oddsflow topology apply
	$(BIN)/oddsflow db migrate

demo: services
	$(BIN)/oddsflow demo

test: services
	$(BIN)/pytest -q -p no:cacheprovider

test-unit: setup
	$(BIN)/pytest -q -m "not integration" tests/domain tests/streams

check: setup
	scripts/check

bench: services
	$(BIN)/oddsflow bench

down:
	-$(BIN)/oddsflow services down

clean: down
	rm -rf .run .cache $(VENV)
