"""GET /.well-known/oauth-protected-resource[/<path>]: RFC 9728 §3.

Each MCP server has its own document at its path-inserted URL (RFC 9728
§3.1): `/.well-known/oauth-protected-resource/github/mcp` for the resource
`https://proxy/github/mcp`, naming its own audience and scopes. The bare URL
answers for a server whose audience has no path, else for the first (the
only one without MCP_SERVERS).
"""

from __future__ import annotations

import typing as t
from urllib.parse import urlsplit

from flask import Blueprint
from flask import Response
from flask import jsonify

from proxy.app_state import state
from proxy.oauth.scopes import OFFLINE_ACCESS
from proxy.web.cors import allow_cors

if t.TYPE_CHECKING:
    from proxy.config.mcp_servers import McpServer

bp = Blueprint("resource", __name__)
allow_cors(bp, "GET")


def resource_metadata(server: McpServer | None = None) -> dict[str, t.Any]:
    settings = state().settings
    server = server or settings.default_server
    document: dict[str, t.Any] = {
        # PRM-3: the canonical MCP URL, exactly as clients use it.
        "resource": server.audience,
        # PRM-4: our issuer first (Claude uses only the first entry).
        "authorization_servers": [settings.issuer],
        "bearer_methods_supported": ["header"],
    }
    offered = [s for s in server.offered_scopes if s != OFFLINE_ACCESS]
    if offered:
        # PRM-5: the scopes this MCP server defines (its scopes and its tool
        # scopes), never offline_access (SEP-2207: it belongs to the AS).
        document["scopes_supported"] = offered
    return document


@bp.get("/.well-known/oauth-protected-resource")
@bp.get("/.well-known/oauth-protected-resource/<path:resource_path>")
def show_resource_metadata(resource_path: str = "") -> Response:
    settings = state().settings
    wanted = resource_path.strip("/")
    server = next(
        (s for s in settings.servers if urlsplit(s.audience).path.strip("/") == wanted),
        # The bare URL: a server whose audience has no path, else the first.
        None if wanted else settings.default_server,
    )
    if server is None:
        response = jsonify({"error": "not_found"})
        response.status_code = 404
        return response
    response = jsonify(resource_metadata(server))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
