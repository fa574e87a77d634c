"""GET /.well-known/oauth-protected-resource[/<path>]: RFC 9728 §3."""

from __future__ import annotations

import typing as t
from urllib.parse import urlsplit

from flask import Blueprint
from flask import Response
from flask import jsonify

from proxy.app_state import state
from proxy.oauth.scopes import OFFLINE_ACCESS
from proxy.web.cors import allow_cors

bp = Blueprint("resource", __name__)
allow_cors(bp, "GET")


def resource_metadata() -> dict[str, t.Any]:
    settings = state().settings
    document: dict[str, t.Any] = {
        # PRM-3: the canonical MCP URL, exactly as clients use it.
        "resource": settings.resource,
        # PRM-4: our issuer first (Claude uses only the first entry).
        "authorization_servers": [settings.issuer],
        "bearer_methods_supported": ["header"],
    }
    offered = [s for s in settings.offered_scopes if s != OFFLINE_ACCESS]
    if offered:
        # PRM-5: the scopes this MCP server defines (MCP_SCOPES and the tool
        # scopes), never offline_access (SEP-2207: it belongs to the AS).
        document["scopes_supported"] = offered
    return document


@bp.get("/.well-known/oauth-protected-resource")
@bp.get("/.well-known/oauth-protected-resource/<path:resource_path>")
def show_resource_metadata(resource_path: str = "") -> Response:
    own = urlsplit(state().settings.resource).path.strip("/")
    if resource_path and resource_path.strip("/") != own:
        response = jsonify({"error": "not_found"})
        response.status_code = 404
        return response
    response = jsonify(resource_metadata())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
