"""proxy/clients/authentication.py: reading and checking private_key_jwt credentials."""

from __future__ import annotations

import threading
import typing as t

import pytest
import redis
from werkzeug.datastructures import Headers
from werkzeug.datastructures import MultiDict

from proxy.clients.authentication import ClientAssertions
from proxy.clients.authentication import authenticate
from proxy.clients.authentication import presented_client_id
from proxy.clients.authentication import read_credentials
from proxy.clients.client_keys import ClientKeys
from proxy.config.settings import Settings
from proxy.oauth.errors import InvalidClientError
from proxy.oauth.errors import InvalidRequestError
from proxy.store import Store
from proxy.store.records import ClientRecord
from tests.client_assertions import MemoryDocuments
from tests.client_assertions import assertion_form
from tests.client_assertions import claims_for
from tests.client_assertions import jwks
from tests.client_assertions import private_key
from tests.client_assertions import sign
from tests.endpoints._helpers import basic

CLIENT = "mcp_keyholder"
TOKEN_URL = "http://127.0.0.1:9999/oauth2/token"


def _read(form: dict[str, t.Any], headers: dict[str, str] | None = None) -> t.Any:
    return read_credentials(MultiDict(form), Headers(headers or {}), MultiDict())


def _assertion(**override: t.Any) -> str:
    return sign(claims_for(CLIENT, TOKEN_URL, **override))


def _client(method: str = "private_key_jwt", *, keys: bool = True) -> ClientRecord:
    return ClientRecord(
        client_id=CLIENT,
        redirect_uris=("http://127.0.0.1/cb",),
        token_endpoint_auth_method=method,
        grant_types=("authorization_code", "refresh_token"),
        client_id_issued_at=0,
        metadata={"jwks": jwks(private_key("RS256"))} if keys else {},
    )


@pytest.fixture
def assertions(settings: Settings, real_redis: redis.Redis) -> ClientAssertions:
    store = Store(real_redis, settings.key_prefix)
    return ClientAssertions(settings, store, ClientKeys(MemoryDocuments()))


# -- read_credentials ---------------------------------------------------------


def test_assertion_names_the_client_without_client_id() -> None:
    """RFC 7521 §4.2: client_id is optional beside an assertion."""
    credentials = _read(assertion_form(_assertion()))
    assert credentials.client_id == CLIENT
    assert credentials.method == "private_key_jwt"
    assert credentials.secret is None


def test_client_id_beside_the_assertion_must_agree() -> None:
    assert _read(assertion_form(_assertion(), client_id=CLIENT)).client_id == CLIENT
    with pytest.raises(InvalidClientError):
        _read(assertion_form(_assertion(), client_id="someone-else"))


def test_assertion_plus_basic_is_one_method_too_many() -> None:
    """OAuth 2.1 §2.4: one client authentication method per request."""
    with pytest.raises(InvalidRequestError):
        _read(assertion_form(_assertion()), basic(CLIENT, "secret"))


def test_assertion_plus_client_secret_is_one_method_too_many() -> None:
    with pytest.raises(InvalidRequestError):
        _read(assertion_form(_assertion(), client_secret="secret"))


def test_wrong_assertion_type_is_invalid_client() -> None:
    form = assertion_form(_assertion(), client_assertion_type="urn:other")
    with pytest.raises(InvalidClientError) as caught:
        _read(form)
    assert caught.value.reason == "assertion_type"


def test_assertion_type_without_assertion_is_invalid_request() -> None:
    form = assertion_form(_assertion())
    del form["client_assertion"]
    with pytest.raises(InvalidRequestError):
        _read(form)


def test_assertion_without_subject_is_invalid_client() -> None:
    with pytest.raises(InvalidClientError):
        _read(assertion_form(_assertion(sub=None)))


def test_rate_limits_count_the_assertion_subject() -> None:
    """RATE-1: failed private_key_jwt attempts back off per client id too."""
    form = MultiDict(assertion_form(_assertion()))
    assert presented_client_id(Headers(), form) == CLIENT


# -- authenticate -------------------------------------------------------------


def test_registered_private_key_jwt_client_authenticates(
    assertions: ClientAssertions,
) -> None:
    credentials = _read(assertion_form(_assertion()))
    assert authenticate(credentials, _client(), assertions=assertions).client_id == (
        CLIENT
    )


def test_private_key_jwt_client_is_confidential() -> None:
    """Refresh-token binding and revocation ownership treat it as confidential."""
    assert not _client().is_public


@pytest.mark.parametrize(
    "form",
    [
        {"client_id": CLIENT},
        {"client_id": CLIENT, "client_secret": "s"},
    ],
)
def test_key_client_may_not_use_another_method(
    form: dict[str, str], assertions: ClientAssertions
) -> None:
    with pytest.raises(InvalidClientError) as caught:
        authenticate(_read(form), _client(), assertions=assertions)
    assert caught.value.reason == "method_mismatch"


@pytest.mark.parametrize(
    ("method", "keys"),
    [("none", False), ("client_secret_basic", False), ("client_secret_basic", True)],
)
def test_clients_without_keys_of_their_own_may_not_send_an_assertion(
    method: str, keys: bool, assertions: ClientAssertions
) -> None:
    credentials = _read(assertion_form(_assertion()))
    with pytest.raises(InvalidClientError) as caught:
        authenticate(credentials, _client(method, keys=keys), assertions=assertions)
    assert caught.value.reason == "method_mismatch"


def test_a_public_client_that_publishes_keys_may_sign_with_them(
    assertions: ClientAssertions,
) -> None:
    """ChatGPT's documents say `none`, list keys, and sign when it is advertised."""
    credentials = _read(assertion_form(_assertion()))
    client = _client("none")
    assert authenticate(credentials, client, assertions=assertions) is client
    with pytest.raises(InvalidClientError) as caught:
        authenticate(credentials, client, assertions=assertions)
    assert caught.value.reason == "assertion_replayed"


def test_a_public_client_that_publishes_keys_may_still_send_none(
    assertions: ClientAssertions,
) -> None:
    client = _client("none")
    credentials = _read({"client_id": CLIENT})
    assert authenticate(credentials, client, assertions=assertions) is client


def test_replayed_jti_is_invalid_client_on_real_redis(
    assertions: ClientAssertions,
) -> None:
    credentials = _read(assertion_form(_assertion()))
    authenticate(credentials, _client(), assertions=assertions)
    with pytest.raises(InvalidClientError) as caught:
        authenticate(credentials, _client(), assertions=assertions)
    assert caught.value.reason == "assertion_replayed"


def test_spent_jti_lives_as_long_as_the_assertion(
    assertions: ClientAssertions, real_redis: redis.Redis
) -> None:
    """TTL = exp - now + leeway: never shorter than the assertion is valid."""
    credentials = _read(assertion_form(_assertion()))  # exp = now + 60
    authenticate(credentials, _client(), assertions=assertions)
    keys = real_redis.keys(assertions.store.keys.prefix + "jti:*")
    assert len(keys) == 1
    assert 60 < real_redis.ttl(keys[0]) <= 90
    assert CLIENT not in keys[0]


def test_refused_assertion_does_not_spend_its_jti(
    assertions: ClientAssertions, real_redis: redis.Redis
) -> None:
    """A forged assertion must not burn the jti of a real one."""
    credentials = _read(assertion_form(_assertion(aud="https://elsewhere")))
    with pytest.raises(InvalidClientError):
        authenticate(credentials, _client(), assertions=assertions)
    assert real_redis.keys(assertions.store.keys.prefix + "jti:*") == []


def test_concurrent_spends_of_one_jti_let_exactly_one_through(
    settings: Settings, redis_url: str, real_redis: redis.Redis
) -> None:
    """N workers race with the same assertion on a real Redis: one wins."""
    winners: list[bool] = []
    barrier = threading.Barrier(8)

    def spend() -> None:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        store = Store(client, settings.key_prefix)
        barrier.wait()
        winners.append(store.spend_assertion(CLIENT, "the-jti", 60))
        client.close()

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(winners) == [False] * 7 + [True]


def test_only_an_assertion_has_a_key_set_to_read_ahead(
    assertions: ClientAssertions,
) -> None:
    """J71: the token endpoint reads a key set ahead for private_key_jwt only,
    and only once this worker knows where the client keeps it."""
    signed = _read(assertion_form(_assertion()))
    assert assertions.keys_to_read_ahead(signed) is None  # not read yet
    assertions.keys._remember(CLIENT, "https://keys.example/jwks.json")
    assert assertions.keys_to_read_ahead(signed) is not None
    public = _read({"client_id": CLIENT})
    assert assertions.keys_to_read_ahead(public) is None
