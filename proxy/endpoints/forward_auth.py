"""GET /oauth2/forward-auth: token check for nginx auth_request, Traefik, Caddy.

200 with the identity headers for a good token; 401 (or 403) with the same
`WWW-Authenticate` challenge as the gateway otherwise. The original request's
headers arrive on this subrequest, so the Authorization header is checked as is.

With MCP_SERVERS the server is the one whose path prefixes `X-Forwarded-Uri`
(nginx sets it from `$request_uri`; Traefik and Caddy send it themselves),
else the first; the token must be for that server (J57).

When that server has tool rules and the request says `Mcp-Method: tools/call`,
the tool its `Mcp-Name` names meets the gateway's policy and per-tool scopes:
403 `insufficient_scope` with the step-up challenge, or 403 with a JSON-RPC
error for a policy refusal (J65). A tool refusal is never a 400: nginx's
auth_request turns any status but 2xx, 401 and 403 into a 500.
"""

from __future__ import annotations

import logging

from flask import Blueprint
from flask import Response
from flask import request

from proxy.app_state import state
from proxy.oauth.errors import NO_STORE
from proxy.resource_server.forwarded_call import check_forwarded_call
from proxy.resource_server.identity_headers import identity_headers
from proxy.resource_server.jsonrpc_errors import JsonRpcError
from proxy.resource_server.jsonrpc_errors import error_response
from proxy.resource_server.routes import route_for_forwarded_uri
from proxy.resource_server.verification import verify_request

log = logging.getLogger(__name__)

bp = Blueprint("forward_auth", __name__)


@bp.route("/oauth2/forward-auth", methods=["GET", "POST", "HEAD"])
def check_token() -> Response:
    app = state()
    route = route_for_forwarded_uri(app.routes, request.headers.get("X-Forwarded-Uri"))
    claims = verify_request(app, request, route.server)
    check_forwarded_call(app, route, claims, request.headers.items())
    response = Response(status=200)
    response.headers.update(identity_headers(app.settings, claims))
    response.headers.update(NO_STORE)
    return response


@bp.errorhandler(JsonRpcError)
def _jsonrpc_error(error: JsonRpcError) -> Response:
    """A tool refusal: Traefik and Caddy relay this body; nginx its own page."""
    log.info("forward-auth refused a tool call: %s", error.reason or error.code)
    return error_response(error)
