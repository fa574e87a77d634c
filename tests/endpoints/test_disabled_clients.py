"""A client the operator disabled gets no authorization, token or refresh."""

from __future__ import annotations

import dataclasses
import io
import json
import typing as t
from pathlib import Path

import pytest
import redis

from proxy import create_app
from proxy.cli import admin
from proxy.config.settings import ClientDocuments
from proxy.config.settings import Settings
from proxy.config.settings import StaticClient
from tests.document_server import DocumentServer
from tests.oauth_client import REDIRECT_URI
from tests.oauth_client import OAuthTestClient
from tests.redis_round_trips import RoundTrips

from ._helpers import assert_json_error
from ._helpers import assert_page

STATIC_ID = "static-client"
CIMD_PATH = "/oauth/disabled-client.json"
CIMD_REDIRECT = "http://127.0.0.1/callback"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    static = StaticClient(
        client_id=STATIC_ID, redirect_uris=(REDIRECT_URI,), client_name="Static"
    )
    documents = ClientDocuments(allowed_private_hosts=frozenset({"127.0.0.1"}))
    return dataclasses.replace(
        settings, static_clients=(static,), client_documents=documents
    )


@pytest.fixture
def app(settings: Settings, store_client: redis.Redis, trust_test_ca: str) -> t.Any:
    return create_app(settings, redis_client=store_client)


def operator(settings: Settings, store_client: redis.Redis, *argv: str) -> int:
    """`python -m proxy admin ...` against the app's store, with the app's
    static clients in STATIC_CLIENTS_FILE as an operator would have them."""
    static = Path("static-clients.json")
    static.write_text(
        json.dumps(
            [
                {"client_id": c.client_id, "redirect_uris": list(c.redirect_uris)}
                for c in settings.static_clients
            ]
        )
    )
    environ = {
        "REDIS_KEY_PREFIX": settings.key_prefix,
        "STATIC_CLIENTS_FILE": str(static.resolve()),
        "AUDIT_LOG": "false",
    }
    return admin.main(list(argv), environ, io.StringIO(), redis_client=store_client)


def test_a_disabled_client_gets_the_authorize_error_page(
    oauth: OAuthTestClient, settings: Settings, store_client: redis.Redis
) -> None:
    client_id = oauth.register()["client_id"]
    assert operator(settings, store_client, "clients", "disable", client_id) == 0
    _, response = oauth.authorize(client_id)
    assert_page(response, 400)
    assert "disabled" in response.get_data(as_text=True)


def test_a_consent_form_shown_before_disabling_is_refused(
    oauth: OAuthTestClient, settings: Settings, store_client: redis.Redis
) -> None:
    client_id = oauth.register()["client_id"]
    flow, page = oauth.authorize(client_id)
    assert page.status_code == 200
    assert operator(settings, store_client, "clients", "disable", client_id) == 0
    assert_page(oauth.consent(flow), 400)


def test_a_code_issued_before_disabling_is_not_redeemed(
    oauth: OAuthTestClient, settings: Settings, store_client: redis.Redis
) -> None:
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id)
    assert operator(settings, store_client, "clients", "disable", client_id) == 0
    assert_json_error(oauth.token(flow), 401, "invalid_client")


def test_a_disabled_client_cannot_refresh(
    oauth: OAuthTestClient, settings: Settings, store_client: redis.Redis
) -> None:
    client_id, tokens = oauth.tokens()
    assert operator(settings, store_client, "clients", "disable", client_id) == 0
    response = oauth.refresh(client_id, tokens["refresh_token"])
    assert_json_error(response, 401, "invalid_client")


def test_a_disabled_client_cannot_revoke(
    oauth: OAuthTestClient, settings: Settings, store_client: redis.Redis
) -> None:
    client_id, tokens = oauth.tokens()
    assert operator(settings, store_client, "clients", "disable", client_id) == 0
    response = oauth.client.post(
        "/oauth2/revoke",
        data={"token": tokens["refresh_token"], "client_id": client_id},
    )
    assert_json_error(response, 401, "invalid_client")


def test_disabling_ends_the_access_tokens_already_issued(
    oauth: OAuthTestClient, settings: Settings, store_client: redis.Redis
) -> None:
    client_id, tokens = oauth.tokens()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert oauth.client.get("/oauth2/forward-auth", headers=bearer).status_code == 200
    assert operator(settings, store_client, "clients", "disable", client_id) == 0
    assert oauth.client.get("/oauth2/forward-auth", headers=bearer).status_code == 401


def test_an_enabled_client_authorizes_again(
    oauth: OAuthTestClient, settings: Settings, store_client: redis.Redis
) -> None:
    client_id = oauth.register()["client_id"]
    assert operator(settings, store_client, "clients", "disable", client_id) == 0
    assert operator(settings, store_client, "clients", "enable", client_id) == 0
    _, response = oauth.authorize(client_id)
    assert response.status_code == 200
    assert oauth.tokens()[1]["access_token"]


def test_disabling_one_client_leaves_the_others_alone(
    oauth: OAuthTestClient, settings: Settings, store_client: redis.Redis
) -> None:
    disabled = oauth.register()["client_id"]
    other, tokens = oauth.tokens()
    assert operator(settings, store_client, "clients", "disable", disabled) == 0
    assert oauth.refresh(other, tokens["refresh_token"]).status_code == 200


def test_a_disabled_static_client_is_refused_at_authorize_and_token(
    oauth: OAuthTestClient, settings: Settings, store_client: redis.Redis
) -> None:
    flow = oauth.login(STATIC_ID)
    assert operator(settings, store_client, "clients", "disable", STATIC_ID) == 0
    assert_json_error(oauth.token(flow), 401, "invalid_client")
    _, response = oauth.authorize(STATIC_ID)
    assert_page(response, 400)


def test_a_disabled_url_client_is_refused_at_authorize_and_token(
    oauth: OAuthTestClient,
    settings: Settings,
    store_client: redis.Redis,
    document_server: DocumentServer,
) -> None:
    document = document_server.client_document(CIMD_PATH, [CIMD_REDIRECT])
    client_id = document_server.serve_json(CIMD_PATH, document)
    flow = oauth.login(client_id, redirect_uri="http://127.0.0.1:5555/callback")
    assert operator(settings, store_client, "clients", "disable", client_id) == 0
    assert_json_error(oauth.token(flow), 401, "invalid_client")
    _, response = oauth.authorize(
        client_id, redirect_uri="http://127.0.0.1:5555/callback"
    )
    assert_page(response, 400)


@pytest.fixture
def real_app(settings: Settings, real_redis: redis.Redis, trust_test_ca: str) -> t.Any:
    return create_app(settings.replace(trace_ttl_seconds=0), redis_client=real_redis)


def test_a_url_clients_mark_rides_with_its_cached_document(
    real_app: t.Any,
    document_server: DocumentServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At authorize, the mark and the cached document are one round trip,
    the one the document alone took before."""
    document = document_server.client_document(CIMD_PATH, [CIMD_REDIRECT])
    client_id = document_server.serve_json(CIMD_PATH, document)
    redirect = "http://127.0.0.1:5555/callback"
    oauth = OAuthTestClient(real_app.test_client())
    oauth.authorize(client_id, redirect_uri=redirect)  # fetched and cached
    trips = RoundTrips(monkeypatch)
    # The per-IP rate charge, then the mark with the document: two, as before.
    sends, (_, page) = trips.of(
        lambda: oauth.authorize(client_id, redirect_uri=redirect)
    )
    assert page.status_code == 200, page.get_data(as_text=True)
    assert sends == 2
