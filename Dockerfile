# prom-keycloak-proxy container image.
#
# Two stages: the builder installs the hash-locked runtime dependencies
# (requirements-runtime.lock) and then the service package itself into /opt/venv with uv;
# the runtime stage copies only that venv onto a matching Python base, so the final image
# has no uv, no pip, no compiler, no build cache — and no emulator, demo or test code
# (only `proxy/` is copied into the build).
#
# Bases (build arguments): the official `python:3.11-slim-bookworm` by default, or a Debian
# bookworm root filesystem made locally with mmdebstrap (`make image`, no registry needed):
#   PYTHON_IMAGE   builder base: Python 3.11 with the venv module
#   RUNTIME_IMAGE  runtime base: the same Python at the same path (defaults to PYTHON_IMAGE)
#
# The image runs as a numeric non-root user (10001, group 0 so that OpenShift's arbitrary
# UIDs can read it too), writes nothing outside /tmp (mount an emptyDir there when the root
# filesystem is read-only) and needs no shell at run time. There is deliberately no
# HEALTHCHECK: Kubernetes uses the chart's probes on the metrics port (/healthz, /readyz).
#
#   podman build -t prom-keycloak-proxy:local .          (docker build works the same way)
#   podman run --rm --read-only -p 8080:8080 -p 9091:9091 --env-file proxy.env prom-keycloak-proxy:local

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUNTIME_IMAGE=${PYTHON_IMAGE}

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NATIVE_TLS=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=0

# uv in a throw-away venv of its own: Debian's system Python is "externally managed".
# The venv is made without pip: nothing in /opt/venv but the locked packages.
RUN python3.11 -m venv /opt/uv \
    && /opt/uv/bin/pip install --quiet uv==0.13.9 \
    && /opt/uv/bin/uv venv /opt/venv --python "$(command -v python3.11)"

WORKDIR /src

# Dependency layer: changes only when the lock changes.
COPY requirements-runtime.lock ./
RUN /opt/uv/bin/uv pip install --python /opt/venv/bin/python --require-hashes --no-deps \
        -r requirements-runtime.lock

# Project layer: the service package only (plus the policies example and schema, as data).
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY policies ./policies
RUN /opt/uv/bin/uv pip install --python /opt/venv/bin/python --no-deps . \
    && mkdir -p /app \
    && cp -r policies /app/policies


FROM ${RUNTIME_IMAGE} AS runtime

LABEL org.opencontainers.image.title="prom-keycloak-proxy" \
      org.opencontainers.image.description="Authorizing PromQL proxy: Keycloak UMA permissions enforced on every query" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp

# Owned by root and only readable by the app user: nothing in the image is writable.
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app

WORKDIR /app
USER 10001:0

EXPOSE 8080 9091

# Exec form: SIGTERM reaches Python directly and the proxy drains within 25 s.
ENTRYPOINT ["prom-keycloak-proxy"]
CMD ["serve"]
