# syntax=docker/dockerfile:1
# mcp-oauth-proxy as a container: a wheel built in one stage, installed into a
# slim Python 3.11 image in the next, served by gunicorn as a non-root user.
#
#   docker build -t mcp-oauth-proxy .
#   docker build --build-arg EXTRAS= -t mcp-oauth-proxy .   # without the demo extra
#
# The demo extra (oidc-provider-mock, the MCP SDK) lets compose.yaml run the
# demo IdP and MCP server from this same image; production images may drop it.
# Configuration is the environment (README, config/example.env); PORT is honoured.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md mcp_oauth_proxy_gunicorn.py ./
COPY proxy ./proxy
ARG EXTRAS=demo
# Our wheel and one for every dependency, in /wheels. Each dependency ships a
# manylinux wheel for CPython 3.11 (gevent, greenlet, hiredis, cryptography,
# lupa): nothing is compiled, so neither stage needs a compiler.
# (`${EXTRAS:+[$EXTRAS]}`: no brackets for EXTRAS="", which pip refuses as ".[]".)
RUN pip wheel --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

FROM ${PYTHON_IMAGE}
ARG EXTRAS=demo
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PORT=8000
# Installed from the build stage's wheels only (--no-index): the final image
# gets the wheels' contents, not the wheels, the sources or a build toolchain.
# DL3013 (pin versions): /wheels holds exactly one version of each, pinned by
# the build above.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels "mcp-oauth-proxy${EXTRAS:+[$EXTRAS]}" \
    && useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin proxy
# An empty working directory: the app comes from site-packages, a .env here
# (mounted, if you like) is read; gunicorn's metrics files go to /tmp.
WORKDIR /srv/proxy
USER 10001:10001
EXPOSE 8000
# Liveness only (/healthz): /readyz also fails while Redis or the IdP is down,
# and a container restart would not bring those back.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
# The Procfile's command (tests/deploy checks they agree).
CMD ["gunicorn", "-c", "python:mcp_oauth_proxy_gunicorn", "proxy.web.wsgi:app"]
