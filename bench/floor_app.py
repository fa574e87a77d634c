"""The floor: each proxy endpoint reduced to what cannot be avoided.

Served exactly like the proxy (`gunicorn -c config/gunicorn.conf.py ...
bench.floor_app:app`). Every endpoint parses its input, makes at most ONE
Redis round trip, and signs one ES256 JWT where the real endpoint signs one.
No validation beyond what the response needs, no templates, no error pages:
it is the cheapest version of each endpoint with Flask, redis-py and
`cryptography`, and each proxy endpoint's throughput is reported against it.

`/mcp` is the gateway's floor: the bearer token checked as forward-auth
checks it (one Redis round trip), then the request relayed to the MCP
backend and its answer read whole and returned.

Environment: REDIS_URL, PUBLIC_URL, FLOOR_SIGNING_KEY (PEM, P-256; shared by
all workers), FLOOR_UPSTREAM_AUTHORIZE (where the consent answer redirects),
FLOOR_MCP_BACKEND (the MCP endpoint `/mcp` relays to; optional).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import secrets
import time
from urllib.parse import urlencode
from urllib.parse import urlsplit

import redis
import urllib3
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from flask import Flask
from flask import Response
from flask import request

PREFIX = "floor:"
TTL_SECONDS = 3600
ISSUER = os.environ.get("PUBLIC_URL", "http://127.0.0.1")
UPSTREAM = os.environ.get("FLOOR_UPSTREAM_AUTHORIZE", "http://127.0.0.1/authorize")
KEY = serialization.load_pem_private_key(
    os.environ["FLOOR_SIGNING_KEY"].encode(), password=None
)
assert isinstance(KEY, ec.EllipticCurvePrivateKey)
PUBLIC = KEY.public_key()
KID = "floor"

r = redis.Redis.from_url(
    os.environ["REDIS_URL"], decode_responses=True, socket_timeout=2.0
)
# One round trip: spend the code (or refresh token), store the next token.
SPEND = r.register_script(
    "local v = redis.call('GETDEL', KEYS[1]) "
    "if not v then return false end "
    "redis.call('SET', KEYS[2], v, 'EX', ARGV[1]) return v"
)

app = Flask(__name__)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_HEADER = _b64(json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": KID}).encode())
_numbers = PUBLIC.public_numbers()
_JWKS = json.dumps(
    {
        "keys": [
            {
                "kty": "EC",
                "crv": "P-256",
                "x": _b64(_numbers.x.to_bytes(32, "big")),
                "y": _b64(_numbers.y.to_bytes(32, "big")),
                "kid": KID,
                "alg": "ES256",
                "use": "sig",
            }
        ]
    }
).encode()
_METADATA = json.dumps(
    {
        "issuer": ISSUER,
        "authorization_endpoint": ISSUER + "/oauth2/authorize",
        "token_endpoint": ISSUER + "/oauth2/token",
        "registration_endpoint": ISSUER + "/oauth2/register",
        "jwks_uri": ISSUER + "/.well-known/jwks.json",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
    }
).encode()


def sign_jwt(claims: dict[str, object]) -> str:
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{_HEADER}.{payload}"
    der = KEY.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r_value, s_value = decode_dss_signature(der)
    signature = r_value.to_bytes(32, "big") + s_value.to_bytes(32, "big")
    return f"{signing_input}.{_b64(signature)}"


def verify_jwt(token: str) -> dict[str, object] | None:
    try:
        header, payload, signature = token.split(".")
        raw = _unb64(signature)
        der = encode_dss_signature(
            int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        )
        PUBLIC.verify(der, f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
        claims = json.loads(_unb64(payload))
    except Exception:
        return None
    return claims if isinstance(claims, dict) else None


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="application/json")


@app.get("/.well-known/oauth-authorization-server")
def metadata() -> Response:
    return _json(_METADATA)


@app.get("/.well-known/jwks.json")
def jwks() -> Response:
    return _json(_JWKS)


@app.post("/oauth2/register")
def register() -> Response:
    body = json.loads(request.get_data())
    client_id = "mcp_" + secrets.token_urlsafe(18)
    record = {"client_id": client_id, "redirect_uris": body["redirect_uris"]}
    r.set(PREFIX + "client:" + client_id, json.dumps(record), nx=True, ex=TTL_SECONDS)
    return _json(json.dumps(record).encode(), 201)


@app.get("/oauth2/authorize")
def authorize() -> Response:
    args = request.args
    raw = r.get(PREFIX + "client:" + args["client_id"])
    if raw is None or args["redirect_uri"] not in json.loads(raw)["redirect_uris"]:
        return _json(b'{"error":"invalid_request"}', 400)
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in args.items()
    )
    page = (
        "<!doctype html><title>Consent</title><form method=post "
        f'action="/oauth2/consent">{hidden}<button name=action value=approve>'
        "Approve</button></form>"
    )
    response = Response(page, mimetype="text/html")
    response.set_cookie("floor_browser", secrets.token_urlsafe(32), httponly=True)
    return response


@app.post("/oauth2/consent")
def consent() -> Response:
    form = request.form
    state = secrets.token_urlsafe(32)
    r.set(PREFIX + "txn:" + state, json.dumps(form.to_dict()), nx=True, ex=600)
    location = UPSTREAM + "?" + urlencode({"state": state, "response_type": "code"})
    return Response(status=303, headers={"Location": location})


@app.post("/oauth2/token")
def token() -> Response:
    form = request.form
    refresh = secrets.token_urlsafe(32)
    if form["grant_type"] == "authorization_code":
        raw = SPEND(
            keys=[PREFIX + "code:" + form["code"], PREFIX + "rt:" + refresh],
            args=[TTL_SECONDS],
        )
        if raw is None:
            return _json(b'{"error":"invalid_grant"}', 400)
        record = json.loads(raw)
        digest = hashlib.sha256(form["code_verifier"].encode()).digest()
        if _b64(digest) != record["code_challenge"]:
            return _json(b'{"error":"invalid_grant"}', 400)
    else:
        raw = SPEND(
            keys=[PREFIX + "rt:" + form["refresh_token"], PREFIX + "rt:" + refresh],
            args=[TTL_SECONDS],
        )
        if raw is None:
            return _json(b'{"error":"invalid_grant"}', 400)
        record = json.loads(raw)
    now = int(time.time())
    access = sign_jwt(
        {
            "iss": ISSUER,
            "sub": record["sub"],
            "aud": record["resource"],
            "client_id": record["client_id"],
            "scope": record["scope"],
            "iat": now,
            "exp": now + 3600,
            "jti": secrets.token_urlsafe(16),
            "sid": record["grant"],
        }
    )
    body = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": refresh,
        "scope": record["scope"],
    }
    return _json(json.dumps(body).encode())


def _caller() -> dict[str, object] | None:
    """The bearer token's claims if it verifies and its grant lives (one trip)."""
    header = request.headers.get("Authorization", "")
    claims = verify_jwt(header[7:]) if header.startswith("Bearer ") else None
    if claims is None or not r.exists(PREFIX + "grant:" + str(claims.get("sid"))):
        return None
    return claims


@app.get("/oauth2/forward-auth")
def forward_auth() -> Response:
    claims = _caller()
    if claims is None:
        return Response(status=401)
    return Response(status=200, headers={"X-Forwarded-User": str(claims["sub"])})


_BACKEND = os.environ.get("FLOOR_MCP_BACKEND")
_BACKEND_POOL = urllib3.connection_from_url(_BACKEND, maxsize=16) if _BACKEND else None
#: What a Streamable HTTP exchange needs relayed, each way.
_TO_BACKEND = ("accept", "content-type", "mcp-protocol-version", "mcp-session-id")
_TO_CLIENT = ("content-type", "mcp-session-id")


@app.route("/mcp", methods=["GET", "POST", "DELETE"])
def mcp() -> Response:
    claims = _caller()
    if claims is None:
        return Response(status=401)
    if _BACKEND is None or _BACKEND_POOL is None:
        return Response(status=404)
    headers = {k: v for k, v in request.headers.items() if k.lower() in _TO_BACKEND}
    headers["X-Forwarded-User"] = str(claims["sub"])
    answer = _BACKEND_POOL.urlopen(
        request.method,
        urlsplit(_BACKEND).path or "/",
        body=request.get_data() or None,
        headers=headers,
        redirect=False,
        retries=False,
    )
    back = [(k, v) for k, v in answer.headers.items() if k.lower() in _TO_CLIENT]
    return Response(answer.data, status=answer.status, headers=back)
