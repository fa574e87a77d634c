"""Redis outages: 503 temporarily_unavailable, never a 500, and self-recovery."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import typing as t
from collections.abc import Iterator

import fakeredis
import pytest
import redis

from proxy import create_app
from proxy.config.settings import Settings

from .oauth_client import REDIRECT_URI
from .oauth_client import OAuthTestClient

JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html"}


def _authorize_query(client_id: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
        "state": "s",
    }


def _register(client: t.Any) -> t.Any:
    return client.post(
        "/oauth2/register",
        json={"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"},
    )


def assert_unavailable(response: t.Any) -> None:
    """503 temporarily_unavailable, not cached, with Retry-After; never a 500."""
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"] == "temporarily_unavailable"
    assert set(body) <= {"error", "error_description"}
    assert response.headers["Cache-Control"] == "no-store"
    assert int(response.headers["Retry-After"]) > 0
    assert "Location" not in response.headers


# -- fakeredis: the store goes away mid-test and comes back ----------------------------


def test_register_during_an_outage(
    client: t.Any, fake_server: fakeredis.FakeServer
) -> None:
    fake_server.connected = False
    assert_unavailable(_register(client))
    fake_server.connected = True
    assert _register(client).status_code == 201


def test_authorize_during_an_outage(
    client: t.Any, oauth: OAuthTestClient, fake_server: fakeredis.FakeServer
) -> None:
    client_id = oauth.register()["client_id"]
    fake_server.connected = False
    response = client.get(
        "/oauth2/authorize", query_string=_authorize_query(client_id), headers=JSON
    )
    assert_unavailable(response)
    fake_server.connected = True
    response = client.get(
        "/oauth2/authorize", query_string=_authorize_query(client_id), headers=HTML
    )
    assert response.status_code == 200


def test_authorize_page_during_an_outage(
    client: t.Any, oauth: OAuthTestClient, fake_server: fakeredis.FakeServer
) -> None:
    """A browser gets an error page, still 503, never a redirect."""
    client_id = oauth.register()["client_id"]
    fake_server.connected = False
    response = client.get(
        "/oauth2/authorize", query_string=_authorize_query(client_id), headers=HTML
    )
    assert response.status_code == 503
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    assert int(response.headers["Retry-After"]) > 0
    assert "Location" not in response.headers


def test_token_during_an_outage_does_not_spend_the_code(
    oauth: OAuthTestClient, fake_server: fakeredis.FakeServer
) -> None:
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id)
    fake_server.connected = False
    assert_unavailable(oauth.token(flow))
    fake_server.connected = True
    response = oauth.token(flow)
    assert response.status_code == 200
    assert response.get_json()["token_type"] == "Bearer"


def test_refresh_and_revoke_during_an_outage(
    oauth: OAuthTestClient, client: t.Any, fake_server: fakeredis.FakeServer
) -> None:
    client_id, tokens = oauth.tokens()
    fake_server.connected = False
    assert_unavailable(oauth.refresh(client_id, tokens["refresh_token"]))
    assert_unavailable(
        client.post(
            "/oauth2/revoke",
            data={"token": tokens["refresh_token"], "client_id": client_id},
        )
    )
    fake_server.connected = True
    refreshed = oauth.refresh(client_id, tokens["refresh_token"])
    assert refreshed.status_code == 200


def test_callback_during_an_outage(
    oauth: OAuthTestClient, fake_server: fakeredis.FakeServer
) -> None:
    """The transaction survives a failed callback: the retry goes through."""
    client_id = oauth.register()["client_id"]
    flow, response = oauth.authorize(client_id)
    assert response.status_code == 200
    assert oauth.consent(flow).status_code == 303
    oauth.upstream_login(flow)
    fake_server.connected = False
    response = oauth.callback(flow)
    assert response.status_code == 503
    assert response.headers["Cache-Control"] == "no-store"
    assert "Location" not in response.headers
    fake_server.connected = True
    assert oauth.callback(flow).status_code == 302
    assert flow.code


def test_readyz_during_an_outage(
    client: t.Any, fake_server: fakeredis.FakeServer
) -> None:
    assert client.get("/readyz").status_code == 200
    fake_server.connected = False
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"
    assert int(response.headers["Retry-After"]) > 0
    fake_server.connected = True
    assert client.get("/readyz").status_code == 200


def test_readyz_outage_answer_is_not_cached(
    client: t.Any, fake_server: fakeredis.FakeServer
) -> None:
    fake_server.connected = False
    assert client.get("/readyz").headers.get("Cache-Control") == "no-store"


def test_healthz_does_not_need_the_store(
    client: t.Any, fake_server: fakeredis.FakeServer
) -> None:
    fake_server.connected = False
    assert client.get("/healthz").status_code == 200


# -- a real Redis client ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_closed_port_is_503(settings: Settings) -> None:
    """The production client (REDIS_URL) at a closed port answers 503."""
    url = f"redis://127.0.0.1:{_free_port()}/0"
    app = create_app(settings.replace(redis_url=url, secret_key=os.urandom(32)))
    client = app.test_client()
    assert_unavailable(_register(client))
    assert client.get("/readyz").status_code == 503


@pytest.fixture
def own_redis() -> Iterator[t.Callable[[], subprocess.Popen[bytes]]]:
    """A redis-server of this test's own on a TCP port, that it may stop."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="redis-outage-")
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
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
        procs.append(proc)
        deadline = time.monotonic() + 10
        probe = redis.Redis(port=port)
        while True:
            try:
                probe.ping()
                break
            except redis.exceptions.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
            finally:
                probe.close()
        return proc

    start.port = port  # type: ignore[attr-defined]
    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


def test_real_redis_restart_recovers_by_itself(
    settings: Settings, own_redis: t.Any
) -> None:
    server = own_redis()
    redis_client = redis.Redis(port=own_redis.port, decode_responses=True)
    client = create_app(settings, redis_client=redis_client).test_client()
    assert _register(client).status_code == 201
    server.terminate()
    server.wait(timeout=10)
    assert_unavailable(_register(client))
    assert client.get("/readyz").status_code == 503
    own_redis()
    assert _register(client).status_code == 201
    assert client.get("/readyz").status_code == 200
