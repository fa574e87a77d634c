"""A fast, stateless OIDC provider: the benchmark's default upstream.

oidc-provider-mock (`--upstream mock`) spends several milliseconds of CPU per
code exchange (Authlib grant machinery, RS256 signing) on the same cores the
proxy needs, so it, not the proxy, set the pace of complete flows. This one
does the protocol's minimum: codes and refresh tokens are HMAC-signed blobs
(no server state, so any worker can answer), ID tokens are ES256 JWTs carrying
the nonce, PKCE S256 is checked, and the client secret is checked (Basic or
post). Login is the same as the mock's: POST the authorize URL with `sub=<user>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from urllib.parse import urlencode

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from flask import Flask
from flask import Response
from flask import request

SECRET = bytes.fromhex(os.environ.get("FAST_IDP_SECRET", secrets.token_hex(32)))
KEY = ec.generate_private_key(ec.SECP256R1())
KID = "fast-idp"
CLIENT_SECRETS = {"proxy-client": "proxy-secret"}

app = Flask(__name__)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _seal(payload: dict[str, object]) -> str:
    data = _b64(json.dumps(payload, separators=(",", ":")).encode())
    mac = hmac.new(SECRET, data.encode(), hashlib.sha256).digest()
    return f"{data}.{_b64(mac)}"


def _unseal(token: str) -> dict[str, object] | None:
    data, _, mac = token.partition(".")
    expected = _b64(hmac.new(SECRET, data.encode(), hashlib.sha256).digest())
    if not mac or not hmac.compare_digest(expected, mac):
        return None
    payload = json.loads(_unb64(data))
    if not isinstance(payload, dict) or payload.get("exp", 0) < time.time():
        return None
    return payload


_HEADER = _b64(json.dumps({"alg": "ES256", "typ": "JWT", "kid": KID}).encode())


def _jwt(claims: dict[str, object]) -> str:
    signing_input = f"{_HEADER}.{_b64(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(
        KEY.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    )
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _issuer() -> str:
    return request.host_url.rstrip("/")


def _json(body: object, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


@app.get("/.well-known/openid-configuration")
def discovery() -> Response:
    iss = _issuer()
    return _json(
        {
            "issuer": iss,
            "authorization_endpoint": iss + "/oauth2/authorize",
            "token_endpoint": iss + "/oauth2/token",
            "jwks_uri": iss + "/jwks",
            "userinfo_endpoint": iss + "/userinfo",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "scopes_supported": ["openid", "email", "profile", "offline_access"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
        }
    )


@app.get("/jwks")
def jwks() -> Response:
    n = KEY.public_key().public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64(n.x.to_bytes(32, "big")),
        "y": _b64(n.y.to_bytes(32, "big")),
        "kid": KID,
        "alg": "ES256",
        "use": "sig",
    }
    return _json({"keys": [jwk]})


@app.route("/oauth2/authorize", methods=["GET", "POST"])
def authorize() -> Response:
    args = request.args
    sub = request.form.get("sub")
    if request.method == "GET" or not sub:
        return Response(
            "<form method=post><input name=sub></form>", mimetype="text/html"
        )
    code = _seal(
        {
            "sub": sub,
            "client_id": args["client_id"],
            "redirect_uri": args["redirect_uri"],
            "nonce": args.get("nonce"),
            "challenge": args.get("code_challenge"),
            "scope": args.get("scope", "openid"),
            "exp": int(time.time()) + 60,
        }
    )
    query = {"code": code, "state": args.get("state", ""), "iss": _issuer()}
    return Response(
        status=302, headers={"Location": f"{args['redirect_uri']}?{urlencode(query)}"}
    )


def _client() -> str | None:
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        client_id, secret = auth.username, auth.password
    else:
        client_id, secret = (
            request.form.get("client_id"),
            request.form.get("client_secret"),
        )
    if client_id is None or CLIENT_SECRETS.get(client_id) != secret:
        return None
    return client_id


@app.post("/oauth2/token")
def token() -> Response:
    client_id = _client()
    if client_id is None:
        return _json({"error": "invalid_client"}, 401)
    form = request.form
    grant = _unseal(form.get("code") or form.get("refresh_token") or "")
    if grant is None or grant["client_id"] != client_id:
        return _json({"error": "invalid_grant"}, 400)
    now = int(time.time())
    body: dict[str, object] = {
        "access_token": secrets.token_urlsafe(32),
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": grant["scope"],
        "refresh_token": _seal({**grant, "exp": now + 86400, "nonce": None}),
    }
    if form.get("grant_type") == "authorization_code":
        verifier = form.get("code_verifier", "")
        if _b64(hashlib.sha256(verifier.encode()).digest()) != grant["challenge"]:
            return _json({"error": "invalid_grant"}, 400)
        claims = {
            "iss": _issuer(),
            "sub": grant["sub"],
            "aud": client_id,
            "iat": now,
            "exp": now + 3600,
            "email": f"{grant['sub']}@example.com",
        }
        if grant.get("nonce"):
            claims["nonce"] = grant["nonce"]
        body["id_token"] = _jwt(claims)
    return _json(body)


@app.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    return _json({"sub": "unknown"})
