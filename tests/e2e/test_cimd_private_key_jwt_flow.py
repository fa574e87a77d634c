"""ChatGPT's path, end to end: a URL client id whose document declares
private_key_jwt with a `jwks_uri`.

Real processes: redis-server, oidc-provider-mock, the proxy under gunicorn
with two workers (sharing only Redis: the document cache, the forced-refetch
limit and the spent-jti store must all live there), and the SDK-built MCP
resource server. The client's document and key set are served over https
from 127.0.0.1 by a test-CA server in this process, which counts every fetch.
Assertions are RS256 JWTs with aud = the token endpoint, as ChatGPT signs them.
"""

from __future__ import annotations

import secrets
import typing as t
from urllib.parse import urlencode

import anyio
import httpx2
import pytest
import requests
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from proxy.oauth.pkce import s256
from tests.client_assertions import assertion_form
from tests.client_assertions import claims_for
from tests.client_assertions import jwks
from tests.client_assertions import private_key
from tests.client_assertions import sign
from tests.document_server import DocumentServer

from .conftest import StackFactory
from .mcp_oauth_client import drive_browser_login
from .stack import Stack

USER = "dana-chatgpt@example.com"
REDIRECT_URI = "https://chatgpt.example/connector_platform_oauth_redirect"
PATH = "/oauth/app-123/client.json"
JWKS_PATH = "/oauth/jwks.json"
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def served(document_ca: t.Any) -> t.Iterator[DocumentServer]:
    """One document server for the module: the stack is started once."""
    server = DocumentServer(document_ca)
    yield server
    server.close()


@pytest.fixture(scope="module")
def client_id(served: DocumentServer) -> str:
    jwks_uri = served.serve_json(JWKS_PATH, jwks(private_key("RS256", "chatgpt-1")))
    document = served.client_document(
        PATH,
        [REDIRECT_URI],
        client_name="ChatGPT app (e2e)",
        token_endpoint_auth_method="private_key_jwt",
        token_endpoint_auth_signing_alg="RS256",
        jwks_uri=jwks_uri,
    )
    return served.serve_json(PATH, document)


@pytest.fixture(scope="module")
def stack(make_e2e_stack: StackFactory, ca_file: str, client_id: str) -> Stack:
    return make_e2e_stack(
        proxy_overrides={
            "SSL_CERT_FILE": ca_file,
            "CIMD_ALLOWED_PRIVATE_HOSTS": "127.0.0.1",
            "JWKS_REFETCH_MIN_SECONDS": "3600",
        }
    )


def _authorize_url(stack: Stack, client_id: str, verifier: str) -> str:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
        "scope": "mcp",
        "state": secrets.token_urlsafe(8),
        "resource": stack.mcp_url,
    }
    return f"{stack.proxy_url}/oauth2/authorize?{urlencode(query)}"


def _token(stack: Stack, assertion: str, **form: str) -> requests.Response:
    return requests.post(
        f"{stack.proxy_url}/oauth2/token",
        data=assertion_form(assertion, **form),
        timeout=TIMEOUT,
    )


def _assertion(stack: Stack, client_id: str, key: t.Any) -> str:
    return sign(claims_for(client_id, f"{stack.proxy_url}/oauth2/token"), key)


def _login(stack: Stack, client_id: str, key: t.Any) -> dict[str, t.Any]:
    """Consent, IdP login, code exchange: the token response."""
    verifier = secrets.token_urlsafe(48)
    code, _, iss = drive_browser_login(
        _authorize_url(stack, client_id, verifier), USER, timeout=TIMEOUT
    )
    assert iss == stack.proxy_url
    response = _token(
        stack,
        _assertion(stack, client_id, key),
        grant_type="authorization_code",
        code=code,
        code_verifier=verifier,
        redirect_uri=REDIRECT_URI,
        resource=stack.mcp_url,
    )
    assert response.status_code == 200, response.text
    return t.cast(dict[str, t.Any], response.json())


async def _whoami(mcp_url: str, access_token: str) -> dict[str, t.Any]:
    headers = {"Authorization": f"Bearer {access_token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=TIMEOUT) as http,
        streamable_http_client(mcp_url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool("whoami", {})
        assert not result.is_error, result.content
        return dict(result.structured_content or {})


def test_chatgpt_shaped_client_logs_in_calls_a_tool_and_refreshes(
    stack: Stack, client_id: str, served: DocumentServer
) -> None:
    key = private_key("RS256", "chatgpt-1")
    tokens = _login(stack, client_id, key)

    who = anyio.run(_whoami, stack.mcp_url, tokens["access_token"])
    assert who["client_id"] == client_id
    assert USER in str(who["sub"])

    assertion = _assertion(stack, client_id, key)
    refreshed = _token(
        stack,
        assertion,
        grant_type="refresh_token",
        refresh_token=tokens["refresh_token"],
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != tokens["refresh_token"]

    # The same assertion again, whichever worker takes it: refused.
    replayed = _token(
        stack,
        assertion,
        grant_type="refresh_token",
        refresh_token=refreshed.json()["refresh_token"],
    )
    assert replayed.status_code == 401, replayed.text
    assert replayed.json()["error"] == "invalid_client"
    assert replayed.headers["Cache-Control"] == "no-store"

    # Two workers, one cache: the document and its key set were fetched once.
    assert served.hits[PATH] == 1
    assert served.hits[JWKS_PATH] == 1


def test_rotated_keys_are_read_again_once_and_only_once(
    stack: Stack, client_id: str, served: DocumentServer
) -> None:
    tokens = _login(stack, client_id, private_key("RS256", "chatgpt-1"))
    fetched = served.hits[JWKS_PATH]

    # The client rotates: its key set now holds only the new key.
    new_key = private_key("RS256", "chatgpt-2")
    served.serve_json(JWKS_PATH, jwks(new_key))
    rotated = _token(
        stack,
        _assertion(stack, client_id, new_key),
        grant_type="refresh_token",
        refresh_token=tokens["refresh_token"],
    )
    assert rotated.status_code == 200, rotated.text
    assert served.hits[JWKS_PATH] == fetched + 1

    # Another unknown kid within JWKS_REFETCH_MIN_SECONDS: no fetch, refused.
    refused = _token(
        stack,
        _assertion(stack, client_id, private_key("RS256", "made-up")),
        grant_type="refresh_token",
        refresh_token=rotated.json()["refresh_token"],
    )
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == "invalid_client"
    assert served.hits[JWKS_PATH] == fetched + 1

    # The new key keeps working (from the cache).
    again = _token(
        stack,
        _assertion(stack, client_id, new_key),
        grant_type="refresh_token",
        refresh_token=rotated.json()["refresh_token"],
    )
    assert again.status_code == 200, again.text
    assert served.hits[JWKS_PATH] == fetched + 1
