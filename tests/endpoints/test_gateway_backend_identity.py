"""MCP_BACKEND_IDENTITY: the identity the backend receives, plain or signed.

The backend is a header echo on a loopback port: it answers with the request
headers it got, so each test sees exactly what crossed the gateway. A backend
verifies the identity JWT as the README tells backend authors to: against the
proxy's served JWKS, with `typ`, `iss`, `aud` and `exp` checked.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import typing as t
from collections.abc import Callable
from collections.abc import Iterator

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from proxy import create_app
from proxy.config.backend_identity import BackendIdentity
from proxy.config.settings import Settings
from proxy.keys.rotation import KeyAdmin
from proxy.oauth.identity_tokens import IDENTITY_TOKEN_TYPE
from tests.oauth_client import OAuthTestClient

from ._helpers import ISSUER
from ._helpers import assert_json_error
from ._helpers import decode_access_token

ACCEPT = "application/json, text/event-stream"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "identity-test", "version": "1.0"},
    },
}


class _HeaderEcho(http.server.BaseHTTPRequestHandler):
    """Answers JSON with the (lower-cased) request headers it got."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: t.Any) -> None:  # noqa: A002
        return


@pytest.fixture
def backend_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HeaderEcho)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/mcp"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


Gateway = Callable[..., t.Any]


@pytest.fixture
def gateway(settings: Settings, store_client: t.Any, backend_url: str) -> Gateway:
    """A test client for a gateway app in front of the echo, with ``changes``."""

    def build(**changes: t.Any) -> t.Any:
        app = create_app(
            settings.replace(backend_url=backend_url, **changes),
            redis_client=store_client,
        )
        return app.test_client()

    return build


def seen_by_backend(client: t.Any, token: str, **headers: str) -> dict[str, str]:
    response = client.post(
        "/mcp",
        json=INITIALIZE,
        headers={"Accept": ACCEPT, "Authorization": f"Bearer {token}", **headers},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return t.cast(dict[str, str], response.get_json())


def verify_as_backend(client: t.Any, token: str, audience: str) -> dict[str, t.Any]:
    """What a backend does with X-MCP-Identity (README, "Verifying the identity")."""
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").get_json())
    decoded = jwt.decode(token, keys, algorithms=["ES256"])
    assert decoded.header["typ"] == IDENTITY_TOKEN_TYPE
    JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": audience},
        exp={"essential": True},
        sub={"essential": True},
    ).validate(decoded.claims)
    return dict(decoded.claims)


def test_headers_mode_is_the_default_and_sends_no_jwt(gateway: Gateway) -> None:
    client = gateway()
    _, body = OAuthTestClient(client).tokens()
    seen = seen_by_backend(client, body["access_token"])
    claims = decode_access_token(client, body["access_token"]).claims
    assert seen["x-forwarded-user"] == claims["sub"]
    assert "x-mcp-identity" not in seen


@pytest.mark.parametrize("mode", list(BackendIdentity))
def test_a_client_cannot_send_its_own_identity_jwt(gateway: Gateway, mode: str) -> None:
    """Whatever the mode, a client's X-MCP-Identity never reaches the backend."""
    client = gateway(backend_identity=BackendIdentity(mode))
    _, body = OAuthTestClient(client).tokens()
    seen = seen_by_backend(client, body["access_token"], **{"X-MCP-Identity": "forged"})
    assert seen.get("x-mcp-identity") != "forged"


def test_jwt_mode_sends_a_verifiable_identity_and_no_plain_headers(
    gateway: Gateway, backend_url: str, idp_url: str
) -> None:
    client = gateway(backend_identity=BackendIdentity.JWT)
    claims = {"email": "verified@example.com", "email_verified": True}
    put = requests.put(f"{idp_url}/users/verified-user", json=claims, timeout=5)
    assert put.status_code == 204
    _, body = OAuthTestClient(client).tokens(user="verified-user")
    before = int(time.time())
    seen = seen_by_backend(client, body["access_token"])
    access = decode_access_token(client, body["access_token"]).claims
    identity = verify_as_backend(client, seen["x-mcp-identity"], backend_url)
    assert identity["sub"] == access["sub"]
    assert identity["client_id"] == access["client_id"]
    assert identity["scope"] == access["scope"]
    assert identity["email"] == "verified@example.com"
    assert identity["exp"] - identity["iat"] == 60
    assert identity["iat"] >= before
    assert identity["jti"]
    # Nothing that would let it pass for an access token, nor the grant's id.
    assert "sid" not in identity
    for name in ("x-forwarded-user", "x-forwarded-email", "x-forwarded-scope"):
        assert name not in seen
    assert "authorization" not in seen


def test_jwt_carries_no_email_the_idp_did_not_verify(gateway: Gateway) -> None:
    client = gateway(backend_identity=BackendIdentity.JWT)
    # A subject that is no address: the demo IdP marks it unverified.
    _, body = OAuthTestClient(client).tokens(user="mallory")
    seen = seen_by_backend(client, body["access_token"])
    claims = jwt.decode(
        seen["x-mcp-identity"],
        KeySet.import_key_set(client.get("/.well-known/jwks.json").get_json()),
    ).claims
    assert claims["sub"] == "mallory"
    assert "email" not in claims


def test_both_mode_sends_headers_and_jwt(gateway: Gateway, backend_url: str) -> None:
    client = gateway(backend_identity=BackendIdentity.BOTH)
    _, body = OAuthTestClient(client).tokens()
    seen = seen_by_backend(client, body["access_token"])
    identity = verify_as_backend(client, seen["x-mcp-identity"], backend_url)
    assert seen["x-forwarded-user"] == identity["sub"]


def test_each_request_gets_its_own_jwt(gateway: Gateway) -> None:
    """A fresh jti per request: a backend may refuse a replayed identity (J63)."""
    client = gateway(backend_identity=BackendIdentity.JWT)
    _, body = OAuthTestClient(client).tokens()
    first = seen_by_backend(client, body["access_token"])["x-mcp-identity"]
    second = seen_by_backend(client, body["access_token"])["x-mcp-identity"]
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").get_json())
    jtis = {jwt.decode(tok, keys).claims["jti"] for tok in (first, second)}
    assert len(jtis) == 2


def test_configured_audience_replaces_the_backend_url(gateway: Gateway) -> None:
    client = gateway(
        backend_identity=BackendIdentity.JWT, backend_audience="urn:example:backend"
    )
    _, body = OAuthTestClient(client).tokens()
    seen = seen_by_backend(client, body["access_token"])
    identity = verify_as_backend(client, seen["x-mcp-identity"], "urn:example:backend")
    assert identity["aud"] == "urn:example:backend"


@pytest.mark.parametrize("path", ["/mcp", "/oauth2/forward-auth"])
def test_an_identity_jwt_is_never_an_access_token(gateway: Gateway, path: str) -> None:
    """RS: the gateway refuses its own identity JWT as a bearer token (typ, aud)."""
    client = gateway(backend_identity=BackendIdentity.JWT)
    _, body = OAuthTestClient(client).tokens()
    identity = seen_by_backend(client, body["access_token"])["x-mcp-identity"]
    response = client.post(
        path,
        json=INITIALIZE,
        headers={"Accept": ACCEPT, "Authorization": f"Bearer {identity}"},
    )
    assert_json_error(response, 401, "invalid_token")


def test_identity_jwt_is_inactive_at_introspection(gateway: Gateway) -> None:
    client = gateway(backend_identity=BackendIdentity.JWT)
    client_id, body = OAuthTestClient(client).tokens()
    identity = seen_by_backend(client, body["access_token"])["x-mcp-identity"]
    response = client.post(
        "/oauth2/introspect", data={"token": identity, "client_id": client_id}
    )
    if response.status_code == 200:
        assert response.get_json() == {"active": False}
    else:  # a public client may not introspect at all: still not accepted
        assert response.status_code in (400, 401)


def test_after_a_rotation_the_jwt_is_signed_with_the_new_key(
    gateway: Gateway, backend_url: str
) -> None:
    """J62: signed with the key that signs now, which the JWKS already serves."""
    client = gateway(backend_identity=BackendIdentity.JWT)
    _, body = OAuthTestClient(client).tokens()
    state = client.application.extensions["proxy"]
    rotation = KeyAdmin(state.store, state.keyring).rotate(
        overlap=0, max_token_lifetime=3600
    )
    time.sleep(1.05)  # the signer is re-read at most once a second, as the JWKS
    seen = seen_by_backend(client, body["access_token"])
    token = seen["x-mcp-identity"]
    verify_as_backend(client, token, backend_url)
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").get_json())
    assert jwt.decode(token, keys).header["kid"] == rotation.kid


def test_the_readme_verification_with_pyjwt_accepts_it(
    gateway: Gateway, backend_url: str
) -> None:
    """README "Verifying the caller": PyJWT, as a backend author would use it."""
    pyjwt = pytest.importorskip("jwt", reason="PyJWT comes with the mcp package")
    client = gateway(backend_identity=BackendIdentity.JWT)
    _, body = OAuthTestClient(client).tokens()
    token = seen_by_backend(client, body["access_token"])["x-mcp-identity"]
    jwks = pyjwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").get_json())
    header = pyjwt.get_unverified_header(token)
    assert header["typ"] == "mcp-identity+jwt"
    key = next(k for k in jwks.keys if k.key_id == header["kid"])
    claims = pyjwt.decode(
        token,
        key.key,
        algorithms=["ES256"],
        issuer=ISSUER,
        audience=backend_url,
        leeway=30,
        options={"require": ["iss", "aud", "exp", "iat", "sub", "jti"]},
    )
    assert (
        claims["sub"] == decode_access_token(client, body["access_token"]).claims["sub"]
    )
    # The same library, pointed at another audience, refuses it.
    with pytest.raises(pyjwt.InvalidAudienceError):
        pyjwt.decode(token, key.key, algorithms=["ES256"], audience=ISSUER + "/mcp")
