# Every target does its own set-up on a fresh Debian machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
DURATION ?= 10m

.PHONY: setup system-deps cache-servers demo test lint typecheck unit bench soak lock clean image-deps image image-test

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

# memcached and Redis for the shared results-cache backends' tests (not needed by the demo).
cache-servers:
	@command -v memcached >/dev/null && command -v redis-server >/dev/null || \
	  { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq memcached redis-server; }
	@# the packages start system services on :11211 and :6379; tests start their own on free ports
	@-$(SUDO) systemctl stop memcached redis-server >/dev/null 2>&1 || true

setup: system-deps cache-servers $(STAMP)

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
	$(BIN)/ruff check proxy emulator demo tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: setup lint typecheck
	$(BIN)/pytest -q -n 2 $(PYTEST_ARGS)

unit: setup lint typecheck
	$(BIN)/pytest -q -n 2 tests/unit $(PYTEST_ARGS)

# `make bench BENCH=dashboard` (or any comma-separated targets of `bench/run.py --only`)
bench: setup
	$(BIN)/python bench/run.py $(if $(BENCH),--only $(BENCH))

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

# The container image, built and run with podman (no registry and no Docker engine needed):
# the Debian bases are made locally with mmdebstrap unless PYTHON_IMAGE names another base
# (e.g. `make image PYTHON_IMAGE=python:3.11-slim-bookworm` where a registry is reachable).
IMAGE ?= localhost/prom-keycloak-proxy:dev
BASE_PREFIX := localhost/prom-keycloak-proxy-base
PYTHON_IMAGE ?= $(BASE_PREFIX):builder-bookworm-3.11
RUNTIME_IMAGE ?= $(if $(findstring $(BASE_PREFIX),$(PYTHON_IMAGE)),$(BASE_PREFIX):runtime-bookworm-3.11,$(PYTHON_IMAGE))
# runc and explicit rlimits: podman's defaults ask for limits these machines refuse.
PODMAN := podman --runtime runc
PODMAN_LIMITS := --ulimit nofile=20000:20000 --ulimit nproc=1000:1000
# The machine's pip configuration and CA bundle must be visible to the build's installs.
BUILD_MOUNTS := $(if $(wildcard /etc/pip.conf),-v /etc/pip.conf:/etc/pip.conf:ro) -v /etc/ssl/certs:/etc/ssl/certs:ro

image-deps:
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null || \
	  { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc mmdebstrap; }

image: image-deps
	@case "$(PYTHON_IMAGE)" in $(BASE_PREFIX):*) $(SUDO) deploy/image/base.sh $(PYTHON_IMAGE) $(RUNTIME_IMAGE);; esac
	$(SUDO) $(PODMAN) build $(PODMAN_LIMITS) --network=host $(BUILD_MOUNTS) \
	  --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) --build-arg RUNTIME_IMAGE=$(RUNTIME_IMAGE) -t $(IMAGE) .
	@$(SUDO) podman image inspect $(IMAGE) --format 'built $(IMAGE): {{.Size}} bytes'

# Runs the image as its non-root user with a read-only root against the demo's Prometheus and
# the Keycloak emulator (on the host), then the chart's rendered manifests with `podman kube play`.
image-test: setup image
	IMAGE_UNDER_TEST=$(IMAGE) $(SUDO) $(BIN)/pytest -q -p no:xdist -s tests/container $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_VENV) .demo .tmp
