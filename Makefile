# The two commands: `make run` and `make test`. Each creates .venv and installs what it needs first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-slow lint bench bench-critical bench-channels venv clean schema

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/herald dev

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/herald templates check
	$(BIN)/python -m pytest -m "not slow" -q

# The long variants: 20,000 events through SIGKILLed workers, and the priority test with its full backlog.
test-slow: $(STAMP)
	HERALD_CRASH_EVENTS=20000 $(BIN)/python -m pytest -q -s tests/integration/test_crash.py
	HERALD_TEST_BACKLOG=20000 $(BIN)/python -m pytest -q -s tests/integration/test_priority.py

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m bench.email_throughput
	$(BIN)/python -m bench.critical_latency
	$(BIN)/python -m bench.channel_throughput

bench-critical: $(STAMP)
	$(BIN)/python -m bench.critical_latency

bench-channels: $(STAMP)
	$(BIN)/python -m bench.channel_throughput

schema: $(STAMP)
	$(BIN)/herald schema --write

clean:
	rm -rf $(VENV) .herald .pytest_cache
