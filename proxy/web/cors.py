"""CORS for browser-based MCP clients (MCP Inspector): CORS-1, CORS-2, CORS-3.

Only discovery, register, token and revoke get CORS, and never with
credentials; authorize, consent and callback never answer cross-origin reads.
"""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import request

ALLOWED_HEADERS = (
    "Authorization, Content-Type, MCP-Protocol-Version, Mcp-Session-Id, Last-Event-ID"
)


EXPOSED_HEADERS = "WWW-Authenticate, Mcp-Session-Id, MCP-Protocol-Version"


def allow_cors(blueprint: Blueprint, methods: str) -> None:
    """Answer preflights and add `Access-Control-Allow-Origin: *` to responses."""

    @blueprint.before_request
    def _preflight() -> Response | None:
        if request.method == "OPTIONS":
            response = Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = methods + ", OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = "86400"
            return response
        return None

    @blueprint.after_request
    def _headers(response: Response) -> Response:
        if request.headers.get("Origin"):
            response.headers["Access-Control-Allow-Origin"] = "*"
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response
