"""POST /oauth2/introspect: RFC 7662, for trusted resource servers only."""

from __future__ import annotations

import base64
import typing as t

import pytest

from proxy import create_app
from proxy.config.env import StaticClient
from proxy.config.settings import Settings
from proxy.keys.keyring import sha256_hex
from tests.oauth_client import OAuthTestClient

RS_ID = "mcp-resource-server"
RS_SECRET = "rs-secret-with-+%:-characters"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    introspector = StaticClient(
        client_id=RS_ID,
        redirect_uris=("https://rs.example/unused",),
        client_name="Resource server",
        client_secret_hash=sha256_hex(RS_SECRET),
        can_introspect=True,
    )
    return settings.replace(static_clients=(introspector,))


def _basic(client_id: str, secret: str) -> dict[str, str]:
    from urllib.parse import quote_plus

    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _introspect(client: t.Any, token: str, **headers: str) -> t.Any:
    return client.post(
        "/oauth2/introspect",
        data={"token": token},
        headers=headers or _basic(RS_ID, RS_SECRET),
    )


def test_introspection_is_advertised_when_a_resource_server_may_use_it(
    client: t.Any,
) -> None:
    """DISC-11: advertised only when implemented and usable."""
    document = client.get("/.well-known/oauth-authorization-server").get_json()
    assert document["introspection_endpoint"].endswith("/oauth2/introspect")


def test_introspection_is_not_advertised_without_an_introspector(
    settings: Settings, fake_redis: t.Any
) -> None:
    app = create_app(settings.replace(static_clients=()), redis_client=fake_redis)
    document = (
        app.test_client().get("/.well-known/oauth-authorization-server").get_json()
    )
    assert "introspection_endpoint" not in document


def test_active_access_token_has_the_full_claim_set(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    """INTRO-2: an active token comes with its full claim set."""
    client_id, tokens = oauth.tokens()
    response = _introspect(client, tokens["access_token"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["active"] is True
    assert body["client_id"] == client_id
    assert body["aud"] == "http://127.0.0.1:9999/mcp"
    assert body["iss"] == "http://127.0.0.1:9999"
    assert body["sub"] == "alice@example.com"
    assert body["token_type"] == "access_token"
    assert body["scope"] == tokens["scope"]
    assert body["exp"] > body["iat"]


def test_active_refresh_token_is_described(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    client_id, tokens = oauth.tokens()
    body = _introspect(client, tokens["refresh_token"]).get_json()
    assert body["active"] is True
    assert body["token_type"] == "refresh_token"
    assert body["client_id"] == client_id


@pytest.mark.parametrize("token", ["garbage", "a" * 22 + "." + "b" * 43, ""])
def test_unknown_token_is_exactly_inactive(client: t.Any, token: str) -> None:
    """INTRO-3: unknown → {"active": false} and nothing else."""
    response = _introspect(client, token)
    if token == "":
        assert response.status_code == 400
        return
    assert response.get_json() == {"active": False}


def test_revoked_tokens_are_exactly_inactive(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    """INTRO-3: a revoked token → {"active": false}."""
    client_id, tokens = oauth.tokens()
    revoked = client.post(
        "/oauth2/revoke",
        data={"token": tokens["refresh_token"], "client_id": client_id},
    )
    assert revoked.status_code == 200
    assert _introspect(client, tokens["access_token"]).get_json() == {"active": False}
    assert _introspect(client, tokens["refresh_token"]).get_json() == {"active": False}


def test_unauthenticated_caller_is_refused(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    """INTRO-1: no authentication → 401 invalid_client with a Basic challenge."""
    _, tokens = oauth.tokens()
    response = client.post("/oauth2/introspect", data={"token": tokens["access_token"]})
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert response.headers["Cache-Control"] == "no-store"


def test_wrong_secret_is_invalid_client(client: t.Any) -> None:
    response = _introspect(client, "x", **_basic(RS_ID, "wrong"))
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_an_mcp_client_may_not_introspect(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    """INTRO-4: a public DCR client → 401, and learns nothing about the token."""
    client_id, tokens = oauth.tokens()
    response = client.post(
        "/oauth2/introspect",
        data={"token": tokens["access_token"], "client_id": client_id},
    )
    assert response.status_code == 401
    assert "active" not in response.get_json()
