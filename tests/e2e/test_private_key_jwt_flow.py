"""private_key_jwt end to end: Authlib's own client against the real stack.

Real processes: redis-server, oidc-provider-mock, the proxy under gunicorn
with two workers (which share only Redis, so the spent-jti store must be
there), and the SDK-built resource server. The client registers by DCR with
an inline `jwks`, logs its user in through the browser flow, and then
authenticates every back-channel request with an RS256 assertion signed by
Authlib (`authlib.oauth2.rfc7523.PrivateKeyJWT`).

Authlib signs its assertions with `exp = iat + 3600` and offers no setting
for it; the default CLIENT_ASSERTION_MAX_LIFETIME_SECONDS (3600) admits it,
which is why the default is one hour.
"""

from __future__ import annotations

import secrets
import threading
import typing as t
from collections.abc import Iterator

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jwk import RSAKey

from tests.client_assertions import assertion_form
from tests.client_assertions import claims_for
from tests.client_assertions import sign

from .conftest import StackFactory
from .mcp_oauth_client import drive_browser_login
from .stack import Stack

USER = "keyholder-e2e@example.com"
REDIRECT_URI = "http://127.0.0.1:47211/callback"
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def stack(make_e2e_stack: StackFactory) -> Stack:
    return make_e2e_stack()


@pytest.fixture(scope="module")
def client_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "e2e-client-key"})


@pytest.fixture(scope="module")
def client_id(stack: Stack, client_key: RSAKey) -> str:
    """DCR with inline jwks: no secret comes back."""
    response = requests.post(
        f"{stack.proxy_url}/oauth2/register",
        json={
            "client_name": "Authlib private_key_jwt e2e",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [client_key.as_dict(private=False)]},
        },
        timeout=TIMEOUT,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["token_endpoint_auth_method"] == "private_key_jwt"
    assert body["application_type"] == "native"
    assert "client_secret" not in body
    return str(body["client_id"])


@pytest.fixture
def session(
    stack: Stack, client_id: str, client_key: RSAKey
) -> Iterator[OAuth2Session]:
    token_url = f"{stack.proxy_url}/oauth2/token"
    session = OAuth2Session(
        client_id,
        client_key,
        token_endpoint_auth_method="private_key_jwt",
        redirect_uri=REDIRECT_URI,
        scope="mcp",
        code_challenge_method="S256",
    )
    session.register_client_auth_method(PrivateKeyJWT(token_url))
    with session:
        yield session


def _code(stack: Stack, session: OAuth2Session) -> tuple[str, str]:
    """Approve consent and log in at the IdP; (code, code_verifier)."""
    verifier = secrets.token_urlsafe(48)
    url, _ = session.create_authorization_url(
        f"{stack.proxy_url}/oauth2/authorize",
        code_verifier=verifier,
        resource=stack.mcp_url,
    )
    code, _, iss = drive_browser_login(url, USER, timeout=TIMEOUT)
    assert iss == stack.proxy_url
    return code, verifier


def _claims(stack: Stack, access_token: str) -> dict[str, t.Any]:
    jwks = requests.get(f"{stack.proxy_url}/.well-known/jwks.json", timeout=TIMEOUT)
    return dict(jwt.decode(access_token, KeySet.import_key_set(jwks.json())).claims)


def test_authlib_private_key_jwt_client_exchanges_a_code_and_refreshes(
    stack: Stack, client_id: str, session: OAuth2Session
) -> None:
    token_url = f"{stack.proxy_url}/oauth2/token"
    code, verifier = _code(stack, session)
    token = session.fetch_token(
        token_url, code=code, code_verifier=verifier, resource=stack.mcp_url
    )
    assert token["token_type"].lower() == "bearer"
    claims = _claims(stack, token["access_token"])
    assert claims["client_id"] == client_id
    assert claims["aud"] == stack.mcp_url
    assert USER in str(claims["sub"])

    refreshed = session.refresh_token(token_url, refresh_token=token["refresh_token"])
    assert refreshed["access_token"] != token["access_token"]
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert _claims(stack, refreshed["access_token"])["client_id"] == client_id

    # The resource server accepts the refreshed token (it verifies it offline).
    response = requests.post(
        stack.mcp_url,
        headers={
            "Authorization": f"Bearer {refreshed['access_token']}",
            "Accept": "application/json, text/event-stream",
        },
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        timeout=TIMEOUT,
    )
    assert response.status_code != 401, response.text


def test_one_assertion_sent_twice_at_once_wins_once(
    stack: Stack, client_id: str, session: OAuth2Session
) -> None:
    """Two codes, one assertion (one jti), two concurrent requests that gunicorn
    may hand to either worker: exactly one is authenticated."""
    token_url = f"{stack.proxy_url}/oauth2/token"
    codes = [_code(stack, session), _code(stack, session)]
    assertion = sign(claims_for(client_id, token_url), _private(session))
    barrier = threading.Barrier(2)
    answers: list[requests.Response] = []

    def exchange(code: str, verifier: str) -> None:
        form = assertion_form(
            assertion,
            grant_type="authorization_code",
            code=code,
            code_verifier=verifier,
            redirect_uri=REDIRECT_URI,
        )
        barrier.wait()
        answers.append(requests.post(token_url, data=form, timeout=TIMEOUT))

    threads = [threading.Thread(target=exchange, args=c) for c in codes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200, 401]
    refused = next(a for a in answers if a.status_code == 401)
    assert refused.json()["error"] == "invalid_client"
    assert refused.headers["Cache-Control"] == "no-store"


def _private(session: OAuth2Session) -> RSAKey:
    return t.cast(RSAKey, session.client_secret)
