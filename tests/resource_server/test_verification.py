"""proxy.resource_server: the token check and its verified-token cache."""

from __future__ import annotations

import typing as t

import pytest

import proxy.resource_server.verification
from proxy import create_app
from proxy.config.settings import Settings
from tests.oauth_client import OAuthTestClient


def _status(client: t.Any, token: str) -> int:
    response = client.get(
        "/oauth2/forward-auth", headers={"Authorization": f"Bearer {token}"}
    )
    return int(response.status_code)


def test_a_cached_token_still_stops_at_revocation(oauth: OAuthTestClient) -> None:
    """RS-1: the cache keeps signature checks, never the revocation answer."""
    client_id, tokens = oauth.tokens()
    assert _status(oauth.client, tokens["access_token"]) == 200
    assert _status(oauth.client, tokens["access_token"]) == 200
    oauth.client.post(
        "/oauth2/revoke",
        data={"token": tokens["refresh_token"], "client_id": client_id},
    )
    assert _status(oauth.client, tokens["access_token"]) == 401


def test_a_cached_token_still_expires(
    oauth: OAuthTestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RS-1: expiry is re-checked on every cache hit."""
    _, tokens = oauth.tokens()
    assert _status(oauth.client, tokens["access_token"]) == 200
    later = proxy.resource_server.verification.time.time() + 3600 + 120
    monkeypatch.setattr(proxy.resource_server.verification.time, "time", lambda: later)
    assert _status(oauth.client, tokens["access_token"]) == 401


def test_the_cache_is_per_app(
    oauth: OAuthTestClient, settings: Settings, fake_redis: t.Any
) -> None:
    """RS-2: a token one app verified is not thereby good at another audience."""
    _, tokens = oauth.tokens()
    assert _status(oauth.client, tokens["access_token"]) == 200
    other = create_app(
        settings.replace(resource="http://127.0.0.1:9999/other"),
        redis_client=fake_redis,
    )
    assert _status(other.test_client(), tokens["access_token"]) == 401
