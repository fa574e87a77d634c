"""proxy/clients/client_keys.py: a client's keys, inline or from its jwks_uri."""

from __future__ import annotations

import time

import pytest

from proxy.clients import client_keys
from proxy.clients.client_keys import ClientKeys
from proxy.oauth.client_assertion import UnknownKeyError
from proxy.oauth.errors import InvalidClientError
from proxy.store.documents import document_id
from proxy.store.records import ClientRecord
from tests.client_assertions import MemoryDocuments
from tests.client_assertions import claims_for
from tests.client_assertions import jwks
from tests.client_assertions import private_key
from tests.client_assertions import sign

CLIENT = "https://app.example/client.json"
JWKS_URI = "https://app.example/jwks.json"
DCR_CLIENT = "dcr-client-1"
TOKEN_URL = "https://as.example/oauth2/token"


def _client(client_id: str = CLIENT, **metadata: object) -> ClientRecord:
    return ClientRecord(
        client_id=client_id,
        redirect_uris=("https://app.example/cb",),
        token_endpoint_auth_method="private_key_jwt",
        grant_types=("authorization_code", "refresh_token"),
        client_id_issued_at=0,
        metadata=dict(metadata),
    )


def _verify(keys: ClientKeys, client: ClientRecord, assertion: str) -> str:
    return keys.verify(
        client,
        assertion,
        audiences={TOKEN_URL},
        now=int(time.time()),
        max_lifetime_seconds=300,
    ).jti


def test_inline_jwks_is_used_without_fetching() -> None:
    documents = MemoryDocuments()
    keys = ClientKeys(documents)
    claims = claims_for(CLIENT, TOKEN_URL)
    client = _client(jwks=jwks(private_key("RS256")))
    assert _verify(keys, client, sign(claims)) == claims["jti"]
    assert documents.fetches == []


def test_jwks_uri_is_read_through_the_document_source() -> None:
    documents = MemoryDocuments({JWKS_URI: jwks(private_key("ES256"))})
    keys = ClientKeys(documents)
    assertion = sign(claims_for(CLIENT, TOKEN_URL), alg="ES256")
    _verify(keys, _client(jwks_uri=JWKS_URI), assertion)
    assert documents.fetches == [(JWKS_URI, "jwks", False)]


def test_unknown_kid_re_fetches_once_with_force() -> None:
    """The client rotated its key: the cached set lacks the kid, a forced read
    finds it."""
    old, new = private_key("RS256", "old"), private_key("RS256", "new")

    class Rotating(MemoryDocuments):
        def fetch_json(self, url: str, *, kind: object, force: bool = False) -> dict:
            self.fetches.append((url, str(kind), force))
            return jwks(new) if force else jwks(old)

    documents = Rotating()
    keys = ClientKeys(documents)
    _verify(keys, _client(jwks_uri=JWKS_URI), sign(claims_for(CLIENT, TOKEN_URL), new))
    assert documents.fetches == [(JWKS_URI, "jwks", False), (JWKS_URI, "jwks", True)]


def test_a_kid_missing_after_the_re_fetch_is_refused() -> None:
    documents = MemoryDocuments({JWKS_URI: jwks(private_key("RS256"))})
    keys = ClientKeys(documents)
    assertion = sign(claims_for(CLIENT, TOKEN_URL), kid="never-published")
    with pytest.raises(UnknownKeyError):
        _verify(keys, _client(jwks_uri=JWKS_URI), assertion)
    assert [force for _, _, force in documents.fetches] == [False, True]


def test_a_registrations_inline_jwks_is_never_re_fetched() -> None:
    """A DCR or static client's keys change only when it registers again."""
    documents = MemoryDocuments()
    keys = ClientKeys(documents)
    assertion = sign(claims_for(DCR_CLIENT, TOKEN_URL), kid="elsewhere")
    registered = _client(DCR_CLIENT, jwks=jwks(private_key("RS256")))
    with pytest.raises(UnknownKeyError):
        _verify(keys, registered, assertion)
    assert documents.fetches == []


def test_a_url_clients_inline_jwks_reads_its_document_again() -> None:
    """Its keys live in its metadata document, which it updates to rotate them."""
    new = private_key("RS256", "rotated")
    documents = MemoryDocuments({CLIENT: {"client_id": CLIENT, "jwks": jwks(new)}})
    keys = ClientKeys(documents)
    assertion = sign(claims_for(CLIENT, TOKEN_URL), new)
    _verify(keys, _client(jwks=jwks(private_key("RS256"))), assertion)
    assert documents.fetches == [(CLIENT, "client_metadata", True)]


def test_a_url_clients_unreadable_document_is_invalid_client() -> None:
    keys = ClientKeys(MemoryDocuments())
    assertion = sign(claims_for(CLIENT, TOKEN_URL), kid="elsewhere")
    with pytest.raises(InvalidClientError) as caught:
        _verify(keys, _client(jwks=jwks(private_key("RS256"))), assertion)
    assert caught.value.reason == "document_failed"


def test_unreachable_jwks_uri_is_invalid_client() -> None:
    keys = ClientKeys(MemoryDocuments())
    with pytest.raises(InvalidClientError) as caught:
        keys.key_set(_client(jwks_uri=JWKS_URI))
    assert caught.value.reason == "jwks_uri_failed"


def test_bad_key_material_is_invalid_client_not_a_crash() -> None:
    private = private_key("RS256").as_dict(private=True)
    documents = MemoryDocuments({JWKS_URI: {"keys": [private]}})
    keys = ClientKeys(documents)
    for client in (_client(jwks_uri=JWKS_URI), _client(jwks={"keys": "nope"})):
        with pytest.raises(InvalidClientError) as caught:
            keys.key_set(client)
        assert caught.value.reason in ("bad_jwks_uri", "bad_jwks")


def test_without_a_document_source_jwks_uri_is_refused() -> None:
    with pytest.raises(InvalidClientError) as caught:
        ClientKeys(None).key_set(_client(jwks_uri=JWKS_URI))
    assert caught.value.reason == "jwks_uri_unavailable"


def test_a_client_without_keys_is_refused() -> None:
    with pytest.raises(InvalidClientError) as caught:
        ClientKeys(MemoryDocuments()).key_set(_client())
    assert caught.value.reason == "no_client_keys"


def test_a_worker_remembers_where_a_client_keeps_its_keys() -> None:
    """J71: the jwks_uri read last, as a document id for the token endpoint's
    first round trip; inline keys leave nothing to read ahead."""
    documents = MemoryDocuments({JWKS_URI: jwks(private_key("ES256"))})
    keys = ClientKeys(documents)
    assert keys.jwks_document_of(CLIENT) is None
    assertion = sign(claims_for(CLIENT, TOKEN_URL), alg="ES256")
    _verify(keys, _client(jwks_uri=JWKS_URI), assertion)
    assert keys.jwks_document_of(CLIENT) == document_id("jwks", JWKS_URI)
    inline = _client(DCR_CLIENT, jwks=jwks(private_key("RS256")))
    _verify(keys, inline, sign(claims_for(DCR_CLIENT, TOKEN_URL)))
    assert keys.jwks_document_of(DCR_CLIENT) is None


def test_the_remembered_places_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The least recently used go first: a flood of client ids costs a
    bounded amount of memory."""
    monkeypatch.setattr(client_keys, "JWKS_URIS_REMEMBERED", 2)
    documents = MemoryDocuments()
    keys = ClientKeys(documents)
    for client_id in ("a", "b", "a", "c"):
        with pytest.raises(InvalidClientError):
            keys.key_set(_client(client_id, jwks_uri=f"https://{client_id}.example/k"))
    assert keys.jwks_document_of("a") is not None
    assert keys.jwks_document_of("b") is None
    assert keys.jwks_document_of("c") is not None


def test_a_client_whose_keys_moved_inline_is_forgotten() -> None:
    """Nothing is read ahead for a client that no longer names a jwks_uri."""
    documents = MemoryDocuments({JWKS_URI: jwks(private_key("ES256"))})
    keys = ClientKeys(documents)
    keys.key_set(_client(jwks_uri=JWKS_URI))
    assert keys.jwks_document_of(CLIENT) is not None
    keys.key_set(_client(jwks=jwks(private_key("RS256"))))
    assert keys.jwks_document_of(CLIENT) is None
