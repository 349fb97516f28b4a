# Every target does its own set-up on a fresh Debian machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
DURATION ?= 10m

.PHONY: setup system-deps demo test lint typecheck unit bench soak lock clean

$(STAMP): requirements.lock pyproject.toml emulator/pyproject.toml demo/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e . -e ./emulator -e ./demo
	touch $(STAMP)

system-deps:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
	  { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus; }
	@# the Debian package starts a system Prometheus on :9090; the project never uses it
	@-$(SUDO) systemctl stop prometheus >/dev/null 2>&1 || true

setup: system-deps $(STAMP)

# The demo gets its own small virtualenv: the runtime lock plus trustme and setuptools
# (requirements-demo.lock), never the development lock with Helm and Kubernetes validators.
DEMO_VENV := .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed
DEMO_ARGS ?=

$(DEMO_STAMP): requirements-demo.lock pyproject.toml emulator/pyproject.toml demo/pyproject.toml
	$(PY) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/pip install --quiet --require-hashes --no-deps -r requirements-demo.lock
	$(DEMO_VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e . -e ./emulator -e ./demo
	touch $(DEMO_STAMP)

demo: system-deps $(DEMO_STAMP)
	@$(DEMO_VENV)/bin/prom-keycloak-proxy-demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check proxy tests bench demo

typecheck: $(STAMP)
	$(BIN)/mypy

test: setup lint typecheck
	$(BIN)/pytest -q -n 2 --dist loadgroup $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/run.py

soak: setup
	$(BIN)/pytest -q -p no:xdist tests/reliability/test_soak.py --soak-duration=$(DURATION) -s

# uv comes from the dev lock (pinned with hashes); the runtime and demo locks are constrained to
# the dev lock's versions so that the three never disagree.
LOCK_FLAGS := --quiet --generate-hashes --python-version 3.11

lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra fast --extra otel $(LOCK_FLAGS) -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra fast --extra otel -c requirements.lock $(LOCK_FLAGS) \
	  -o requirements-runtime.lock
	$(BIN)/uv pip compile pyproject.toml demo/requirements.in --extra fast --extra otel -c requirements.lock \
	  $(LOCK_FLAGS) -o requirements-demo.lock

clean:
	rm -rf $(VENV) $(DEMO_VENV) .demo .tmp
