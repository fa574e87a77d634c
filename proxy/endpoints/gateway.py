"""GET/POST/DELETE MCP_PATH: the gateway in front of an MCP server (Streamable HTTP).

Every request needs one of our access tokens (see ``proxy.gatekeeper``). The
client's token is never forwarded (MCP forbids token passthrough); the backend
gets the verified identity in headers instead. Responses, JSON or
`text/event-stream`, are streamed back chunk by chunk as they arrive.
"""

from __future__ import annotations

import json
import logging
import typing as t
from collections.abc import Iterator

import requests
from flask import Blueprint
from flask import Response
from flask import request
from requests.adapters import HTTPAdapter

from .. import state
from ..cors import ALLOWED_HEADERS
from ..cors import EXPOSED_HEADERS
from ..errors import BadGatewayError
from ..errors import GatewayTimeoutError
from ..gatekeeper import verify_request

if t.TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger(__name__)

METHODS = ["GET", "POST", "DELETE", "OPTIONS"]
CHUNK_BYTES = 65536
# RFC 9110 §7.6.1 hop-by-hop headers, plus what the gateway owns itself.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_NEVER_FORWARDED = frozenset({"authorization", "cookie", "origin", "x-forwarded-for"})


def create_blueprint(settings: Settings) -> Blueprint:
    """The gateway's blueprint, mounted at the configured MCP_PATH."""
    bp = Blueprint("gateway", __name__)
    bp.add_url_rule(settings.mcp_path, "forward", forward, methods=METHODS)
    bp.after_request(_cors)
    return bp


def backend_session(pool_size: int = 64) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = False
    # No defaults of our own: requests would add `Accept-Encoding: gzip, deflate`,
    # and the backend's compressed bytes would reach a client that never offered
    # it (the body is relayed raw). Only the client's own headers go through.
    session.headers.clear()
    return session


def forward() -> Response:
    app = state()
    settings = app.settings
    origin = request.headers.get("Origin")
    # MCP Streamable HTTP: servers MUST validate Origin (DNS rebinding; PRM-15).
    if origin and not settings.origin_allowed(origin):
        return _json({"error": "forbidden_origin"}, 403)
    if request.method == "OPTIONS":
        return _preflight()
    claims = verify_request(app, request)

    # Identity headers come only from us: a client's own copies are dropped.
    dropped = _HOP_BY_HOP | _NEVER_FORWARDED | _identity_headers(settings)
    headers = {
        name: value
        for name, value in request.headers.items()
        if name.lower() not in dropped
    }
    headers[settings.forward_user_header] = claims.sub
    email = claims.extra.get("email")
    # Only an address the IdP verified is an identity (a user can type any
    # unverified address into some IdPs).
    if isinstance(email, str) and claims.extra.get("email_verified") is True:
        headers[settings.forward_email_header] = email
    if request.remote_addr:
        headers["X-Forwarded-For"] = request.remote_addr
    if settings.forward_upstream_token:
        upstream = app.store.load_upstream_access_token(claims.grant_id, app.keyring)
        if upstream:
            headers["Authorization"] = f"Bearer {upstream}"

    request.max_content_length = settings.max_mcp_body_bytes
    body = request.get_data(cache=False)
    url = t.cast(str, settings.backend_url)
    if request.query_string:
        url += ("&" if "?" in url else "?") + request.query_string.decode("latin-1")
    try:
        upstream_response = app.backend.request(
            request.method,
            url,
            data=body,
            headers=headers,
            stream=True,
            allow_redirects=False,
            timeout=(
                settings.backend_connect_timeout_seconds,
                settings.backend_read_timeout_seconds,
            ),
        )
    except requests.Timeout as exc:
        log.warning("MCP backend timed out: %s", exc.__class__.__name__)
        raise GatewayTimeoutError("The MCP server did not answer in time.") from exc
    except requests.RequestException as exc:
        log.warning("MCP backend unreachable: %s", exc.__class__.__name__)
        raise BadGatewayError("The MCP server is unreachable.") from exc

    response_headers = [
        (name, value)
        for name, value in upstream_response.headers.items()
        if name.lower() not in _HOP_BY_HOP or name.lower() == "content-length"
    ]
    return Response(
        _stream(upstream_response),
        status=upstream_response.status_code,
        headers=response_headers,
        direct_passthrough=True,
    )


def _identity_headers(settings: Settings) -> frozenset[str]:
    names = (settings.forward_user_header, settings.forward_email_header)
    return frozenset(name.lower() for name in names)


def _stream(upstream_response: requests.Response) -> Iterator[bytes]:
    """Yield the backend's bytes as they arrive; close it when the client leaves."""
    raw = upstream_response.raw
    try:
        while True:
            try:
                chunk = raw.read1(CHUNK_BYTES)
            except (requests.RequestException, OSError, ValueError) as exc:
                log.info("MCP backend stream ended: %s", exc.__class__.__name__)
                return
            except Exception as exc:  # urllib3 errors (ProtocolError, ReadTimeout)
                log.info("MCP backend stream ended: %s", exc.__class__.__name__)
                return
            if not chunk:
                return
            yield chunk
    finally:
        upstream_response.close()


def _preflight() -> Response:
    response = Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
    response.headers["Access-Control-Max-Age"] = "86400"
    return response


def _cors(response: Response) -> Response:
    origin = request.headers.get("Origin")
    if origin and state().settings.origin_allowed(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        response.vary.add("Origin")
    return response


def _json(body: dict[str, t.Any], status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")
