"""A URL client (CIMD) that authenticates with private_key_jwt, at token and revoke.

Each piece was tested alone (documents, assertions); here they meet: the
client's document and its `jwks_uri` are served over real https from
127.0.0.1 with a test CA, the app runs on the real Redis, and every assertion
is checked with keys read through the same DocumentCache as the document.
"""

from __future__ import annotations

import dataclasses
import typing as t

import pytest
import redis

from proxy import create_app
from proxy.config.client_documents import ClientDocuments
from proxy.config.settings import Settings
from tests.client_assertions import assertion_form
from tests.client_assertions import claims_for
from tests.client_assertions import jwks
from tests.client_assertions import private_key
from tests.client_assertions import sign
from tests.document_server import DocumentServer
from tests.oauth_client import REDIRECT_URI
from tests.oauth_client import Flow
from tests.oauth_client import OAuthTestClient
from tests.redis_round_trips import RoundTrips

from ._helpers import ISSUER
from ._helpers import assert_json_error
from ._helpers import assert_no_store

TOKEN_URL = ISSUER + "/oauth2/token"
REVOKE_URL = ISSUER + "/oauth2/revoke"
PATH = "/oauth/app/client.json"
JWKS_PATH = "/oauth/jwks.json"


@pytest.fixture
def store_client(real_redis: redis.Redis) -> redis.Redis:
    return real_redis


@pytest.fixture
def settings(settings: Settings) -> Settings:
    documents = ClientDocuments(
        allowed_private_hosts=frozenset({"127.0.0.1"}),
        # Fresh for the whole test: only a forced re-read fetches again.
        cache_min_seconds=600,
        jwks_refetch_min_seconds=60,
    )
    return dataclasses.replace(settings, client_documents=documents)


@pytest.fixture
def app(settings: Settings, store_client: redis.Redis, trust_test_ca: str) -> t.Any:
    return create_app(settings, redis_client=store_client)


def serve_client(server: DocumentServer, path: str = PATH, **members: t.Any) -> str:
    document = server.client_document(path, [REDIRECT_URI], **members)
    return server.serve_json(path, document)


@pytest.fixture
def key_client(document_server: DocumentServer) -> str:
    """ChatGPT's shape: private_key_jwt with keys behind a jwks_uri."""
    jwks_uri = document_server.serve_json(JWKS_PATH, jwks(private_key("RS256")))
    return serve_client(
        document_server, token_endpoint_auth_method="private_key_jwt", jwks_uri=jwks_uri
    )


def _assertion(client_id: str, audience: str = TOKEN_URL, **signing: t.Any) -> str:
    return sign(claims_for(client_id, audience), **signing)


def _exchange(oauth: OAuthTestClient, flow: Flow, assertion: str) -> t.Any:
    form = {
        "grant_type": "authorization_code",
        "code": flow.code,
        "code_verifier": flow.verifier,
        "redirect_uri": flow.redirect_uri,
    }
    return oauth.client.post("/oauth2/token", data=assertion_form(assertion, **form))


def _refresh(oauth: OAuthTestClient, refresh_token: str, assertion: str) -> t.Any:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return oauth.client.post("/oauth2/token", data=assertion_form(assertion, **form))


def _tokens(oauth: OAuthTestClient, client_id: str, **signing: t.Any) -> t.Any:
    flow = oauth.login(client_id)
    response = _exchange(oauth, flow, _assertion(client_id, **signing))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_code_refresh_and_revoke_with_keys_behind_a_jwks_uri(
    oauth: OAuthTestClient, key_client: str, document_server: DocumentServer
) -> None:
    tokens = _tokens(oauth, key_client)
    refreshed = _refresh(oauth, tokens["refresh_token"], _assertion(key_client))
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    new_refresh = refreshed.get_json()["refresh_token"]

    revoked = oauth.client.post(
        "/oauth2/revoke",
        data=assertion_form(_assertion(key_client, REVOKE_URL), token=new_refresh),
    )
    assert revoked.status_code == 200, revoked.get_data(as_text=True)
    after = _refresh(oauth, new_refresh, _assertion(key_client))
    assert_json_error(after, 400, "invalid_grant")
    # One fetch each for the document and its key set, shared by every request.
    assert document_server.hits[PATH] == 1
    assert document_server.hits[JWKS_PATH] == 1


def test_a_replayed_assertion_is_refused(
    oauth: OAuthTestClient, key_client: str
) -> None:
    tokens = _tokens(oauth, key_client)
    assertion = _assertion(key_client)
    first = _refresh(oauth, tokens["refresh_token"], assertion)
    assert first.status_code == 200
    again = _refresh(oauth, first.get_json()["refresh_token"], assertion)
    assert_json_error(again, 401, "invalid_client")
    assert_no_store(again)


def test_revoke_without_an_assertion_is_refused(
    oauth: OAuthTestClient, key_client: str
) -> None:
    """A key-holding URL client authenticates with its keys, not as a public one."""
    tokens = _tokens(oauth, key_client)
    response = oauth.client.post(
        "/oauth2/revoke",
        data={"client_id": key_client, "token": tokens["refresh_token"]},
    )
    assert_json_error(response, 401, "invalid_client")


def test_a_document_declaring_none_refuses_an_assertion(
    oauth: OAuthTestClient, document_server: DocumentServer
) -> None:
    """One method per client: a public client's assertion is not a credential."""
    client_id = serve_client(document_server)
    flow = oauth.login(client_id)
    response = _exchange(oauth, flow, _assertion(client_id))
    body = assert_json_error(response, 401, "invalid_client")
    assert "registered" in body["error_description"]
    assert_no_store(response)


def test_inline_jwks_in_the_document(
    oauth: OAuthTestClient, document_server: DocumentServer
) -> None:
    key = private_key("ES256", "inline")
    client_id = serve_client(
        document_server, token_endpoint_auth_method="private_key_jwt", jwks=jwks(key)
    )
    tokens = _tokens(oauth, client_id, key=key, alg="ES256")
    refreshed = _refresh(
        oauth, tokens["refresh_token"], _assertion(client_id, key=key, alg="ES256")
    )
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    # Another key, not in the document: refused.
    stranger = _refresh(
        oauth,
        refreshed.get_json()["refresh_token"],
        _assertion(client_id, key=private_key("ES256", "stranger"), alg="ES256"),
    )
    assert_json_error(stranger, 401, "invalid_client")


def test_changed_keys_ask_for_consent_again(
    oauth: OAuthTestClient, document_server: DocumentServer, real_redis: redis.Redis
) -> None:
    """CIMD-16: consent was given to a document with these keys, not any keys."""
    first = jwks(private_key("ES256", "before"))
    client_id = serve_client(
        document_server, token_endpoint_auth_method="private_key_jwt", jwks=first
    )
    flow = oauth.login(client_id)  # approves consent, remembered by the browser
    _, again = oauth.authorize(client_id)
    assert again.status_code == 302, "remembered consent should skip the page"
    assert flow.code

    serve_client(
        document_server,
        token_endpoint_auth_method="private_key_jwt",
        jwks=jwks(private_key("ES256", "after")),
    )
    _expire_cached_documents(real_redis)
    _, changed = oauth.authorize(client_id)
    assert changed.status_code == 200
    assert 'name="csrf_token"' in changed.get_data(as_text=True)


def test_a_rotated_jwks_uri_is_read_again_once(
    oauth: OAuthTestClient, key_client: str, document_server: DocumentServer
) -> None:
    """An unknown kid forces one re-read; another within the interval does not."""
    tokens = _tokens(oauth, key_client)
    assert document_server.hits[JWKS_PATH] == 1
    new_key = private_key("RS256", "rotated")
    document_server.serve_json(JWKS_PATH, jwks(new_key))

    rotated = _refresh(
        oauth, tokens["refresh_token"], _assertion(key_client, key=new_key)
    )
    assert rotated.status_code == 200, rotated.get_data(as_text=True)
    assert document_server.hits[JWKS_PATH] == 2

    unknown = private_key("RS256", "unknown")
    refused = _refresh(
        oauth, rotated.get_json()["refresh_token"], _assertion(key_client, key=unknown)
    )
    assert_json_error(refused, 401, "invalid_client")
    assert document_server.hits[JWKS_PATH] == 2


def _expire_cached_documents(client: redis.Redis) -> None:
    """As if the cached copies' lifetimes had passed: the next use fetches."""
    for key in client.scan_iter("*doc:{client_metadata:*"):
        client.delete(key)


def test_rotated_inline_keys_read_the_document_again_once(
    oauth: OAuthTestClient, document_server: DocumentServer
) -> None:
    """A URL client's inline jwks come from a document that can change, as a
    jwks_uri can: an unknown kid re-reads the document once per interval."""
    old, new = private_key("ES256", "doc-old"), private_key("ES256", "doc-new")
    client_id = serve_client(
        document_server, token_endpoint_auth_method="private_key_jwt", jwks=jwks(old)
    )
    tokens = _tokens(oauth, client_id, key=old, alg="ES256")
    fetched = document_server.hits[PATH]
    serve_client(
        document_server, token_endpoint_auth_method="private_key_jwt", jwks=jwks(new)
    )

    rotated = _refresh(
        oauth, tokens["refresh_token"], _assertion(client_id, key=new, alg="ES256")
    )
    assert rotated.status_code == 200, rotated.get_data(as_text=True)
    assert document_server.hits[PATH] == fetched + 1

    made_up = private_key("ES256", "doc-made-up")
    refused = _refresh(
        oauth,
        rotated.get_json()["refresh_token"],
        _assertion(client_id, key=made_up, alg="ES256"),
    )
    assert_json_error(refused, 401, "invalid_client")
    assert document_server.hits[PATH] == fetched + 1


def _trips_of(trips: RoundTrips, send: t.Callable[[], t.Any]) -> tuple[t.Any, int]:
    before = trips.sends
    response = send()
    return response, trips.sends - before


def test_an_assertions_key_set_rides_the_first_round_trip(
    oauth: OAuthTestClient,
    key_client: str,
    document_server: DocumentServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """J71: once a worker has read a client's jwks_uri, a private_key_jwt
    refresh reads the key set with the client and grant; its one round trip
    more than a public URL client's is the jti, spent after the signature
    is checked so that a forged assertion cannot burn it."""
    public = serve_client(document_server, "/oauth/public/client.json")
    public_tokens = oauth.token(oauth.login(public)).get_json()
    keyed_tokens = _tokens(oauth, key_client)  # reads the jwks_uri: remembered
    # A first refresh each: Redis loads the refresh scripts on first use.
    public_rt = oauth.refresh(public, public_tokens["refresh_token"]).get_json()[
        "refresh_token"
    ]
    keyed_rt = _refresh(
        oauth, keyed_tokens["refresh_token"], _assertion(key_client)
    ).get_json()["refresh_token"]

    trips = RoundTrips(monkeypatch)
    public_answer, public_trips = _trips_of(
        trips, lambda: oauth.refresh(public, public_rt)
    )
    keyed_answer, keyed_trips = _trips_of(
        trips, lambda: _refresh(oauth, keyed_rt, _assertion(key_client))
    )
    assert public_answer.status_code == 200, public_answer.get_data(as_text=True)
    assert keyed_answer.status_code == 200, keyed_answer.get_data(as_text=True)
    assert keyed_trips == public_trips + 1
    assert document_server.hits[JWKS_PATH] == 1


def test_a_replayed_assertion_leaves_the_grant_as_it_was(
    oauth: OAuthTestClient, key_client: str
) -> None:
    """The replayed assertion is refused before any change: the refresh token
    it came with still works with a fresh assertion."""
    tokens = _tokens(oauth, key_client)
    assertion = _assertion(key_client)
    first = _refresh(oauth, tokens["refresh_token"], assertion)
    assert first.status_code == 200
    current = first.get_json()["refresh_token"]
    assert_json_error(_refresh(oauth, current, assertion), 401, "invalid_client")
    again = _refresh(oauth, current, _assertion(key_client))
    assert again.status_code == 200, again.get_data(as_text=True)


def test_a_replayed_assertion_leaves_the_code_unspent(
    oauth: OAuthTestClient, key_client: str
) -> None:
    """J71: the jti is checked before the code is redeemed, so a stolen code
    sent with a replayed assertion costs the user nothing."""
    used = _assertion(key_client)
    first = _exchange(oauth, oauth.login(key_client), used)
    assert first.status_code == 200
    flow = oauth.login(key_client)
    assert_json_error(_exchange(oauth, flow, used), 401, "invalid_client")
    redeemed = _exchange(oauth, flow, _assertion(key_client))
    assert redeemed.status_code == 200, redeemed.get_data(as_text=True)


def test_a_client_that_moved_its_jwks_uri_is_read_at_the_new_one(
    oauth: OAuthTestClient,
    key_client: str,
    document_server: DocumentServer,
    real_redis: redis.Redis,
) -> None:
    """The remembered jwks_uri is a guess the client's document overrules:
    right after the move the old set is still read ahead, yet a key only it
    holds is refused, and the new set, where the document now points, is
    the one that authenticates."""
    tokens = _tokens(oauth, key_client)  # remembers the old jwks_uri
    moved_key = private_key("RS256", "moved")
    moved_uri = document_server.serve_json("/oauth/moved-jwks.json", jwks(moved_key))
    serve_client(
        document_server,
        token_endpoint_auth_method="private_key_jwt",
        jwks_uri=moved_uri,
    )
    _expire_cached_documents(real_redis)  # the old key set stays cached

    old_key = _refresh(oauth, tokens["refresh_token"], _assertion(key_client))
    assert_json_error(old_key, 401, "invalid_client")
    moved = _refresh(
        oauth, tokens["refresh_token"], _assertion(key_client, key=moved_key)
    )
    assert moved.status_code == 200, moved.get_data(as_text=True)
    assert document_server.hits["/oauth/moved-jwks.json"] >= 1
