# The two commands: `make run` and `make test`. Each creates .venv and installs what it needs first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Every install is hash-checked against a lock: requirements-build.lock (pip, setuptools), requirements-dev.lock
# (runtime + dev + devstack extras: tests, `herald dev`) and requirements.lock (runtime only: the image).
# `make lock` regenerates them with uv for CPython 3.11 on Linux x86_64, whatever machine runs it, keeping the
# current pins; `make lock UPGRADE=1` moves every pin to the newest release the floors in pyproject.toml allow.
UV_VERSION := 0.13.9
LOCK_VENV := $(VENV)/lock-tools
UV := $(LOCK_VENV)/bin/uv
LOCK_ARGS := --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	--custom-compile-command "make lock (CPython 3.11, Linux x86_64)" $(if $(UPGRADE),--upgrade)

.PHONY: run test browser test-slow lint typecheck bench bench-critical bench-channels bench-email bench-memory venv clean schema lock

# The build tools first (the pip that checks the hashes, the setuptools that builds Herald), then the exact
# dependency set, then Herald itself without letting pip resolve anything (--no-deps) or fetch unhashed build
# requirements (--no-build-isolation).
$(STAMP): pyproject.toml requirements-build.lock requirements-dev.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-build.lock
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/herald dev

# The console's browser tests drive Debian's Chromium (Playwright's own browser download does not work here).
CHROMIUM ?= /usr/bin/chromium
browser:
	test -x $(CHROMIUM) || { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q chromium >/dev/null \
		|| { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }
	$(CHROMIUM) --version

# pytest-xdist processes: the integration tests mostly wait (on workers, brokers, timeouts), so three share two
# cores well (15 min serial, about 6.5 in parallel here). Each has its own Tansu and its own slice of ports.
TEST_PROCESSES ?= 3
test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/herald templates check
	$(BIN)/python -m pytest -m "not slow" -q -n $(TEST_PROCESSES) --dist loadgroup

# The long variants: 20,000 events through SIGKILLed workers, and the priority test with its full backlog.
test-slow: $(STAMP)
	HERALD_CRASH_EVENTS=20000 $(BIN)/python -m pytest -q -s tests/integration/test_crash.py
	HERALD_TEST_BACKLOG=20000 $(BIN)/python -m pytest -q -s tests/integration/test_priority.py
	$(BIN)/python -m pytest -q -m slow tests/integration/test_lifecycle.py

lint: $(STAMP)
	$(BIN)/ruff check .

# mypy, strict, over the folders [tool.mypy] in pyproject.toml names (incremental: .mypy_cache).
typecheck: $(STAMP)
	$(BIN)/mypy

# One table, each row Herald against the bare client in the same run (bench/table.py; about 5 minutes on 2 cores).
# `make bench BENCH_ARGS=--full` runs the acceptance sizes; `--only routing,email` some rows.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-critical: $(STAMP)
	$(BIN)/python -m bench.critical_latency

bench-channels: $(STAMP)
	$(BIN)/python -m bench.channel_throughput

bench-email: $(STAMP)
	$(BIN)/python -m bench.email_throughput

bench-memory: $(STAMP)
	$(BIN)/python -m bench.memory

# The committed contracts: schemas/jsonschema/*.json and schemas/asyncapi.yaml (every topic, AsyncAPI 3.0).
schema: $(STAMP)
	$(BIN)/herald schema --write
	$(BIN)/herald asyncapi --write

# The dev lock first; the runtime lock is constrained by it, so production runs exactly the versions tested.
lock:
	test -x $(UV) || { $(PY) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/python -m pip install --quiet uv==$(UV_VERSION); }
	$(UV) pip compile pyproject.toml --extra dev --extra devstack $(LOCK_ARGS) -o requirements-dev.lock
	$(UV) pip compile pyproject.toml -c requirements-dev.lock $(LOCK_ARGS) -o requirements.lock
	$(UV) pip compile requirements-build.in $(LOCK_ARGS) -o requirements-build.lock

clean:
	rm -rf $(VENV) .herald .pytest_cache .mypy_cache
