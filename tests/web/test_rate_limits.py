"""proxy/web/rate_limits.py: limits shared through a real Redis, answered 429.

Every test runs the app on a real redis-server: the buckets are Lua scripts
and TIME, which is what several workers and instances share.
"""

from __future__ import annotations

import dataclasses
import typing as t

import pytest
import redis

from proxy import create_app
from proxy.config.limits import Limits
from proxy.config.limits import Rate
from proxy.config.settings import Settings
from tests.oauth_client import REDIRECT_URI
from tests.oauth_client import OAuthTestClient

CLIENT_IP = "198.51.100.7"


@pytest.fixture
def store_client(real_redis: redis.Redis) -> redis.Redis:
    return real_redis


def _app(settings: Settings, store: redis.Redis, **limits: t.Any) -> t.Any:
    changed = dataclasses.replace(Limits(), **limits)
    return create_app(dataclasses.replace(settings, limits=changed), redis_client=store)


def _from(ip: str) -> dict[str, str]:
    return {"REMOTE_ADDR": ip}


def _register(
    client: t.Any,
    ip: str = CLIENT_IP,
    forwarded_for: str | None = None,
    **body: t.Any,
) -> t.Any:
    payload = {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
    payload.update(body)
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post(
        "/oauth2/register", json=payload, headers=headers, environ_base=_from(ip)
    )


def _assert_too_many(response: t.Any) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json()["error"] == "temporarily_unavailable"


def test_a_client_ip_over_its_rate_gets_429_with_retry_after(
    settings: Settings, store_client: redis.Redis
) -> None:
    client = _app(
        settings, store_client, per_ip={"register": Rate(3, 60)}
    ).test_client()
    for _ in range(3):
        assert _register(client).status_code == 201
    _assert_too_many(_register(client))


def test_another_ip_keeps_its_own_bucket(
    settings: Settings, store_client: redis.Redis
) -> None:
    client = _app(
        settings, store_client, per_ip={"register": Rate(1, 60)}
    ).test_client()
    assert _register(client).status_code == 201
    assert _register(client).status_code == 429
    assert _register(client, ip="203.0.113.1").status_code == 201


def test_a_refused_request_is_not_executed(
    settings: Settings, store_client: redis.Redis
) -> None:
    """The limit runs before the view: a 429 registers nothing."""
    client = _app(
        settings, store_client, per_ip={"register": Rate(1, 60)}
    ).test_client()
    assert _register(client).status_code == 201
    before = set(store_client.keys(f"{settings.key_prefix}client:*"))
    assert _register(client).status_code == 429
    assert set(store_client.keys(f"{settings.key_prefix}client:*")) == before


def test_limits_are_shared_between_app_instances(
    settings: Settings, store_client: redis.Redis
) -> None:
    """Two workers (two apps on one Redis) draw on one bucket."""
    limits: dict[str, t.Any] = {"per_ip": {"register": Rate(2, 60)}}
    first = _app(settings, store_client, **limits).test_client()
    second = _app(settings, store_client, **limits).test_client()
    assert _register(first).status_code == 201
    assert _register(second).status_code == 201
    assert _register(first).status_code == 429


def test_switched_off_limits_never_refuse(
    settings: Settings, store_client: redis.Redis
) -> None:
    client = _app(
        settings, store_client, enabled=False, per_ip={"register": Rate(1, 60)}
    ).test_client()
    assert all(_register(client).status_code == 201 for _ in range(3))


def test_a_forged_forwarded_for_does_not_buy_a_fresh_bucket(
    settings: Settings, store_client: redis.Redis
) -> None:
    client = _app(
        settings, store_client, per_ip={"register": Rate(1, 60)}
    ).test_client()
    assert _register(client).status_code == 201
    forged = _register(client, forwarded_for="192.0.2.99")
    assert forged.status_code == 429


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_bucket(
    settings: Settings, store_client: redis.Redis
) -> None:
    import ipaddress

    client = _app(
        settings,
        store_client,
        per_ip={"register": Rate(1, 60)},
        trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),),
    ).test_client()

    def via_router(ip: str) -> int:
        return int(_register(client, "10.0.0.2", forwarded_for=ip).status_code)

    assert via_router("198.51.100.1") == 201
    assert via_router("198.51.100.1") == 429
    assert via_router("198.51.100.2") == 201


# --------------------------------------------------------------------------- #
# RATE-1: repeated failed client authentication backs off                       #
# --------------------------------------------------------------------------- #


def _confidential(client: t.Any) -> tuple[str, str]:
    body = _register(client, token_endpoint_auth_method="client_secret_post").get_json()
    return body["client_id"], body["client_secret"]


def _refresh(client: t.Any, client_id: str, secret: str, ip: str = CLIENT_IP) -> t.Any:
    return client.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": "not-a-token",
            "client_id": client_id,
            "client_secret": secret,
        },
        environ_base=_from(ip),
    )


def test_failed_client_authentication_backs_off(
    settings: Settings, store_client: redis.Redis
) -> None:
    """RATE-1: after AUTH_FAILURES_ALLOWED wrong secrets, 429 instead of 401."""
    client = _app(settings, store_client, auth_failures_allowed=3).test_client()
    client_id, secret = _confidential(client)
    statuses = [_refresh(client, client_id, "wrong").status_code for _ in range(4)]
    assert statuses[:3] == [401, 401, 401]
    refused = _refresh(client, client_id, "wrong")
    _assert_too_many(refused)
    # During the back-off even the right secret waits: no guessing between.
    _assert_too_many(_refresh(client, client_id, secret))


def test_back_off_is_per_ip_and_client(
    settings: Settings, store_client: redis.Redis
) -> None:
    """An attacker's failures do not lock the real client out from elsewhere."""
    client = _app(settings, store_client, auth_failures_allowed=2).test_client()
    client_id, secret = _confidential(client)
    for _ in range(4):
        _refresh(client, client_id, "wrong")
    assert _refresh(client, client_id, "wrong").status_code == 429
    elsewhere = _refresh(client, client_id, secret, ip="203.0.113.50")
    assert elsewhere.status_code == 400  # authenticated; the token is bad
    assert elsewhere.get_json()["error"] == "invalid_grant"


def test_introspection_guessing_backs_off_too(
    settings: Settings, store_client: redis.Redis
) -> None:
    client = _app(settings, store_client, auth_failures_allowed=2).test_client()
    client_id, _ = _confidential(client)
    statuses = [
        client.post(
            "/oauth2/introspect",
            data={"token": "x", "client_id": client_id, "client_secret": "wrong"},
            environ_base=_from(CLIENT_IP),
        ).status_code
        for _ in range(5)
    ]
    assert statuses[:2] == [401, 401]
    assert 429 in statuses


# --------------------------------------------------------------------------- #
# Per client id and per grant                                                   #
# --------------------------------------------------------------------------- #


def test_failures_never_spend_a_client_ids_bucket(
    settings: Settings, store_client: redis.Redis
) -> None:
    """Everyone shares a well-known client id: only its successes count."""
    client = _app(settings, store_client, per_client=Rate(2, 60)).test_client()
    client_id, secret = _confidential(client)
    statuses = {_refresh(client, client_id, secret).status_code for _ in range(6)}
    assert statuses == {400}


def test_a_client_ids_successes_are_limited(
    settings: Settings, store_client: redis.Redis
) -> None:
    app = _app(settings, store_client, per_client=Rate(1, 60))
    oauth = OAuthTestClient(app.test_client())
    client_id, tokens = oauth.tokens()
    assert oauth.refresh(client_id, tokens["refresh_token"]).status_code == 429


def test_a_grant_over_its_rate_at_the_gateway_gets_429(
    settings: Settings, store_client: redis.Redis
) -> None:
    app = _app(settings, store_client, per_grant=Rate(2, 60))
    oauth = OAuthTestClient(app.test_client())
    _, tokens = oauth.tokens()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    statuses = [
        client.get("/oauth2/forward-auth", headers=headers).status_code
        for _ in range(3)
    ]
    assert statuses[:2] == [200, 200]
    assert statuses[2] == 429
    assert (
        int(client.get("/oauth2/forward-auth", headers=headers).headers["Retry-After"])
        >= 1
    )
