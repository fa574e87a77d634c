"""Shared fixtures: a real redis-server, fakeredis, a real OIDC provider, the app.

`redis_url` starts a private `redis-server` (or uses TEST_REDIS_URL). Store
tests run on both `fake` and `real` clients; races run on `real` only.
The upstream is `oidc-provider-mock`, a real OIDC provider, in a thread.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import tempfile
import time
import typing as t
import uuid
import warnings
from collections.abc import Iterator

import fakeredis
import pytest
import redis
from oidc_provider_mock import run_server_in_thread

from proxy import create_app
from proxy.config.settings import Settings

from .document_server import ca_file  # noqa: F401 - fixture
from .document_server import document_ca  # noqa: F401 - fixture
from .document_server import document_server  # noqa: F401 - fixture
from .document_server import trust_test_ca  # noqa: F401 - fixture
from .oauth_client import OAuthTestClient

PUBLIC_URL = "http://127.0.0.1:9999"
RESOURCE = PUBLIC_URL + "/mcp"
SECRET_KEY = bytes(range(32))


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: t.Any) -> None:
    """The developer's shell and .env never leak into a test."""
    for name in list(os.environ):
        if name.startswith(("OAUTH_", "MCP_", "PROXY_")) or name in (
            "PUBLIC_URL",
            "REDIS_URL",
        ):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Collect what outlived the last test before pytest's final unraisable check.

    Clients held until the end of the session (a daemon thread's, a module
    cache's, a session fixture's app) are finalised here; redis-py closes
    their sockets, but a socket whose connection object a cycle kept alive
    is only closed by its own finaliser, which warns (ResourceWarning) and,
    under ``filterwarnings = error``, fails the whole run after it passed.
    A leak while a test runs is still caught by pytest, test by test.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _start_redis() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI (.ci/run installs it)")
        pytest.skip("redis-server is not installed")
    workdir = tempfile.mkdtemp(prefix="redis-test-")
    sock = os.path.join(workdir, "redis.sock")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            "0",
            "--unixsocket",
            sock,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"unix://{sock}"
    deadline = time.monotonic() + 10
    while True:
        try:
            # Wait for the socket file first: redis 5.0.0 leaks the socket
            # of a failed connect (an unraisable ResourceWarning here).
            if not os.path.exists(sock):
                raise FileNotFoundError(sock)
            with redis.Redis.from_url(url) as probe:
                probe.ping()
            break
        except (redis.exceptions.ConnectionError, FileNotFoundError):
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if os.environ.get("TEST_REDIS_URL"):
        yield os.environ["TEST_REDIS_URL"]
        return
    yield from _start_redis()


@pytest.fixture
def real_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def fake_redis(fake_server: fakeredis.FakeServer) -> redis.Redis:
    return fakeredis.FakeRedis(server=fake_server, decode_responses=True)


@pytest.fixture(params=["fake", "real"])
def redis_client(request: pytest.FixtureRequest) -> redis.Redis:
    """Both backends: fakeredis for speed, a real redis-server for proof."""
    name = "fake_redis" if request.param == "fake" else "real_redis"
    return t.cast(redis.Redis, request.getfixturevalue(name))


@pytest.fixture(scope="session")
def idp_url() -> Iterator[str]:
    """A real OpenID Connect provider (oidc-provider-mock) as the upstream."""
    with run_server_in_thread() as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def settings(idp_url: str) -> Settings:
    """Test settings; a unique key prefix catches any hard-coded `mcpoauth:`."""
    return Settings(
        public_url=PUBLIC_URL,
        upstream_issuer=idp_url,
        upstream_client_id="proxy-client",
        upstream_client_secret="proxy-secret",
        resource=RESOURCE,
        secret_key=SECRET_KEY,
        key_prefix=f"test-{uuid.uuid4().hex[:8]}:",
        mcp_scopes=("mcp", "mcp:write"),
        code_replay_tolerance_seconds=0,
    )


@pytest.fixture
def store_client(fake_redis: redis.Redis) -> redis.Redis:
    """The Redis client the app uses; override to run an app on `real_redis`."""
    return fake_redis


@pytest.fixture
def app(settings: Settings, store_client: redis.Redis) -> t.Any:
    return create_app(settings, redis_client=store_client)


@pytest.fixture
def client(app: t.Any) -> t.Any:
    return app.test_client()


@pytest.fixture
def oauth(client: t.Any, idp_url: str) -> OAuthTestClient:
    """A scripted MCP client plus browser, driving the test app."""
    return OAuthTestClient(client)
