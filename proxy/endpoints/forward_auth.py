"""GET /oauth2/forward-auth: token check for nginx auth_request, Traefik, Caddy.

200 with the identity headers for a good token; 401 (or 403) with the same
`WWW-Authenticate` challenge as the gateway otherwise. The original request's
headers arrive on this subrequest, so the Authorization header is checked as is.

With MCP_SERVERS the server is the one whose path prefixes `X-Forwarded-Uri`
(nginx sets it from `$request_uri`; Traefik and Caddy send it themselves),
else the first; the token must be for that server (J57).
"""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import request

from proxy.app_state import state
from proxy.oauth.errors import NO_STORE
from proxy.resource_server.identity_headers import identity_headers
from proxy.resource_server.routes import route_for_forwarded_uri
from proxy.resource_server.verification import verify_request

bp = Blueprint("forward_auth", __name__)


@bp.route("/oauth2/forward-auth", methods=["GET", "POST", "HEAD"])
def check_token() -> Response:
    app = state()
    route = route_for_forwarded_uri(app.routes, request.headers.get("X-Forwarded-Uri"))
    claims = verify_request(app, request, route.server)
    response = Response(status=200)
    response.headers.update(identity_headers(app.settings, claims))
    response.headers.update(NO_STORE)
    return response
