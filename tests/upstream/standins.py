"""Local stand-ins for upstream identity providers, on pytest-httpserver.

`OIDCStandIn` is a minimal OpenID Connect provider: a discovery document, a
JWKS, and a token endpoint that redeems codes for RS256 ID tokens and rotates
refresh tokens. Each provider's test module shapes it to that provider's
documented requests and answers (issuer spelling, claims, refresh rules).
`drive_login` runs the proxy's front channel up to the IdP and back.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import typing as t
import uuid
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jwk import RSAKey
from werkzeug import Request
from werkzeug import Response

if t.TYPE_CHECKING:
    from pytest_httpserver import HTTPServer

    from tests.oauth_client import Flow
    from tests.oauth_client import OAuthTestClient


def json_response(body: t.Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return user, password


@dataclass
class Code:
    claims: dict[str, t.Any]
    params: dict[str, str]
    refresh: bool = True


@dataclass
class OIDCStandIn:
    """One OIDC provider on the test HTTP server, rooted at ``path``."""

    server: HTTPServer
    path: str = ""
    client_id: str = "proxy-client"
    client_secret: str = "proxy-secret"
    issuer: str = ""
    #: The `iss` ID tokens carry (default: the issuer).
    token_issuer: str = ""
    discovery_extra: dict[str, t.Any] = field(default_factory=dict)
    auth_methods: tuple[str, ...] = ("client_secret_basic", "client_secret_post")
    rotate_refresh: bool = True
    keys: list[RSAKey] = field(default_factory=list)
    signing_kid: str = "k1"
    codes: dict[str, Code] = field(default_factory=dict)
    refresh_tokens: dict[str, dict[str, t.Any]] = field(default_factory=dict)
    #: The login's claims by upstream access token (for userinfo).
    access_tokens: dict[str, dict[str, t.Any]] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    jwks_requests: int = 0
    #: Forced answer of the token endpoint for refresh: (status, body).
    refresh_answer: tuple[int, dict[str, t.Any]] | None = None
    #: Forced answer of the token endpoint for every request: (status, body).
    token_answer: tuple[int, dict[str, t.Any]] | None = None
    #: Whether a refresh answer carries a new ID token (OIDC Core §12.2), made
    #: from the user's claims as they are now (`users`, else the login's).
    id_token_on_refresh: bool = False
    #: The user's claims now, by sub: what userinfo and refreshed ID tokens say.
    users: dict[str, dict[str, t.Any]] = field(default_factory=dict)
    userinfo_requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base = self.server.url_for(self.path).rstrip("/")
        self.issuer = self.issuer or self.base
        self.token_issuer = self.token_issuer or self.issuer
        if not self.keys:
            self.keys = [new_key("k1")]
        document = {
            "issuer": self.issuer,
            "authorization_endpoint": self.base + "/authorize",
            "token_endpoint": self.base + "/token",
            "userinfo_endpoint": self.base + "/userinfo",
            "jwks_uri": self.base + "/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": list(self.auth_methods),
            "id_token_signing_alg_values_supported": ["RS256"],
        }
        document.update(self.discovery_extra)
        self.discovery = document
        srv = self.server
        srv.expect_request(
            self.path + "/.well-known/openid-configuration"
        ).respond_with_handler(lambda _: json_response(self.discovery))
        srv.expect_request(self.path + "/jwks").respond_with_handler(self._jwks)
        srv.expect_request(self.path + "/token", method="POST").respond_with_handler(
            self._token
        )
        srv.expect_request(self.path + "/userinfo").respond_with_handler(self._userinfo)

    # -- what the user does at the IdP ---------------------------------------
    def login(
        self, authorize_url: str, claims: dict[str, t.Any], *, refresh: bool = True
    ) -> tuple[str, dict[str, str]]:
        """The user logs in: a code for the authorize request in the URL."""
        params = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        assert params["client_id"] == self.client_id
        assert params["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = Code(dict(claims), params, refresh)
        return code, params

    def id_token(self, claims: dict[str, t.Any], nonce: str | None = None) -> str:
        now = int(time.time())
        body = {
            "iss": self.token_issuer,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        if nonce:
            body["nonce"] = nonce
        key = next(k for k in self.keys if k.kid == self.signing_kid)
        return jwt.encode({"alg": "RS256", "kid": key.kid}, body, key)

    # -- endpoints -----------------------------------------------------------
    def _jwks(self, _: Request) -> Response:
        self.jwks_requests += 1
        return json_response(KeySet(self.keys).as_dict(private=False))

    def _authenticated(self, request: Request) -> bool:
        pair = basic_credentials(request)
        if pair is None:
            pair = (
                request.form.get("client_id", ""),
                request.form.get("client_secret", ""),
            )
        return pair == (self.client_id, self.client_secret)

    def _token(self, request: Request) -> Response:
        form = dict(request.form)
        self.token_requests.append(form)
        if self.token_answer is not None:
            return json_response(self.token_answer[1], self.token_answer[0])
        if not self._authenticated(request):
            return json_response({"error": "invalid_client"}, 401)
        if form.get("grant_type") == "refresh_token":
            if self.refresh_answer is not None:
                return json_response(self.refresh_answer[1], self.refresh_answer[0])
            record = self.refresh_tokens.get(form.get("refresh_token", ""))
            if record is None:
                return json_response({"error": "invalid_grant"}, 400)
            body = {"access_token": secrets.token_urlsafe(), "expires_in": 3600}
            self.access_tokens[body["access_token"]] = record
            if self.id_token_on_refresh:
                body["id_token"] = self.id_token(self.now(record))
            if self.rotate_refresh:
                del self.refresh_tokens[form["refresh_token"]]
                body["refresh_token"] = self._new_refresh(record)
            return json_response(body)
        code = self.codes.pop(form.get("code", ""), None)
        if code is None:
            return json_response({"error": "invalid_grant"}, 400)
        if form.get("redirect_uri") != code.params["redirect_uri"]:
            return json_response({"error": "invalid_grant"}, 400)
        body = {
            "access_token": secrets.token_urlsafe(),
            "token_type": "Bearer",
            "expires_in": 3600,
            "id_token": self.id_token(code.claims, code.params.get("nonce")),
        }
        self.access_tokens[body["access_token"]] = code.claims
        if code.refresh:
            body["refresh_token"] = self._new_refresh(code.claims)
        return json_response(body)

    def now(self, login_claims: dict[str, t.Any]) -> dict[str, t.Any]:
        """The user's claims now: `users[sub]` if the test changed them."""
        return self.users.get(login_claims.get("sub", ""), login_claims)

    def _userinfo(self, request: Request) -> Response:
        header = request.headers.get("Authorization", "")
        self.userinfo_requests.append(header)
        record = self.access_tokens.get(header.removeprefix("Bearer "))
        if record is None:
            return json_response({"error": "invalid_token"}, 401)
        claims = self.now(record)
        return json_response({k: v for k, v in claims.items() if k != "nonce"})

    def _new_refresh(self, claims: dict[str, t.Any]) -> str:
        token = secrets.token_urlsafe()
        self.refresh_tokens[token] = claims
        return token


def new_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid}, private=True)


def new_guid() -> str:
    return str(uuid.uuid4())


# -- the proxy's side -----------------------------------------------------------
def start_login(oauth: OAuthTestClient) -> Flow:
    """Register, authorize, approve consent: the flow now points at the IdP."""
    client_id = oauth.register()["client_id"]
    flow, response = oauth.authorize(client_id)
    if not flow.upstream_url:
        assert response.status_code == 200, response.get_data(as_text=True)
        assert oauth.consent(flow).status_code == 303
    assert flow.upstream_url
    return flow


def upstream_params(flow: Flow) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(flow.upstream_url).query).items()}


def come_back(oauth: OAuthTestClient, flow: Flow, **params: str) -> dict[str, str]:
    """The IdP redirects the browser to our callback; what reaches the client."""
    query = {"state": upstream_params(flow)["state"], **params}
    response = oauth.callback(flow, "/oauth2/callback?" + urlencode(query))
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith(flow.redirect_uri)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def access_claims(token: str) -> dict[str, t.Any]:
    """The payload of one of our access tokens (signature checked elsewhere)."""
    payload = token.split(".")[1]
    return t.cast(
        dict[str, t.Any],
        json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))),
    )
