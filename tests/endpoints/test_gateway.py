"""GET/POST/DELETE /mcp in gateway mode: token checks, then a real MCP backend.

The app runs in the Flask test client; the backend is a real
`proxy.cli.demo_mcp_server` process on a free loopback port (tools echo, whoami,
count). Tokens come from the real front and back channel (`oauth.tokens()`).
"""

from __future__ import annotations

import gzip
import http.server
import json
import socket
import threading
import time
import typing as t
from collections.abc import Iterator
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
import requests
from joserfc.jwk import ECKey

from proxy import create_app
from proxy.config.settings import Settings
from proxy.oauth.access_tokens import mint_access_token
from proxy.resource_server import verification
from support.processes import ManagedProcess
from support.processes import start_demo_backend
from tests.oauth_client import REDIRECT_URI
from tests.oauth_client import OAuthTestClient

from ._helpers import ISSUER
from ._helpers import RESOURCE
from ._helpers import ShiftedClock
from ._helpers import assert_json_error
from ._helpers import closed_port
from ._helpers import decode_access_token

PRM_URL = ISSUER + "/.well-known/oauth-protected-resource/mcp"
ACCEPT = "application/json, text/event-stream"
PROTOCOL_VERSION = "2025-06-18"
INSPECTOR_ORIGIN = "http://localhost:6274"
EVIL_ORIGIN = "https://evil.example"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "gateway-test", "version": "1.0"},
    },
}


# --------------------------------------------------------------------------- #
# Fixtures: the real MCP backend and the gateway app
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def backend() -> Iterator[ManagedProcess]:
    """`python -m proxy.cli.demo_mcp_server` on a free port, stopped at module end."""
    proc = start_demo_backend()
    try:
        yield proc
    finally:
        proc.close()


@pytest.fixture
def gateway_settings(settings: Settings, backend: ManagedProcess) -> Settings:
    return settings.replace(backend_url=backend.url)


@pytest.fixture
def app(gateway_settings: Settings, store_client: t.Any) -> t.Any:
    return create_app(gateway_settings, redis_client=store_client)


@pytest.fixture
def tokens(oauth: OAuthTestClient) -> dict[str, t.Any]:
    """A fresh token response (access + refresh) for alice, plus its client_id."""
    client_id, body = oauth.tokens()
    return {**body, "client_id": client_id}


@pytest.fixture
def token(tokens: dict[str, t.Any]) -> str:
    return t.cast(str, tokens["access_token"])


# --------------------------------------------------------------------------- #
# MCP over the test client
# --------------------------------------------------------------------------- #


def mcp_headers(
    token: str | None = None, session: str | None = None, scheme: str = "Bearer"
) -> dict[str, str]:
    headers = {
        "Accept": ACCEPT,
        "Content-Type": "application/json",
        "MCP-Protocol-Version": PROTOCOL_VERSION,
    }
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    if session is not None:
        headers["Mcp-Session-Id"] = session
    return headers


def messages(response: t.Any) -> list[dict[str, t.Any]]:
    """The JSON-RPC messages of a JSON or SSE response body."""
    body = response.get_data(as_text=True)
    if response.mimetype == "application/json":
        return [json.loads(body)]
    assert response.mimetype == "text/event-stream", response.mimetype
    return [
        json.loads(line[len("data:") :])
        for line in body.splitlines()
        if line.startswith("data:") and line[len("data:") :].strip()
    ]


def initialize(client: t.Any, token: str, **headers: str) -> str:
    """Open an MCP session through the gateway; return its Mcp-Session-Id."""
    response = client.post(
        "/mcp", json=INITIALIZE, headers={**mcp_headers(token), **headers}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    session = t.cast(str, response.headers["Mcp-Session-Id"])
    assert messages(response)[-1]["result"]["serverInfo"]
    notified = client.post(
        "/mcp",
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers=mcp_headers(token, session),
    )
    assert notified.status_code == 202, notified.get_data(as_text=True)
    return session


def call_tool(
    client: t.Any,
    token: str,
    session: str,
    name: str,
    arguments: dict[str, t.Any] | None = None,
    **headers: str,
) -> t.Any:
    return client.post(
        "/mcp",
        json={
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments or {}},
        },
        headers={**mcp_headers(token, session), **headers},
    )


def tool_result(response: t.Any) -> dict[str, t.Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    result = messages(response)[-1]["result"]
    assert not result.get("isError"), result
    return t.cast(dict[str, t.Any], result)


def whoami(client: t.Any, token: str, **headers: str) -> dict[str, t.Any]:
    session = initialize(client, token)
    result = tool_result(call_tool(client, token, session, "whoami", **headers))
    return t.cast(dict[str, t.Any], result["structuredContent"])


def challenge_params(response: t.Any) -> dict[str, str]:
    """The auth-params of a `WWW-Authenticate: Bearer k="v", ...` header."""
    header = response.headers["WWW-Authenticate"]
    scheme, _, rest = header.partition(" ")
    assert scheme == "Bearer"
    params = {}
    for part in rest.split('", '):
        key, _, value = part.partition("=")
        params[key.strip()] = value.strip().strip('"')
    return params


def assert_unauthorized(response: t.Any, *, error: str | None) -> dict[str, str]:
    assert response.status_code == 401, response.get_data(as_text=True)
    params = challenge_params(response)
    assert params["resource_metadata"] == PRM_URL
    if error is None:
        assert "error" not in params
    else:
        assert params["error"] == error
    return params


# --------------------------------------------------------------------------- #
# Protected resource metadata and challenges (PRM)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ],
)
def test_prm_is_served_in_gateway_mode(client: t.Any, path: str) -> None:
    """PRM-1, PRM-2: both PRM URLs answer 200 JSON naming the MCP URL and us."""
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["resource"] == RESOURCE
    assert body["authorization_servers"][0] == ISSUER


def test_initialize_without_token_is_401_before_dispatch(client: t.Any) -> None:
    """PRM-7: no token → 401, never a JSON-RPC answer from the backend."""
    response = client.post("/mcp", json=INITIALIZE, headers=mcp_headers())
    assert_unauthorized(response, error=None)
    assert "Mcp-Session-Id" not in response.headers
    assert "jsonrpc" not in response.get_json()


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_every_method_needs_a_token(client: t.Any, method: str) -> None:
    """PRM-7: GET (SSE), POST and DELETE on the MCP path all need a token."""
    response = client.open("/mcp", method=method, headers=mcp_headers())
    assert_unauthorized(response, error=None)


def test_challenge_names_the_prm_url_and_it_dereferences(client: t.Any) -> None:
    """PRM-8: `Bearer resource_metadata="<absolute PRM URL>"`, and it resolves."""
    response = client.post("/mcp", json=INITIALIZE, headers=mcp_headers())
    url = challenge_params(response)["resource_metadata"]
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == ISSUER
    document = client.get(parts.path)
    assert document.status_code == 200
    assert document.get_json()["resource"] == RESOURCE


def test_challenge_carries_the_scope(client: t.Any) -> None:
    """PRM-9: the 401 challenge says which scopes the request needs."""
    response = client.post("/mcp", json=INITIALIZE, headers=mcp_headers())
    assert challenge_params(response)["scope"].split() == ["mcp", "mcp:write"]


def test_no_credentials_challenge_has_no_error(client: t.Any) -> None:
    """PRM-10: without credentials the challenge has no `error` attribute."""
    response = client.post("/mcp", json=INITIALIZE, headers=mcp_headers())
    assert_unauthorized(response, error=None)


def test_garbage_token_is_invalid_token(client: t.Any) -> None:
    """PRM-10: a malformed token → 401 `error="invalid_token"`."""
    response = client.post("/mcp", json=INITIALIZE, headers=mcp_headers("garbage"))
    assert_unauthorized(response, error="invalid_token")
    assert response.get_json()["error"] == "invalid_token"


def test_expired_token_is_invalid_token(
    client: t.Any, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PRM-10, RS-1: an expired access token → 401 `error="invalid_token"`."""
    monkeypatch.setattr(verification, "time", ShiftedClock(2 * 3600))
    response = client.post("/mcp", json=INITIALIZE, headers=mcp_headers(token))
    assert_unauthorized(response, error="invalid_token")


def _token_like(client: t.Any, token: str, key: ECKey, **changes: t.Any) -> str:
    """Sign a copy of `token`'s claims (same grant) with `changes` applied."""
    claims = decode_access_token(client, token).claims
    values = {
        "issuer": claims["iss"],
        "sub": claims["sub"],
        "audience": claims["aud"],
        "client_id": claims["client_id"],
        "scope": claims["scope"],
        "grant_id": claims["sid"],
        "now": int(time.time()),
        "ttl": 600,
    }
    values.update(changes)
    return mint_access_token(key, **values)


def _our_key(app: t.Any) -> ECKey:
    with app.app_context():
        return t.cast(ECKey, app.extensions["proxy"].signing_keys.active())


def test_wrong_audience_is_invalid_token(app: t.Any, client: t.Any, token: str) -> None:
    """PRM-10, RS-2: our own signature, but `aud` of another resource → 401."""
    other = _token_like(
        client, token, _our_key(app), audience="http://127.0.0.1:9999/other"
    )
    response = client.post("/mcp", json=INITIALIZE, headers=mcp_headers(other))
    assert_unauthorized(response, error="invalid_token")


def test_own_key_sanity_copy_is_accepted(app: t.Any, client: t.Any, token: str) -> None:
    """RS-2 control: the same re-signed copy with the right `aud` is accepted."""
    same = _token_like(client, token, _our_key(app))
    assert initialize(client, same)


def test_foreign_key_is_invalid_token(client: t.Any, token: str) -> None:
    """RS-1: a token with valid claims signed by a key not in our JWKS → 401."""
    foreign = ECKey.generate_key("P-256", parameters={"kid": "foreign"})
    forged = _token_like(client, token, foreign)
    response = client.post("/mcp", json=INITIALIZE, headers=mcp_headers(forged))
    assert_unauthorized(response, error="invalid_token")


def test_wrong_issuer_is_invalid_token(app: t.Any, client: t.Any, token: str) -> None:
    """RS-3: signed with our key but another `iss` → 401."""
    other = _token_like(client, token, _our_key(app), issuer="http://127.0.0.1:1")
    response = client.post("/mcp", json=INITIALIZE, headers=mcp_headers(other))
    assert_unauthorized(response, error="invalid_token")


def _upstream_tokens(idp_url: str) -> dict[str, t.Any]:
    """Tokens straight from the upstream IdP (as the proxy's own client)."""
    config = requests.get(
        idp_url + "/.well-known/openid-configuration", timeout=5
    ).json()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": "proxy-client",
            "redirect_uri": REDIRECT_URI,
            "scope": "openid email profile",
            "state": "s",
            "nonce": "n",
            "resource": RESOURCE,
        }
    )
    login = requests.post(
        f"{config['authorization_endpoint']}?{query}",
        data={"sub": "alice@example.com"},
        allow_redirects=False,
        timeout=5,
    )
    assert login.status_code == 302, login.text
    code = parse_qs(urlsplit(login.headers["Location"]).query)["code"][0]
    response = requests.post(
        config["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
        },
        auth=("proxy-client", "proxy-secret"),
        timeout=5,
    )
    assert response.status_code == 200, response.text
    return t.cast(dict[str, t.Any], response.json())


@pytest.mark.parametrize("kind", ["id_token", "access_token"])
def test_upstream_tokens_are_refused(client: t.Any, idp_url: str, kind: str) -> None:
    """RS-3: the upstream IdP's ID token or access token never opens /mcp."""
    upstream = _upstream_tokens(idp_url)[kind]
    response = client.post("/mcp", json=INITIALIZE, headers=mcp_headers(upstream))
    assert_unauthorized(response, error="invalid_token")


def test_missing_required_scope_is_403_insufficient_scope(
    settings: Settings, backend: ManagedProcess, store_client: t.Any
) -> None:
    """PRM-11, RS-6: a valid token without MCP_REQUIRED_SCOPES → 403 with scope."""
    app = create_app(
        settings.replace(backend_url=backend.url, required_scopes=("mcp:write",)),
        redis_client=store_client,
    )
    client = app.test_client()
    _, body = OAuthTestClient(client).tokens()  # scope "mcp" only
    assert body["scope"].split() == ["mcp"]
    response = client.post(
        "/mcp", json=INITIALIZE, headers=mcp_headers(body["access_token"])
    )
    assert response.status_code == 403
    params = challenge_params(response)
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "mcp:write"
    assert params["resource_metadata"] == PRM_URL


def test_required_scope_present_is_accepted(
    settings: Settings, backend: ManagedProcess, store_client: t.Any
) -> None:
    """PRM-11 control: a token that has the required scope gets through."""
    app = create_app(
        settings.replace(backend_url=backend.url, required_scopes=("mcp:write",)),
        redis_client=store_client,
    )
    client = app.test_client()
    oauth = OAuthTestClient(client)
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id, scope="mcp mcp:write")
    access = oauth.token(flow).get_json()["access_token"]
    assert initialize(client, access)


def test_token_in_header_and_body_is_invalid_request(client: t.Any, token: str) -> None:
    """PRM-12: the token sent two ways (header and form body) → 400."""
    response = client.post(
        "/mcp",
        data={"access_token": token},
        headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
    )
    assert_json_error(response, 400, "invalid_request")


def test_lowercase_bearer_scheme_works(client: t.Any, token: str) -> None:
    """PRM-13: `Authorization: bearer <token>` is accepted."""
    response = client.post(
        "/mcp", json=INITIALIZE, headers=mcp_headers(token, scheme="bearer")
    )
    assert response.status_code == 200
    assert response.headers["Mcp-Session-Id"]
    response.close()  # the relay and its stream slot, before the app goes


def test_token_in_query_is_ignored(client: t.Any, token: str) -> None:
    """PRM-14: `?access_token=<valid>` without a header → 401 (no credentials)."""
    response = client.post(
        "/mcp?" + urlencode({"access_token": token}),
        json=INITIALIZE,
        headers=mcp_headers(),
    )
    assert_unauthorized(response, error=None)


def test_foreign_origin_is_403(client: t.Any, token: str) -> None:
    """PRM-15: a valid token from a page on another origin → 403."""
    response = client.post(
        "/mcp", json=INITIALIZE, headers={**mcp_headers(token), "Origin": EVIL_ORIGIN}
    )
    assert response.status_code == 403
    assert "Mcp-Session-Id" not in response.headers
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("origin", [INSPECTOR_ORIGIN, "http://127.0.0.1:3000", ISSUER])
def test_loopback_and_own_origin_are_allowed(
    client: t.Any, token: str, origin: str
) -> None:
    """PRM-15: loopback origins (MCP Inspector) and our own origin pass."""
    session = initialize(client, token, Origin=origin)
    response = call_tool(client, token, session, "echo", {"text": "hi"}, Origin=origin)
    assert tool_result(response)["content"][0]["text"] == "hi"
    assert response.headers["Access-Control-Allow-Origin"] == origin


# --------------------------------------------------------------------------- #
# Token validation at the resource (RS), revocation, what the backend sees
# --------------------------------------------------------------------------- #


def test_session_id_without_token_is_401(client: t.Any, token: str) -> None:
    """RS-5: a live Mcp-Session-Id never authenticates on its own."""
    session = initialize(client, token)
    response = call_tool(client, None, session, "echo", {"text": "x"})  # type: ignore[arg-type]
    assert_unauthorized(response, error=None)


def test_refresh_token_revocation_closes_the_gateway_at_once(
    client: t.Any, tokens: dict[str, t.Any]
) -> None:
    """REV-4, REV-6, RS-1: revoke the refresh token → the next MCP request is 401."""
    access = tokens["access_token"]
    session = initialize(client, access)
    assert tool_result(call_tool(client, access, session, "echo", {"text": "a"}))
    revoked = client.post(
        "/oauth2/revoke",
        data={"token": tokens["refresh_token"], "client_id": tokens["client_id"]},
    )
    assert revoked.status_code == 200
    response = call_tool(client, access, session, "echo", {"text": "b"})
    assert_unauthorized(response, error="invalid_token")


def test_backend_never_sees_the_client_token(client: t.Any, token: str) -> None:
    """RS-4: the client's Authorization header is not passed through."""
    assert whoami(client, token)["authorization"] is None


def test_identity_headers_arrive_and_replace_client_values(
    client: t.Any, token: str
) -> None:
    """The backend gets X-Forwarded-User from the token; a client's copy is dropped.

    The demo IdP does not say the email is verified, so no email header is sent,
    and the client's own copy is dropped all the same.
    """
    claims = decode_access_token(client, token).claims
    assert claims["email_verified"] is False
    seen = whoami(
        client,
        token,
        **{"X-Forwarded-User": "mallory", "X-Forwarded-Email": "mallory@evil.example"},
    )
    assert seen["user"] == claims["sub"]
    assert seen["user"] != "mallory"
    assert seen["email"] is None


def test_verified_email_is_forwarded(
    client: t.Any, oauth: OAuthTestClient, idp_url: str
) -> None:
    """X-Forwarded-Email carries the address only when the IdP verified it."""
    user = "verified-user"
    claims = {"email": "verified@example.com", "email_verified": True}
    put = requests.put(f"{idp_url}/users/{user}", json=claims, timeout=5)
    assert put.status_code == 204
    _, body = oauth.tokens(user=user)
    seen = whoami(
        client, body["access_token"], **{"X-Forwarded-Email": "mallory@evil.example"}
    )
    assert seen["user"] == user
    assert seen["email"] == "verified@example.com"


def test_backend_down_is_502_json(settings: Settings, store_client: t.Any) -> None:
    """Gateway: a backend that refuses connections → 502 JSON, no traceback."""
    app = create_app(
        settings.replace(backend_url=f"http://127.0.0.1:{closed_port()}/mcp"),
        redis_client=store_client,
    )
    client = app.test_client()
    _, body = OAuthTestClient(client).tokens()
    response = client.post(
        "/mcp", json=INITIALIZE, headers=mcp_headers(body["access_token"])
    )
    assert_json_error(response, 502, "bad_gateway")


@pytest.fixture
def stalled_backend() -> Iterator[str]:
    """A TCP server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


def test_stalled_backend_is_504_json(
    settings: Settings, store_client: t.Any, stalled_backend: str
) -> None:
    """Gateway: a backend that accepts but never answers → 504 JSON (read timeout)."""
    app = create_app(
        settings.replace(backend_url=stalled_backend, backend_read_timeout_seconds=0.5),
        redis_client=store_client,
    )
    client = app.test_client()
    _, body = OAuthTestClient(client).tokens()
    started = time.monotonic()
    response = client.post(
        "/mcp", json=INITIALIZE, headers=mcp_headers(body["access_token"])
    )
    assert_json_error(response, 504, "gateway_timeout")
    assert time.monotonic() - started < 10


def test_delete_ends_the_backend_session(client: t.Any, token: str) -> None:
    """DELETE with the session id is forwarded: the backend forgets the session."""
    session = initialize(client, token)
    deleted = client.delete("/mcp", headers=mcp_headers(token, session))
    assert deleted.status_code in (200, 204), deleted.get_data(as_text=True)
    after = call_tool(client, token, session, "echo", {"text": "x"})
    assert after.status_code == 404


def test_get_opens_the_sse_stream(client: t.Any, token: str) -> None:
    """GET with the session id is forwarded as the server's SSE stream."""
    session = initialize(client, token)
    headers = {**mcp_headers(token, session), "Accept": "text/event-stream"}
    response = client.get("/mcp", headers=headers, buffered=False)
    try:
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
    finally:
        response.close()


def test_progress_arrives_as_sse_events(client: t.Any, token: str) -> None:
    """`count` streams its progress notifications, then the result, as SSE."""
    session = initialize(client, token)
    response = client.post(
        "/mcp",
        json={
            "jsonrpc": "2.0",
            "id": 9,
            "method": "tools/call",
            "params": {
                "name": "count",
                "arguments": {"to": 3, "delay_seconds": 0.01},
                "_meta": {"progressToken": "p1"},
            },
        },
        headers=mcp_headers(token, session),
    )
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    received = messages(response)
    progress = [m for m in received if m.get("method") == "notifications/progress"]
    assert [p["params"]["progress"] for p in progress] == [1, 2, 3]
    assert received[-1]["result"]["content"][0]["text"] == "counted to 3"


# --------------------------------------------------------------------------- #
# CORS for browser clients (CORS-1..5) and page hardening
# --------------------------------------------------------------------------- #


def _preflight(client: t.Any, path: str, method: str = "POST") -> t.Any:
    return client.options(
        path,
        headers={
            "Origin": INSPECTOR_ORIGIN,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type, "
            "mcp-protocol-version, mcp-session-id, last-event-id",
        },
    )


def _allowed_headers(response: t.Any) -> set[str]:
    value = response.headers.get("Access-Control-Allow-Headers", "")
    return {h.strip().lower() for h in value.split(",") if h.strip()}


def _exposed_headers(response: t.Any) -> set[str]:
    value = response.headers.get("Access-Control-Expose-Headers", "")
    return {h.strip().lower() for h in value.split(",") if h.strip()}


def _assert_no_credentials(response: t.Any) -> None:
    """CORS-2, CORS-5: never `Allow-Credentials` (and so never with `*`)."""
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
    ],
)
def test_discovery_preflight_and_acao(client: t.Any, path: str) -> None:
    """CORS-1: metadata preflights allow MCP-Protocol-Version; GET carries ACAO."""
    preflight = _preflight(client, path, "GET")
    assert 200 <= preflight.status_code < 300
    assert preflight.headers.get("Access-Control-Allow-Origin")
    assert "mcp-protocol-version" in _allowed_headers(preflight)
    _assert_no_credentials(preflight)
    response = client.get(path, headers={"Origin": INSPECTOR_ORIGIN})
    assert response.status_code == 200
    assert response.headers.get("Access-Control-Allow-Origin")
    _assert_no_credentials(response)


@pytest.mark.parametrize(
    "path", ["/oauth2/register", "/oauth2/token", "/oauth2/revoke"]
)
def test_register_token_revoke_allow_cors_without_credentials(
    client: t.Any, path: str
) -> None:
    """CORS-2: preflight and response carry ACAO, never Allow-Credentials."""
    preflight = _preflight(client, path)
    assert 200 <= preflight.status_code < 300
    assert preflight.headers.get("Access-Control-Allow-Origin")
    _assert_no_credentials(preflight)
    response = client.post(path, data={}, headers={"Origin": INSPECTOR_ORIGIN})
    assert response.headers.get("Access-Control-Allow-Origin")
    _assert_no_credentials(response)


def test_front_channel_endpoints_send_no_cors(
    oauth: OAuthTestClient, client: t.Any
) -> None:
    """CORS-3: authorize, consent and callback never send ACAO."""
    client_id = oauth.register()["client_id"]
    flow, _ = oauth.authorize(client_id)
    responses = [
        client.get(
            "/oauth2/authorize",
            query_string=oauth.authorize_params(client_id, flow),
            headers={"Origin": INSPECTOR_ORIGIN},
        ),
        client.post(
            "/oauth2/consent",
            data={**flow.consent_form, "action": "approve"},
            headers={"Origin": INSPECTOR_ORIGIN},
        ),
        client.get(
            "/oauth2/callback?code=x&state=y", headers={"Origin": INSPECTOR_ORIGIN}
        ),
    ]
    for path in ("/oauth2/authorize", "/oauth2/consent", "/oauth2/callback"):
        responses.append(_preflight(client, path))
    for response in responses:
        assert "Access-Control-Allow-Origin" not in response.headers, response.status


def test_mcp_preflight_allows_the_mcp_headers(client: t.Any) -> None:
    """CORS-4: the MCP path preflight accepts the MCP request headers."""
    response = _preflight(client, "/mcp")
    assert 200 <= response.status_code < 300
    assert response.headers["Access-Control-Allow-Origin"] == INSPECTOR_ORIGIN
    assert {
        "authorization",
        "content-type",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
    } <= _allowed_headers(response)
    assert "DELETE" in response.headers["Access-Control-Allow-Methods"]
    _assert_no_credentials(response)


def test_mcp_401_exposes_challenge_and_session_headers(client: t.Any) -> None:
    """CORS-4: a 401 to an allowed origin exposes WWW-Authenticate, Mcp-Session-Id."""
    response = client.post(
        "/mcp", json=INITIALIZE, headers={**mcp_headers(), "Origin": INSPECTOR_ORIGIN}
    )
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == INSPECTOR_ORIGIN
    assert {"www-authenticate", "mcp-session-id"} <= _exposed_headers(response)
    assert "Origin" in response.headers.get("Vary", "")
    _assert_no_credentials(response)


def test_mcp_success_exposes_the_session_header(client: t.Any, token: str) -> None:
    """CORS-4: a successful initialize exposes Mcp-Session-Id to the page."""
    response = client.post(
        "/mcp",
        json=INITIALIZE,
        headers={**mcp_headers(token), "Origin": INSPECTOR_ORIGIN},
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == INSPECTOR_ORIGIN
    assert "mcp-session-id" in _exposed_headers(response)
    _assert_no_credentials(response)
    response.close()  # the relay and its stream slot, before the app goes


def test_mcp_cors_is_consistent_with_the_origin_check(client: t.Any) -> None:
    """CORS-5: a foreign origin gets neither ACAO nor a preflight pass on /mcp."""
    preflight = client.options(
        "/mcp",
        headers={"Origin": EVIL_ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 403
    assert "Access-Control-Allow-Origin" not in preflight.headers
    response = client.post(
        "/mcp", json=INITIALIZE, headers={**mcp_headers(), "Origin": EVIL_ORIGIN}
    )
    assert "Access-Control-Allow-Origin" not in response.headers


def test_mcp_never_answers_wildcard_origin(client: t.Any, token: str) -> None:
    """CORS-5: the MCP path echoes the allowed origin, never `*`."""
    for response in (
        _preflight(client, "/mcp"),
        client.post(
            "/mcp",
            json=INITIALIZE,
            headers={**mcp_headers(token), "Origin": INSPECTOR_ORIGIN},
        ),
    ):
        assert response.headers["Access-Control-Allow-Origin"] != "*"
        response.close()  # the relay and its stream slot, before the app goes


def test_consent_page_is_never_framable(oauth: OAuthTestClient) -> None:
    """SEC: the consent page forbids framing (clickjacking)."""
    client_id = oauth.register()["client_id"]
    _, page = oauth.authorize(client_id)
    assert page.status_code == 200
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


# --------------------------------------------------------------------------- #
# Forward-auth (nginx auth_request, Traefik, Caddy)
# --------------------------------------------------------------------------- #


def test_forward_auth_accepts_a_good_token(client: t.Any, token: str) -> None:
    """Forward-auth: 200 with the identity headers for a valid token."""
    claims = decode_access_token(client, token).claims
    response = client.get(
        "/oauth2/forward-auth", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.headers["X-Forwarded-User"] == claims["sub"]
    assert response.headers["X-Forwarded-Client-Id"] == claims["client_id"]
    assert response.headers["X-Forwarded-Scope"] == claims["scope"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("authorization", [None, "Bearer garbage"])
def test_forward_auth_refuses_with_the_gateway_challenge(
    client: t.Any, authorization: str | None
) -> None:
    """Forward-auth: 401 with the same WWW-Authenticate as the MCP path."""
    headers = {"Authorization": authorization} if authorization else {}
    forward = client.get("/oauth2/forward-auth", headers=headers)
    gateway = client.post("/mcp", json=INITIALIZE, headers={**mcp_headers(), **headers})
    assert forward.status_code == gateway.status_code == 401
    assert forward.headers["WWW-Authenticate"] == gateway.headers["WWW-Authenticate"]
    assert "X-Forwarded-User" not in forward.headers


# --------------------------------------------------------------------------- #
# What travels to the backend and back, on a backend that reports its request
# --------------------------------------------------------------------------- #


class _HeaderEcho(http.server.BaseHTTPRequestHandler):
    """Answers JSON with the request headers it got, gzipped when offered gzip."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "a=1; Path=/")
        self.send_header("Set-Cookie", "b=2; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: t.Any) -> None:  # noqa: A002
        return


@pytest.fixture
def echo_client(settings: Settings, store_client: t.Any) -> Iterator[t.Any]:
    """A gateway app in front of the header-echo backend."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HeaderEcho)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/mcp"
        app = create_app(settings.replace(backend_url=url), redis_client=store_client)
        yield app.test_client()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_backend_gets_no_content_coding_the_client_did_not_offer(
    echo_client: t.Any,
) -> None:
    """A client that offers no Accept-Encoding gets an unencoded body: the gateway
    adds no encodings of its own (the body is relayed byte for byte)."""
    _, body = OAuthTestClient(echo_client).tokens()
    response = echo_client.post(
        "/mcp", json=INITIALIZE, headers=mcp_headers(body["access_token"])
    )
    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    seen = response.get_json()
    assert "gzip" not in seen.get("accept-encoding", "")


def test_backend_gets_the_client_accept_encoding_unchanged(echo_client: t.Any) -> None:
    """A client that offers gzip gets the backend's gzip body with its header."""
    _, body = OAuthTestClient(echo_client).tokens()
    response = echo_client.post(
        "/mcp",
        json=INITIALIZE,
        headers={**mcp_headers(body["access_token"]), "Accept-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    seen = json.loads(gzip.decompress(response.get_data()))
    assert seen["accept-encoding"] == "gzip"
    assert "authorization" not in seen
    assert "cookie" not in seen


def test_client_cannot_forge_any_forwarded_identity(echo_client: t.Any) -> None:
    """Every identity or origin header the backend sees comes from the gateway."""
    _, body = OAuthTestClient(echo_client).tokens()
    forged = {
        "X-Forwarded-User": "mallory",
        "X-Forwarded-Scope": "mcp admin",
        "X-Forwarded-Client-Id": "trusted-client",
        "X-Forwarded-Host": "evil.example",
        "Forwarded": "for=1.2.3.4;host=evil.example",
        "X-Real-Ip": "1.2.3.4",
    }
    response = echo_client.post(
        "/mcp", json=INITIALIZE, headers={**mcp_headers(body["access_token"]), **forged}
    )
    seen = response.get_json()
    claims = decode_access_token(echo_client, body["access_token"]).claims
    assert seen["x-forwarded-user"] == claims["sub"]
    assert seen["x-forwarded-scope"] == claims["scope"]
    assert seen["x-forwarded-client-id"] == claims["client_id"]
    for name in ("x-forwarded-host", "forwarded", "x-real-ip"):
        assert name not in seen


def test_repeated_backend_headers_stay_separate(echo_client: t.Any) -> None:
    """Two Set-Cookie headers from the backend are not folded into one."""
    _, body = OAuthTestClient(echo_client).tokens()
    response = echo_client.post(
        "/mcp", json=INITIALIZE, headers=mcp_headers(body["access_token"])
    )
    assert response.headers.getlist("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]


def test_unparseable_origin_is_refused_not_a_500(client: t.Any, token: str) -> None:
    """PRM-15: an Origin that is not a URL is not an allowed origin."""
    response = client.post(
        "/mcp", json=INITIALIZE, headers={**mcp_headers(token), "Origin": "http://[::1"}
    )
    assert response.status_code == 403


@pytest.fixture
def renamed_identity_client(settings: Settings, store_client: t.Any) -> Iterator[t.Any]:
    """The header-echo gateway with identity headers renamed outside X-Forwarded-*."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HeaderEcho)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/mcp"
        renamed = settings.replace(
            backend_url=url,
            forward_user_header="X-User",
            forward_email_header="X-User-Email",
        )
        yield create_app(renamed, redis_client=store_client).test_client()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_configured_identity_headers_are_stripped_whatever_their_names(
    renamed_identity_client: t.Any,
) -> None:
    """A client's own copy of a renamed identity header never reaches the backend,
    even when this user has no verified email to fill it with."""
    client = renamed_identity_client
    # A subject that is no address: the demo IdP marks it unverified.
    _, body = OAuthTestClient(client).tokens(user="mallory")
    forged = {"X-User": "mallory", "X-User-Email": "ceo@example.com"}
    response = client.post(
        "/mcp", json=INITIALIZE, headers={**mcp_headers(body["access_token"]), **forged}
    )
    seen = response.get_json()
    claims = decode_access_token(client, body["access_token"]).claims
    assert seen["x-user"] == claims["sub"]
    assert claims["email_verified"] is False
    assert "x-user-email" not in seen


@pytest.mark.parametrize(
    "name",
    [
        "Remote-User",
        "X-Remote-User",
        "X-Remote-Groups",
        "X-Auth-Request-User",
        "X-Auth-Request-Email",
        "X-Auth-Request-Groups",
    ],
)
def test_identity_headers_other_backends_trust_are_stripped(
    echo_client: t.Any, name: str
) -> None:
    _, body = OAuthTestClient(echo_client).tokens()
    response = echo_client.post(
        "/mcp",
        json=INITIALIZE,
        headers={**mcp_headers(body["access_token"]), name: "admin"},
    )
    assert response.status_code == 200
    assert name.lower() not in response.get_json()
