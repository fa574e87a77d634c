"""private_key_jwt at /oauth2/token, /oauth2/revoke and /oauth2/introspect.

On a real Redis: the spent-jti store must hold across requests and workers.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import typing as t

import pytest
import redis

from proxy import create_app
from proxy.config.env import StaticClient
from proxy.config.limits import Limits
from proxy.config.settings import Settings
from tests.client_assertions import MemoryDocuments
from tests.client_assertions import assertion_form
from tests.client_assertions import claims_for
from tests.client_assertions import hmac_signed
from tests.client_assertions import jwks
from tests.client_assertions import private_key
from tests.client_assertions import public_jwk
from tests.client_assertions import sign
from tests.client_assertions import unsigned
from tests.oauth_client import Flow
from tests.oauth_client import OAuthTestClient

from ._helpers import ISSUER
from ._helpers import assert_json_error
from ._helpers import assert_no_store
from ._helpers import basic

TOKEN_URL = ISSUER + "/oauth2/token"
REVOKE_URL = ISSUER + "/oauth2/revoke"
INTROSPECT_URL = ISSUER + "/oauth2/introspect"
JWKS_URI = "https://client.example/jwks.json"
RS_ID = "resource-server-with-keys"


@pytest.fixture
def store_client(real_redis: redis.Redis) -> redis.Redis:
    return real_redis


@pytest.fixture
def documents() -> MemoryDocuments:
    return MemoryDocuments({JWKS_URI: jwks(private_key("ES256"))})


@pytest.fixture
def settings(settings: Settings) -> Settings:
    introspector = StaticClient(
        client_id=RS_ID,
        redirect_uris=("https://rs.example/unused",),
        client_name="Resource server",
        can_introspect=True,
        jwks=jwks(private_key("PS256", "rs")),
    )
    return settings.replace(static_clients=(introspector,))


@pytest.fixture
def app(
    settings: Settings, store_client: redis.Redis, documents: MemoryDocuments
) -> t.Any:
    return create_app(settings, redis_client=store_client, documents=documents)


@pytest.fixture
def key_client_id(oauth: OAuthTestClient) -> str:
    registered = oauth.register(
        token_endpoint_auth_method="private_key_jwt",
        jwks=jwks(private_key("RS256")),
    )
    assert "client_secret" not in registered
    return str(registered["client_id"])


def _assertion(client_id: str, audience: str = TOKEN_URL, **override: t.Any) -> str:
    return sign(claims_for(client_id, audience, **override))


def _exchange(client: t.Any, flow: Flow, assertion: str, **extra: t.Any) -> t.Any:
    form = {
        "grant_type": "authorization_code",
        "code": flow.code,
        "code_verifier": flow.verifier,
        "redirect_uri": flow.redirect_uri,
        **extra,
    }
    return client.post("/oauth2/token", data=assertion_form(assertion, **form))


def _refresh(client: t.Any, refresh_token: str, assertion: str) -> t.Any:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return client.post("/oauth2/token", data=assertion_form(assertion, **form))


def _tokens(oauth: OAuthTestClient, client_id: str) -> dict[str, t.Any]:
    flow = oauth.login(client_id)
    response = _exchange(oauth.client, flow, _assertion(client_id))
    assert response.status_code == 200, response.get_data(as_text=True)
    return t.cast(dict[str, t.Any], response.get_json())


# -- /oauth2/token ------------------------------------------------------------


def test_code_exchange_and_refresh_with_private_key_jwt(
    oauth: OAuthTestClient, key_client_id: str
) -> None:
    tokens = _tokens(oauth, key_client_id)
    assert tokens["access_token"]
    assert tokens["refresh_token"]
    refreshed = _refresh(
        oauth.client, tokens["refresh_token"], _assertion(key_client_id)
    )
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    assert refreshed.get_json()["refresh_token"] != tokens["refresh_token"]


def test_the_issuer_is_an_accepted_audience(
    oauth: OAuthTestClient, key_client_id: str
) -> None:
    flow = oauth.login(key_client_id)
    response = _exchange(oauth.client, flow, _assertion(key_client_id, ISSUER))
    assert response.status_code == 200, response.get_data(as_text=True)


def test_client_id_may_accompany_the_assertion(
    oauth: OAuthTestClient, key_client_id: str
) -> None:
    flow = oauth.login(key_client_id)
    response = _exchange(
        oauth.client, flow, _assertion(key_client_id), client_id=key_client_id
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def test_replayed_assertion_is_invalid_client(
    oauth: OAuthTestClient, key_client_id: str
) -> None:
    tokens = _tokens(oauth, key_client_id)
    assertion = _assertion(key_client_id)
    first = _refresh(oauth.client, tokens["refresh_token"], assertion)
    assert first.status_code == 200
    again = _refresh(oauth.client, first.get_json()["refresh_token"], assertion)
    assert_json_error(again, 401, "invalid_client")
    assert_no_store(again)


@pytest.mark.parametrize(
    "make",
    [
        lambda cid: _assertion(cid, "https://other.example/oauth2/token"),
        lambda cid: _assertion(cid, REVOKE_URL),
        lambda cid: _assertion(cid, iss="someone-else"),
        lambda cid: _assertion(cid, exp=int(time.time()) - 120),
        lambda cid: _assertion(cid, exp=int(time.time()) + 2 * 3600),
        lambda cid: _assertion(cid, jti=None),
        lambda cid: sign(claims_for(cid, TOKEN_URL), private_key("RS256", "other")),
        lambda cid: sign(claims_for(cid, TOKEN_URL), kid="unknown"),
        lambda cid: unsigned(claims_for(cid, TOKEN_URL)),
        lambda cid: hmac_signed(
            claims_for(cid, TOKEN_URL),
            public_jwk(private_key("RS256"))["n"].encode(),
        ),
    ],
    ids=[
        "foreign-aud",
        "revoke-aud-at-token",
        "wrong-iss",
        "expired",
        "exp-too-far",
        "no-jti",
        "other-key",
        "unknown-kid",
        "alg-none",
        "hmac",
    ],
)
def test_bad_assertions_are_401_invalid_client_and_spend_no_code(
    oauth: OAuthTestClient, key_client_id: str, make: t.Any
) -> None:
    flow = oauth.login(key_client_id)
    response = _exchange(oauth.client, flow, make(key_client_id))
    assert_json_error(response, 401, "invalid_client")
    assert_no_store(response)
    # The code was not spent by the refused request.
    ok = _exchange(oauth.client, flow, _assertion(key_client_id))
    assert ok.status_code == 200, ok.get_data(as_text=True)


def test_key_client_may_not_fall_back_to_a_secret_or_none(
    oauth: OAuthTestClient, key_client_id: str
) -> None:
    flow = oauth.login(key_client_id)
    assert_json_error(oauth.token(flow), 401, "invalid_client")
    response = oauth.client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": flow.code,
            "code_verifier": flow.verifier,
        },
        headers=basic(key_client_id, "guess"),
    )
    assert_json_error(response, 401, "invalid_client")


def test_assertion_plus_basic_is_invalid_request(
    oauth: OAuthTestClient, key_client_id: str
) -> None:
    flow = oauth.login(key_client_id)
    form = assertion_form(
        _assertion(key_client_id),
        grant_type="authorization_code",
        code=flow.code,
        code_verifier=flow.verifier,
    )
    response = oauth.client.post(
        "/oauth2/token", data=form, headers=basic(key_client_id, "x")
    )
    assert_json_error(response, 400, "invalid_request")


def test_wrong_assertion_type_is_invalid_client(
    oauth: OAuthTestClient, key_client_id: str
) -> None:
    flow = oauth.login(key_client_id)
    response = _exchange(
        oauth.client,
        flow,
        _assertion(key_client_id),
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
    )
    assert_json_error(response, 401, "invalid_client")


def test_public_client_may_not_send_an_assertion(oauth: OAuthTestClient) -> None:
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id)
    response = _exchange(oauth.client, flow, _assertion(client_id))
    assert_json_error(response, 401, "invalid_client")


def test_jwks_uri_client_is_verified_with_the_fetched_keys(
    oauth: OAuthTestClient, documents: MemoryDocuments
) -> None:
    client_id = oauth.register(
        token_endpoint_auth_method="private_key_jwt", jwks_uri=JWKS_URI
    )["client_id"]
    flow = oauth.login(client_id)
    assertion = sign(claims_for(client_id, TOKEN_URL), alg="ES256")
    response = _exchange(oauth.client, flow, assertion)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert (JWKS_URI, "jwks", False) in documents.fetches


def test_failed_assertions_earn_the_back_off(
    settings: Settings, store_client: redis.Redis
) -> None:
    """RATE-1: failures of private_key_jwt count like wrong secrets (429)."""
    limits = dataclasses.replace(Limits(), auth_failures_allowed=2)
    app = create_app(settings.replace(limits=limits), redis_client=store_client)
    oauth = OAuthTestClient(app.test_client())
    client_id = oauth.register(
        token_endpoint_auth_method="private_key_jwt", jwks=jwks(private_key("RS256"))
    )["client_id"]
    forged = sign(claims_for(client_id, TOKEN_URL), private_key("RS256", "other"))
    statuses = [_refresh(oauth.client, "a.b", forged).status_code for _ in range(3)]
    assert statuses[:2] == [401, 401]
    refused = _refresh(oauth.client, "a.b", _assertion(client_id))
    assert refused.status_code == 429


def test_concurrent_requests_with_one_assertion_let_exactly_one_through(
    app: t.Any, oauth: OAuthTestClient, key_client_id: str
) -> None:
    """Two codes, one assertion, two threads on real Redis: one 200, one 401."""
    flows = [oauth.login(key_client_id), oauth.login(key_client_id)]
    assertion = _assertion(key_client_id)
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def exchange(flow: Flow) -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(_exchange(client, flow, assertion).status_code)

    threads = [threading.Thread(target=exchange, args=(f,)) for f in flows]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 401]


# -- /oauth2/revoke -----------------------------------------------------------


def test_revoke_with_private_key_jwt(
    oauth: OAuthTestClient, key_client_id: str
) -> None:
    tokens = _tokens(oauth, key_client_id)
    response = oauth.client.post(
        "/oauth2/revoke",
        data=assertion_form(
            _assertion(key_client_id, REVOKE_URL), token=tokens["refresh_token"]
        ),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    after = _refresh(oauth.client, tokens["refresh_token"], _assertion(key_client_id))
    assert_json_error(after, 400, "invalid_grant")


def test_revoke_refuses_a_bad_assertion(
    oauth: OAuthTestClient, key_client_id: str
) -> None:
    tokens = _tokens(oauth, key_client_id)
    forged = sign(claims_for(key_client_id, REVOKE_URL), private_key("RS256", "x"))
    response = oauth.client.post(
        "/oauth2/revoke",
        data=assertion_form(forged, token=tokens["refresh_token"]),
    )
    assert_json_error(response, 401, "invalid_client")
    still = _refresh(oauth.client, tokens["refresh_token"], _assertion(key_client_id))
    assert still.status_code == 200


# -- /oauth2/introspect -------------------------------------------------------


def _introspect(client: t.Any, token: str, assertion: str) -> t.Any:
    return client.post(
        "/oauth2/introspect", data=assertion_form(assertion, token=token)
    )


def test_introspect_with_private_key_jwt(
    oauth: OAuthTestClient, key_client_id: str
) -> None:
    tokens = _tokens(oauth, key_client_id)
    rs_key = private_key("PS256", "rs")
    assertion = sign(claims_for(RS_ID, INTROSPECT_URL), rs_key, alg="PS256")
    response = _introspect(oauth.client, tokens["access_token"], assertion)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["active"] is True
    assert response.get_json()["client_id"] == key_client_id


def test_introspect_refuses_a_replayed_assertion(
    oauth: OAuthTestClient, key_client_id: str
) -> None:
    tokens = _tokens(oauth, key_client_id)
    rs_key = private_key("PS256", "rs")
    assertion = sign(claims_for(RS_ID, ISSUER), rs_key, alg="PS256")
    assert (
        _introspect(oauth.client, tokens["access_token"], assertion).status_code == 200
    )
    again = _introspect(oauth.client, tokens["access_token"], assertion)
    assert_json_error(again, 401, "invalid_client")


def test_a_dcr_key_client_may_not_introspect(
    oauth: OAuthTestClient, key_client_id: str
) -> None:
    """INTRO-4: only operator-listed resource servers, whatever their method."""
    tokens = _tokens(oauth, key_client_id)
    response = _introspect(
        oauth.client,
        tokens["access_token"],
        _assertion(key_client_id, INTROSPECT_URL),
    )
    assert_json_error(response, 401, "invalid_client")
