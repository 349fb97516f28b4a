# prom-keycloak-proxy container image.
#
# Two stages: the builder installs the hash-locked runtime dependencies
# (requirements-runtime.lock) and then the project itself into /opt/venv with uv;
# the runtime stage copies only that venv onto the same slim Python base, so the
# final image has no uv, no compiler and no build cache.
#
# The image runs as a numeric non-root user (10001, group 0 so that OpenShift's
# arbitrary UIDs can read it too), writes nothing outside /tmp (mount an emptyDir
# there when the root filesystem is read-only) and needs no shell at run time.
# There is deliberately no HEALTHCHECK: Kubernetes uses the chart's probes on the
# metrics port (/healthz, /readyz).
#
#   docker build -t prom-keycloak-proxy:local .
#   docker run --rm -p 8080:8080 -p 9091:9091 --env-file proxy.env prom-keycloak-proxy:local

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=0 \
    VIRTUAL_ENV=/opt/venv

RUN pip install uv==0.13.9 \
    && uv venv /opt/venv --python /usr/local/bin/python3.11

WORKDIR /src

# Dependency layer: changes only when the lock changes.
COPY requirements-runtime.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/venv/bin/python --require-hashes --no-deps \
        -r requirements-runtime.lock

# Project layer.
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY policies ./policies
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/venv/bin/python --no-deps . \
    && mkdir -p /app \
    && cp -r policies /app/policies


FROM ${PYTHON_IMAGE} AS runtime

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
