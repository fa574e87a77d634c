"""The callback indexes each new grant, and no request path pays a round trip for it."""

from __future__ import annotations

import typing as t

import pytest
import redis

from proxy import create_app
from proxy.config.settings import Settings
from proxy.config.settings import StaticClient
from proxy.keys import signing_keys
from tests.oauth_client import REDIRECT_URI
from tests.oauth_client import OAuthTestClient
from tests.redis_round_trips import RoundTrips

STATIC_ID = "static-client"
USER = "alice@example.com"

#: Round trips per request (rate limits on, trace flushes off, scripts loaded,
#: keys read), measured on main before the grant indexes and the disabled-client
#: checks existed. A change that adds one to any of these paths fails here.
BEFORE = {
    "dcr": {
        "authorize": 2,
        "consent": 3,
        "callback": 3,
        "token_code": 3,
        "token_refresh": 3,
        "forward_auth": 1,
    },
    "static": {
        "authorize": 1,
        "consent": 2,
        "callback": 3,
        "token_code": 3,
        "token_refresh": 3,
        "forward_auth": 1,
    },
}


#: What they take now. Only a static client pays for its disabled mark, at
#: authorize and consent (it is loaded without Redis, so nothing carries the
#: read); the callback, token and gateway paths are unchanged for every kind.
AFTER = {
    "dcr": BEFORE["dcr"],
    "static": {**BEFORE["static"], "authorize": 2, "consent": 3},
}


@pytest.fixture
def store_client(real_redis: redis.Redis) -> redis.Redis:
    return real_redis


def _app(settings: Settings, store_client: redis.Redis, **override: t.Any) -> t.Any:
    static = StaticClient(
        client_id=STATIC_ID, redirect_uris=(REDIRECT_URI,), client_name="Static"
    )
    quiet = settings.replace(trace_ttl_seconds=0, static_clients=(static,), **override)
    return create_app(quiet, redis_client=store_client)


def measure(
    oauth: OAuthTestClient, trips: RoundTrips, client_id: str
) -> dict[str, int]:
    """The round trips of each step of one login, code exchange, refresh and call."""
    counts: dict[str, int] = {}
    flow_and_page: list[t.Any] = []
    counts["authorize"], _ = trips.of(
        lambda: flow_and_page.append(oauth.authorize(client_id))
    )
    flow, page = flow_and_page[0]
    assert page.status_code == 200, page.get_data(as_text=True)
    counts["consent"], response = trips.of(lambda: oauth.consent(flow))
    assert response.status_code == 303
    oauth.upstream_login(flow, USER)
    counts["callback"], response = trips.of(lambda: oauth.callback(flow))
    assert response.status_code == 302, response.get_data(as_text=True)
    counts["token_code"], response = trips.of(lambda: oauth.token(flow))
    assert response.status_code == 200, response.get_data(as_text=True)
    tokens = response.get_json()
    counts["token_refresh"], response = trips.of(
        lambda: oauth.refresh(client_id, tokens["refresh_token"])
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    access = response.get_json()["access_token"]
    counts["forward_auth"], response = trips.of(
        lambda: oauth.client.get(
            "/oauth2/forward-auth", headers={"Authorization": f"Bearer {access}"}
        )
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return counts


@pytest.mark.parametrize("kind", ["dcr", "static"])
def test_no_path_takes_an_extra_round_trip(
    settings: Settings,
    store_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    # The signing keys' timed re-reads (one GET a second at most, J62) would
    # land in whichever step runs when they fall due: out of this count.
    monkeypatch.setattr(signing_keys, "JWKS_REREAD_SECONDS", 3600.0)
    monkeypatch.setattr(signing_keys, "RECHECK_SECONDS", 3600.0)
    app = _app(settings, store_client)
    oauth = OAuthTestClient(app.test_client())
    client_id = oauth.register()["client_id"] if kind == "dcr" else STATIC_ID
    trips = RoundTrips(monkeypatch)
    measure(oauth, trips, client_id)  # warm: scripts loaded, signing keys made
    # A new browser, so the consent page is shown again.
    assert measure(OAuthTestClient(app.test_client()), trips, client_id) == AFTER[kind]


def test_the_callback_indexes_the_grant_by_user_and_client(
    settings: Settings, store_client: redis.Redis
) -> None:
    app = _app(settings, store_client)
    oauth = OAuthTestClient(app.test_client())
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id, USER)
    store = app.extensions["proxy"].store
    [mine] = store.grants_of_user(USER)
    assert store.grants_of_client(client_id) == [mine]
    assert flow.code.startswith(mine.grant_id + ".")
    assert (mine.client_id, mine.scope, mine.last_used_at) == (client_id, "mcp", None)
    assert oauth.token(flow).status_code == 200
    assert store.grants_of_user(USER)[0].last_used_at is not None
