"""GET/POST/DELETE MCP_PATH: the gateway in front of MCP servers (Streamable HTTP).

Every request needs one of our access tokens (see
``proxy.resource_server.verification``). What is relayed, and how, is
``proxy.resource_server.relay``: the client's token is never forwarded, the
backend gets the verified identity in headers, and responses (JSON or
`text/event-stream`) stream back chunk by chunk as they arrive.

With MCP_SERVERS each server's path is its own URL rule: its route (backend
pool, tool rules) is bound to the rule, and only a token whose `aud` is that
server's audience passes (decision J57).
"""

from __future__ import annotations

import functools
import json
import logging
import time
import typing as t

import urllib3
from flask import Blueprint
from flask import Response
from flask import request

from proxy.app_state import state
from proxy.oauth import mcp_messages
from proxy.observability import metrics
from proxy.resource_server import mcp_cors
from proxy.resource_server import relay
from proxy.resource_server import session_binding
from proxy.resource_server import tool_access
from proxy.resource_server.backend_identity import backend_identity
from proxy.resource_server.identity_headers import identity_header_names
from proxy.resource_server.jsonrpc_errors import ContentEncodingError
from proxy.resource_server.jsonrpc_errors import JsonRpcError
from proxy.resource_server.jsonrpc_errors import UnsupportedBodyError
from proxy.resource_server.jsonrpc_errors import error_response
from proxy.resource_server.routing_headers import check_routing_headers
from proxy.resource_server.stream_slots import Slot
from proxy.resource_server.stream_slots import StreamSlots
from proxy.resource_server.verification import verify_request
from proxy.web import client_gone

if t.TYPE_CHECKING:
    from proxy.app_state import AppState
    from proxy.oauth.access_tokens import AccessClaims
    from proxy.resource_server.routes import McpRoute
    from proxy.store.limits import Rider

log = logging.getLogger(__name__)

METHODS = ["GET", "POST", "DELETE", "OPTIONS"]


def create_blueprint(routes: t.Sequence[McpRoute]) -> Blueprint:
    """The gateway's blueprint: one rule per server with a backend, each
    mounted at its path (MCP_PATH, or each MCP_SERVERS `path`)."""
    bp = Blueprint("gateway", __name__)
    for index, route in enumerate(r for r in routes if r.backend is not None):
        bp.add_url_rule(
            route.server.path,
            "forward" if index == 0 else f"forward_{index}",
            functools.partial(forward, route),
            methods=METHODS,
        )
    bp.after_request(_cors)
    bp.register_error_handler(JsonRpcError, _jsonrpc_error)
    return bp


def forward(route: McpRoute) -> Response:
    app = state()
    origin = request.headers.get("Origin")
    # MCP Streamable HTTP: servers MUST validate Origin (DNS rebinding; PRM-15).
    if origin and not app.settings.origin_allowed(origin):
        return _json({"error": "forbidden_origin"}, 403)
    if request.method == "OPTIONS":
        return _preflight()
    scoped = _session_scope(app, route)
    presented = scoped(request.headers.get(session_binding.SESSION_HEADER))
    lookup = None
    if presented is not None:
        ttl = app.settings.mcp_session_ttl_seconds
        lookup = session_binding.SessionLookup(app.store.sessions, presented, ttl)
    # Taken before the backend sees the request: refusing a tool call's answer
    # after the tool ran would be worse than refusing the call. Both ride in
    # the grant check's round trip.
    streams = t.cast(StreamSlots, app.streams)
    wanted = streams.request() if _may_stream() else None
    riders: list[Rider] = [r for r in (lookup, wanted) if r is not None]
    try:
        claims = verify_request(app, request, route.server, riders=riders)
        owner = session_binding.owner_of(claims)
        if lookup is not None:
            lookup.check(owner)
        _refuse_unread_bodies()
        request.max_content_length = app.settings.max_mcp_body_bytes
        body = request.get_data(cache=False)
        parsed = mcp_messages.Body(body)
        check_routing_headers(request.headers.items(), parsed)
        # Last: once the slot is ours, the block below gives it back.
        slot = wanted.slot() if wanted is not None else None
    except BaseException:
        if wanted is not None:
            wanted.abandon()
        raise
    relayed = None
    try:
        headers = _backend_headers(app, route, claims)
        # Per-tool scopes and the tool policy: refused before the backend sees it.
        access = tool_access.check_request(
            app, route, claims, request.method, parsed, headers
        )
        relayed = relay.open_backend(
            t.cast(urllib3.HTTPConnectionPool, route.backend),
            request.method,
            _backend_target(route),
            body=body,
            headers=headers,
        )
        session_binding.after_response(
            app.store.sessions,
            method=request.method,
            presented=presented,
            answered=scoped(relayed.headers.get(session_binding.SESSION_HEADER)),
            status=relayed.status,
            owner=owner,
            ttl_seconds=app.settings.mcp_session_ttl_seconds,
        )
    except BaseException:
        if relayed is not None:
            relayed.close()
        if slot is not None:
            slot.release()
        raise
    if app.verified_tokens.first_call(claims.grant_id):
        app.events.emit(
            "gateway.first_call", client_id=claims.client_id, status=relayed.status
        )
    if slot is not None and not _is_stream(relayed):
        slot.release()  # a JSON answer, an error, 202: not a stream
        slot = None
    return _streamed(relayed, slot, access)


def _session_scope(
    app: AppState, route: McpRoute
) -> t.Callable[[str | None], str | None]:
    """How a session id is bound: as is with one server; with several,
    prefixed with the server's path, so two backends that hand out the same
    id never share (or refuse) each other's binding."""
    if len(app.routes) == 1:
        return lambda session_id: session_id
    path = route.server.path
    return lambda session_id: None if session_id is None else f"{path}\n{session_id}"


def _refuse_unread_bodies() -> None:
    """The rules read the bytes the backend receives, as UTF-8 JSON: a body
    the backend would inflate first (``express.json()`` does) or decode in
    another charset (it takes any ``utf-*``) is refused, not relayed."""
    coding = request.headers.get("Content-Encoding", "").strip().lower()
    if coding not in ("", "identity"):
        raise ContentEncodingError(
            "Request bodies are accepted uncompressed only.",
            reason="content_encoding",
        )
    if mcp_messages.names_another_charset(request.headers.get("Content-Type", "")):
        raise UnsupportedBodyError(
            "Request bodies are accepted in UTF-8 only.", reason="charset"
        )


def _may_stream() -> bool:
    """GET opens the server's stream; a POST may be answered with one (MCP
    Streamable HTTP) when the client accepts text/event-stream."""
    if request.method == "GET":
        return True
    return request.method == "POST" and "text/event-stream" in request.headers.get(
        "Accept", ""
    )


def _is_stream(relayed: urllib3.BaseHTTPResponse) -> bool:
    content_type = relayed.headers.get("Content-Type", "")
    return content_type.split(";")[0].strip().lower() == "text/event-stream"


def _backend_headers(
    app: AppState, route: McpRoute, claims: AccessClaims
) -> dict[str, str]:
    """What the backend is told: the verified identity, never the client's token."""
    settings = app.settings
    headers = relay.backend_request_headers(
        request.headers.items(),
        backend_identity(app, route.server, claims, int(time.time())),
        request.remote_addr,
        own=identity_header_names(settings),
    )
    if settings.forward_upstream_token:
        upstream = app.store.load_upstream_access_token(claims.grant_id, app.keyring)
        if upstream:
            headers["Authorization"] = f"Bearer {upstream}"
    return headers


def _backend_target(route: McpRoute) -> str:
    """The backend URL's path and query, with this request's query string."""
    target = route.backend_target
    if request.query_string:
        target += ("&" if "?" in target else "?") + request.query_string.decode(
            "latin-1"
        )
    return target


def _streamed(
    relayed: urllib3.BaseHTTPResponse,
    slot: Slot | None,
    access: tool_access.ToolAccess = tool_access.NOTHING,
) -> Response:
    """The backend's response, relayed chunk by chunk as it arrives.

    A stream's head goes to the client at once, not with its first event; it
    gives its slot back however it ends, and a client that hangs up ends it
    without waiting for the next event (watched from 50 ms into the stream:
    proxy/web/client_gone.py). A backend silent for
    STREAM_IDLE_TIMEOUT_SECONDS ends it too.
    """
    if slot is None:
        stream = relay.Relay(relayed)
    else:
        settings = state().settings
        relay.end_when_idle(
            relayed,
            min(
                settings.limits.stream_idle_timeout_seconds,
                settings.backend_read_timeout_seconds,
            ),
        )
        stop_watching: list[t.Callable[[], None]] = []

        def finished() -> None:
            for stop in stop_watching:
                stop()
            slot.release()
            metrics.GATEWAY_OPEN_STREAMS.dec()

        metrics.GATEWAY_OPEN_STREAMS.inc()
        stream = relay.Relay(relayed, on_finish=finished, flush_head=True)
        stop_watching.append(client_gone.watch(request.environ, stream.abort))
    chunks, headers = access.response(
        stream.chunks(), relay.response_headers(relayed), relayed.status
    )
    response = Response(
        chunks, status=relayed.status, headers=headers, direct_passthrough=True
    )
    # Also when the body is never iterated (the client left at once).
    response.call_on_close(stream.finish)
    return response


def _preflight() -> Response:
    response = Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
    announced = request.headers.get("Access-Control-Request-Headers")
    response.headers["Access-Control-Allow-Headers"] = mcp_cors.allowed_headers(
        announced
    )
    response.headers["Access-Control-Max-Age"] = "86400"
    response.vary.add("Access-Control-Request-Headers")
    return response


def _jsonrpc_error(error: JsonRpcError) -> Response:
    """An MCP-level refusal, in the shape the MCP server itself would answer."""
    log.info("MCP request refused: %s", error.reason or error.code)
    return error_response(error)


def _cors(response: Response) -> Response:
    origin = request.headers.get("Origin")
    if origin and state().settings.origin_allowed(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = mcp_cors.EXPOSED_HEADERS
        response.vary.add("Origin")
    return response


def _json(body: dict[str, t.Any], status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")
