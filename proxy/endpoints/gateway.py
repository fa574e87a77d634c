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

import urllib3
from flask import Blueprint
from flask import Response
from flask import request

from .. import state
from ..cors import ALLOWED_HEADERS
from ..cors import EXPOSED_HEADERS
from ..errors import BadGatewayError
from ..errors import GatewayTimeoutError
from ..gatekeeper import identity_headers
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
# Never from the client: its token (no passthrough), its cookies, and any
# header a backend might read as identity or origin (we set those ourselves).
_NEVER_FORWARDED = frozenset(
    {"authorization", "cookie", "origin", "forwarded", "x-real-ip"}
)


def create_blueprint(settings: Settings) -> Blueprint:
    """The gateway's blueprint, mounted at the configured MCP_PATH."""
    bp = Blueprint("gateway", __name__)
    bp.add_url_rule(settings.mcp_path, "forward", forward, methods=METHODS)
    bp.after_request(_cors)
    return bp


def backend_pool(settings: Settings, pool_size: int = 64) -> urllib3.PoolManager:
    """urllib3 directly: requests' layers cost ~15% of a relayed call (profiled)."""
    return urllib3.PoolManager(
        num_pools=4,
        maxsize=pool_size,
        block=False,
        retries=False,
        timeout=urllib3.Timeout(
            connect=settings.backend_connect_timeout_seconds,
            read=settings.backend_read_timeout_seconds,
        ),
    )


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

    identity = identity_headers(settings, claims)
    headers = {
        name: value
        for name, value in request.headers.items()
        if _forwardable(name.lower(), identity)
    }
    headers.update(identity)
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
        relayed = app.backend.urlopen(
            request.method,
            url,
            body=body or None,
            headers=headers,
            preload_content=False,
            decode_content=False,
            redirect=False,
        )
    except urllib3.exceptions.NewConnectionError as exc:
        # Refused or unresolvable (a subclass of ConnectTimeoutError, for history).
        log.warning("MCP backend unreachable: %s", exc.__class__.__name__)
        raise BadGatewayError("The MCP server is unreachable.") from exc
    except urllib3.exceptions.TimeoutError as exc:
        log.warning("MCP backend timed out: %s", exc.__class__.__name__)
        raise GatewayTimeoutError("The MCP server did not answer in time.") from exc
    except urllib3.exceptions.HTTPError as exc:
        log.warning("MCP backend unreachable: %s", exc.__class__.__name__)
        raise BadGatewayError("The MCP server is unreachable.") from exc

    # Header by header, so repeated ones (Set-Cookie) stay separate.
    response_headers = [
        (name, value)
        for name, value in relayed.headers.items()
        if name.lower() not in _HOP_BY_HOP or name.lower() == "content-length"
    ]
    relay = _Relay(relayed)
    response = Response(
        relay.chunks(),
        status=relayed.status,
        headers=response_headers,
        direct_passthrough=True,
    )
    # Also when the body is never iterated (the client left at once).
    response.call_on_close(relay.finish)
    return response


def _forwardable(name: str, identity: dict[str, str]) -> bool:
    if name in _HOP_BY_HOP or name in _NEVER_FORWARDED:
        return False
    return not name.startswith("x-forwarded-") and name not in {
        k.lower() for k in identity
    }


class _Relay:
    """The backend's body, chunk by chunk as it arrives (SSE is never buffered)."""

    def __init__(self, relayed: urllib3.BaseHTTPResponse) -> None:
        self._relayed = relayed
        self._complete = False
        self._finished = False

    def chunks(self) -> Iterator[bytes]:
        try:
            while True:
                try:
                    chunk = self._relayed.read1(CHUNK_BYTES, decode_content=False)
                except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                    log.info("MCP backend stream ended: %s", exc.__class__.__name__)
                    return
                if not chunk:
                    self._complete = True
                    return
                yield chunk
        finally:
            self.finish()

    def finish(self) -> None:
        """Return a fully read connection to the pool; drop a half-read one."""
        if self._finished:
            return
        self._finished = True
        if self._complete:
            self._relayed.release_conn()
        else:
            self._relayed.close()


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
