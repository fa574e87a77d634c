"""Forward-auth's tool check: the tool a subrequest's `Mcp-Name` header names.

A forward-auth subrequest (nginx `auth_request`, Traefik ForwardAuth, Caddy
`forward_auth`) carries the original request's headers but never its body.
MCP 2026-07-28 clients copy the method and the tool into `Mcp-Method` and
`Mcp-Name`, and the MCP server must refuse a request whose headers disagree
with its body; so here, unlike at the gateway, the headers are all there is
to decide on, and the backend keeps them honest (decision J65).

A request without the headers (every 2025-11-25 client) names no tool: only
its token is checked. Tool rules are therefore a boundary in this mode only
when the backend refuses requests without them; gateway mode reads the body
and holds for every client (docs/security.md, threat 36).
"""

from __future__ import annotations

import typing as t

from proxy.oauth.mcp_messages import TOOLS_CALL
from proxy.resource_server import tool_access
from proxy.resource_server.jsonrpc_errors import HeaderMismatchError
from proxy.resource_server.jsonrpc_errors import UnnamedToolError
from proxy.resource_server.routing_headers import decode_header_value
from proxy.resource_server.routing_headers import read_routing_headers

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from proxy.app_state import AppState
    from proxy.oauth.access_tokens import AccessClaims
    from proxy.resource_server.routes import McpRoute

#: The `where` of forward-auth's `gateway.tool_denied` events.
WHERE = "forward_auth"


def check_forwarded_call(
    app: AppState,
    route: McpRoute,
    claims: AccessClaims,
    headers: Iterable[tuple[str, str]],
) -> None:
    """Apply the route's tool policy and per-tool scopes to the tool the
    headers name, as the gateway would to the body's; nothing without rules
    or without `Mcp-Method: tools/call`."""
    if not tool_access.has_rules(route):
        return  # nothing to decide: the token alone, as before
    try:
        sent = read_routing_headers(headers)
    except HeaderMismatchError as exc:  # a header twice: which tool is meant?
        raise UnnamedToolError(exc.message, reason=exc.reason) from exc
    if sent.method != TOOLS_CALL:
        return  # not a tool call, or a client that sends no headers
    tool = _named_tool(sent.name)
    if not tool:
        raise UnnamedToolError(
            "A tools/call request must name its tool in a well-formed "
            "Mcp-Name header here.",
            reason="missing_name" if sent.name is None else "malformed_name",
        )
    tool_access.check_calls(app, route, claims, [(None, tool)], where=WHERE)


def _named_tool(header: str | None) -> str | None:
    """The tool `Mcp-Name` names; None when it names none for certain.

    A plain value with a comma is two headers a WSGI server joined (MCP tool
    names are letters, digits, `_`, `-`, `.`): which one the backend reads
    is unknown, so neither is checked. A name that needs a comma travels in
    the `=?base64?…?=` form, decoded by the gateway's own rule.
    """
    if header is None or "," in header:
        return None
    return decode_header_value(header)
