"""POST /oauth2/token grant_type=refresh_token: rotation, grace, reuse, upstream."""

from __future__ import annotations

import threading
import time
import typing as t
import uuid

import pytest
import requests

import proxy.grants.refresh_token
from proxy import create_app
from proxy.keys.keyring import sha256_hex
from tests.oauth_client import OAuthTestClient

from ._helpers import RESOURCE
from ._helpers import ShiftedClock
from ._helpers import assert_json_error
from ._helpers import assert_no_store
from ._helpers import closed_port
from ._helpers import decode_access_token
from ._helpers import resource_status


@pytest.fixture
def issued(oauth: OAuthTestClient) -> tuple[str, dict[str, t.Any]]:
    """(client_id, first token response) for a fresh public client."""
    return oauth.tokens()


def assert_refused(oauth: OAuthTestClient, client_id: str, refresh_token: str) -> None:
    """RT-7: a dead refresh token is exactly 400 invalid_grant."""
    assert_json_error(oauth.refresh(client_id, refresh_token), 400, "invalid_grant")


def _app_with(settings: t.Any, fake_redis: t.Any, **changes: t.Any) -> OAuthTestClient:
    app = create_app(settings.replace(**changes), redis_client=fake_redis)
    return OAuthTestClient(app.test_client())


def test_refresh_rotates_the_token(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]]
) -> None:
    """RT-1, RT-10: a new access and refresh token, expires_in, no-store."""
    client_id, first = issued
    response = oauth.refresh(client_id, first["refresh_token"])
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert_no_store(response)
    body = response.get_json()
    assert body["refresh_token"] != first["refresh_token"]
    assert body["access_token"] != first["access_token"]
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] > 0
    assert resource_status(oauth.client, body["access_token"]) == 200


def test_reuse_within_the_grace_window_returns_the_same_refresh_token(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]]
) -> None:
    """RT-3: the previous token, within the grace window, gets the same new one.

    The access token is signed afresh (only the refresh token is kept for the
    window), for the same subject, audience and scope.
    """
    client_id, first = issued
    second = oauth.refresh(client_id, first["refresh_token"]).get_json()
    again = oauth.refresh(client_id, first["refresh_token"])
    assert again.status_code == 200
    body = again.get_json()
    assert body["refresh_token"] == second["refresh_token"]
    assert body["scope"] == second["scope"]
    assert resource_status(oauth.client, body["access_token"]) == 200
    claims = decode_access_token(oauth.client, body["access_token"]).claims
    earlier = decode_access_token(oauth.client, second["access_token"]).claims
    assert (claims["sub"], claims["aud"], claims["sid"]) == (
        earlier["sub"],
        earlier["aud"],
        earlier["sid"],
    )
    # The grant lives on: the new token still rotates normally.
    third = oauth.refresh(client_id, second["refresh_token"])
    assert third.status_code == 200


def test_reuse_after_the_grace_window_revokes_the_grant(
    settings: t.Any, fake_redis: t.Any
) -> None:
    """RT-1, RT-2, RT-7: grace 0: RT1 again → invalid_grant, and RT2 dies too."""
    oauth = _app_with(settings, fake_redis, refresh_grace_seconds=0)
    client_id, first = oauth.tokens()
    second = oauth.refresh(client_id, first["refresh_token"]).get_json()
    assert_refused(oauth, client_id, first["refresh_token"])
    assert_refused(oauth, client_id, second["refresh_token"])
    assert resource_status(oauth.client, second["access_token"]) == 401


def test_reuse_of_an_older_generation_revokes_the_grant(
    settings: t.Any, fake_redis: t.Any
) -> None:
    """RT-2: RT1 after RT1→RT2→RT3 is reuse too (RFC 9700 §4.14.2)."""
    oauth = _app_with(settings, fake_redis, refresh_grace_seconds=0)
    client_id, first = oauth.tokens()
    second = oauth.refresh(client_id, first["refresh_token"]).get_json()
    third = oauth.refresh(client_id, second["refresh_token"]).get_json()
    assert "refresh_token" in third
    assert_refused(oauth, client_id, first["refresh_token"])
    assert_refused(oauth, client_id, third["refresh_token"])
    assert resource_status(oauth.client, third["access_token"]) == 401


def test_reuse_after_the_default_grace_window_revokes_the_grant(
    oauth: OAuthTestClient,
    issued: tuple[str, dict[str, t.Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RT-2: default 30 s grace; 31 s later the old token revokes everything."""
    client_id, first = issued
    second = oauth.refresh(client_id, first["refresh_token"]).get_json()
    monkeypatch.setattr(proxy.grants.refresh_token, "time", ShiftedClock(31))
    assert_refused(oauth, client_id, first["refresh_token"])
    assert_refused(oauth, client_id, second["refresh_token"])


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "A" * 22 + "." + "B" * 43,
        "a.b",
        "x" * 300,
    ],
)
def test_bogus_refresh_token_is_invalid_grant(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]], token: str
) -> None:
    """RT-7: an unknown refresh token → 400 with exactly invalid_grant."""
    client_id, _ = issued
    response = oauth.refresh(client_id, token)
    assert_json_error(response, 400, "invalid_grant")
    assert_no_store(response)


def test_right_grant_wrong_secret_is_invalid_grant_and_harmless(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]]
) -> None:
    """RT-7: a guessed secret for a real grant is refused and revokes nothing."""
    client_id, first = issued
    grant_id = first["refresh_token"].split(".", 1)[0]
    assert_json_error(
        oauth.refresh(client_id, grant_id + "." + "z" * 43), 400, "invalid_grant"
    )
    assert oauth.refresh(client_id, first["refresh_token"]).status_code == 200


def test_missing_refresh_token_is_invalid_request(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]]
) -> None:
    """TOK-1: refresh_token omitted (or empty) → invalid_request."""
    client_id, _ = issued
    assert_json_error(oauth.refresh(client_id, ""), 400, "invalid_request")


def test_refresh_token_is_bound_to_its_client(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]]
) -> None:
    """RT-4: client B using A's refresh token → invalid_grant; A's still works."""
    client_id, first = issued
    other = oauth.register()["client_id"]
    assert_json_error(
        oauth.refresh(other, first["refresh_token"]), 400, "invalid_grant"
    )
    assert oauth.refresh(client_id, first["refresh_token"]).status_code == 200


def test_confidential_client_must_authenticate_to_refresh(
    oauth: OAuthTestClient,
) -> None:
    """RT-4: a confidential client's refresh needs its secret."""
    registered = oauth.register(token_endpoint_auth_method="client_secret_post")
    client_id, secret = registered["client_id"], registered["client_secret"]
    first = oauth.token(oauth.login(client_id), client_secret=secret).get_json()
    response = oauth.refresh(client_id, first["refresh_token"])
    assert_json_error(response, 401, "invalid_client")
    response = oauth.refresh(
        client_id, first["refresh_token"], client_secret="wrong-secret"
    )
    assert_json_error(response, 401, "invalid_client")
    response = oauth.refresh(client_id, first["refresh_token"], client_secret=secret)
    assert response.status_code == 200


def test_failed_refresh_does_not_block_the_rightful_client(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]]
) -> None:
    """RT-4: refused attempts (bad scope, resource, client) leave no lease behind."""
    client_id, first = issued
    token = first["refresh_token"]
    oauth.refresh(client_id, token, scope="mcp:admin")
    oauth.refresh(client_id, token, resource="https://other.example/mcp")
    oauth.refresh(oauth.register()["client_id"], token)
    assert oauth.refresh(client_id, token).status_code == 200


def test_scope_cannot_grow_on_refresh(
    oauth: OAuthTestClient, issued: tuple[str, dict[str, t.Any]]
) -> None:
    """RT-5, SCOPE-2: asking for more than the grant → invalid_scope."""
    client_id, first = issued
    response = oauth.refresh(client_id, first["refresh_token"], scope="mcp mcp:write")
    assert_json_error(response, 400, "invalid_scope")


def test_narrower_scope_on_refresh_keeps_the_grant(
    oauth: OAuthTestClient,
) -> None:
    """RT-5: a narrower scope is granted; the next refresh gets the original."""
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id, scope="mcp mcp:write")
    first = oauth.token(flow).get_json()
    narrow = oauth.refresh(client_id, first["refresh_token"], scope="mcp").get_json()
    assert narrow["scope"] == "mcp"
    claims = decode_access_token(oauth.client, narrow["access_token"]).claims
    assert claims["scope"] == "mcp"
    full = oauth.refresh(client_id, narrow["refresh_token"]).get_json()
    assert full["scope"] == "mcp mcp:write"


@pytest.mark.parametrize(
    ("resource", "status"),
    [
        (None, 200),
        (RESOURCE, 200),
        ("https://other.example/mcp", 400),
    ],
)
def test_refresh_is_bound_to_the_resource(
    oauth: OAuthTestClient,
    issued: tuple[str, dict[str, t.Any]],
    resource: str | None,
    status: int,
) -> None:
    """RT-6, RES-6: no resource → same aud; another resource → invalid_target."""
    client_id, first = issued
    response = oauth.refresh(client_id, first["refresh_token"], resource=resource)
    assert response.status_code == status
    if status == 200:
        token = response.get_json()["access_token"]
        assert decode_access_token(oauth.client, token).claims["aud"] == RESOURCE
    else:
        assert response.get_json()["error"] == "invalid_target"


def test_refresh_token_expires_when_idle(settings: t.Any, fake_redis: t.Any) -> None:
    """RT-8: after the idle TTL the refresh token → invalid_grant."""
    import time

    oauth = _app_with(settings, fake_redis, refresh_token_ttl_seconds=1)
    client_id, first = oauth.tokens()
    time.sleep(2.1)
    assert_refused(oauth, client_id, first["refresh_token"])


def test_refresh_token_has_an_absolute_lifetime(
    oauth: OAuthTestClient,
    issued: tuple[str, dict[str, t.Any]],
    app: t.Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RT-8: past REFRESH_TOKEN_MAX_LIFETIME the grant ends, however active."""
    client_id, first = issued
    lifetime = app.extensions["proxy"].settings.refresh_token_max_lifetime_seconds
    monkeypatch.setattr(proxy.grants.refresh_token, "time", ShiftedClock(lifetime + 1))
    assert_refused(oauth, client_id, first["refresh_token"])


@pytest.mark.parametrize("scope", ["mcp", "mcp offline_access"])
def test_refresh_tokens_follow_the_documented_rule(
    oauth: OAuthTestClient, scope: str
) -> None:
    """RT-9: a refresh token is issued whenever the client registered the
    refresh_token grant, with or without offline_access."""
    client_id = oauth.register()["client_id"]
    body = oauth.token(oauth.login(client_id, scope=scope)).get_json()
    assert body["refresh_token"]


def test_client_without_refresh_grant_is_unauthorized(
    oauth: OAuthTestClient,
) -> None:
    """TOK-2: the refresh grant for a client not registered for it."""
    client_id = oauth.register(grant_types=["authorization_code"])["client_id"]
    response = oauth.refresh(client_id, "A" * 22 + "." + "B" * 43)
    assert_json_error(response, 400, "unauthorized_client")


def test_upstream_invalid_grant_ends_our_grant(
    oauth: OAuthTestClient, idp_url: str
) -> None:
    """UP-10: the user's tokens revoked at the IdP → refresh invalid_grant, twice."""
    user = f"{uuid.uuid4().hex[:8]}@example.com"
    client_id, first = oauth.tokens(user=user)
    response = requests.post(f"{idp_url}/users/{user}/revoke-tokens", timeout=5)
    assert response.status_code == 204
    assert_refused(oauth, client_id, first["refresh_token"])
    assert_refused(oauth, client_id, first["refresh_token"])
    assert resource_status(oauth.client, first["access_token"]) == 401


def test_upstream_down_is_503_and_keeps_the_grant(
    oauth: OAuthTestClient,
    issued: tuple[str, dict[str, t.Any]],
    app: t.Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """UP-10: an unreachable IdP is temporary: 503, nothing revoked."""
    client_id, first = issued
    upstream = app.extensions["proxy"].upstream
    endpoint = upstream.metadata()["token_endpoint"]
    monkeypatch.setitem(
        upstream.metadata(), "token_endpoint", f"http://127.0.0.1:{closed_port()}/t"
    )
    response = oauth.refresh(client_id, first["refresh_token"])
    assert_json_error(response, 503, "temporarily_unavailable")
    assert response.headers["Retry-After"]
    monkeypatch.setitem(upstream.metadata(), "token_endpoint", endpoint)
    # The failed attempt gave its refresh lease back: a retry works at once.
    assert oauth.refresh(client_id, first["refresh_token"]).status_code == 200


# -- races on a real redis-server ----------------------------------------------


@pytest.fixture
def real_oauth(settings: t.Any, real_redis: t.Any) -> OAuthTestClient:
    app = create_app(settings, redis_client=real_redis)
    return OAuthTestClient(app.test_client())


def test_concurrent_refreshes_all_get_the_same_new_pair(
    real_oauth: OAuthTestClient,
) -> None:
    """RT-3: N parallel refreshes with RT1 on a real Redis: one rotation, one pair."""
    client_id, first = real_oauth.tokens()
    app = real_oauth.client.application
    barrier = threading.Barrier(6)
    bodies: list[t.Any] = []

    def refresh() -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": first["refresh_token"],
                "client_id": client_id,
            },
        )
        bodies.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=refresh) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {status for status, _ in bodies} == {200}
    assert len({body["refresh_token"] for _, body in bodies}) == 1
    new = bodies[0][1]["refresh_token"]
    assert real_oauth.refresh(client_id, new).status_code == 200


def test_a_lease_whose_holder_died_is_taken_over(
    real_oauth: OAuthTestClient,
) -> None:
    """A request holding the refresh lease dies (its worker was killed) before
    rotating: the client's retry waits only until the lease lapses, then takes
    it over and rotates, instead of answering 503 after a whole lease."""
    client_id, first = real_oauth.tokens()
    app = real_oauth.client.application
    store = app.extensions["proxy"].store
    grant_id = first["refresh_token"].split(".", 1)[0]
    secret = first["refresh_token"].split(".", 1)[1]
    _, grant, leased, _keys = store.load_client_and_begin_refresh(
        client_id,
        grant_id,
        presented_hash=sha256_hex(secret),
        now=int(time.time()),
        lease=1,
        lease_holder="a-request-that-died",
    )
    assert leased
    assert grant is not None
    response = real_oauth.refresh(client_id, first["refresh_token"])
    assert response.status_code == 200, response.get_data(as_text=True)
    rotated = store.load_grant(grant_id)
    assert rotated is not None
    assert rotated.gen == grant.gen + 1
    second = response.get_json()["refresh_token"]
    assert real_oauth.refresh(client_id, second).status_code == 200
