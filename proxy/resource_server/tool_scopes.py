"""Per-tool scopes at the gateway: the 403 `insufficient_scope` that starts step-up.

MCP 2026-07-28 / SEP-835: a valid token without a tool's scope gets 403 with
`WWW-Authenticate: Bearer error="insufficient_scope", scope="…",
resource_metadata="…"` (PRM-11); `scope` holds what the token already has and
what the call needs (SEP-2350), so the client's re-authorization asks for the
union and keeps every earlier permission.
"""

from __future__ import annotations

import typing as t

from proxy.oauth import scopes
from proxy.oauth.errors import InsufficientScopeError
from proxy.oauth.tool_scopes import step_up_scope
from proxy.resource_server.bearer import challenge

if t.TYPE_CHECKING:
    from proxy.oauth.access_tokens import AccessClaims
    from proxy.oauth.tool_scopes import ToolScopes


def check_tool_scopes(
    tool_scopes: ToolScopes,
    claims: AccessClaims,
    tools: t.Iterable[str],
    *,
    resource_metadata: str,
) -> None:
    """Raise InsufficientScopeError (with its challenge) unless the token covers
    every scope these tools need, through the scope hierarchy (SCOPE-3)."""
    granted = scopes.parse(claims.scope)
    missing: dict[str, None] = {}
    for tool in tools:
        missing.update(dict.fromkeys(tool_scopes.missing(granted, tool)))
    if not missing:
        return
    error = InsufficientScopeError(
        "The token lacks a scope this tool needs.", reason="insufficient_scope"
    )
    error.challenge = challenge(
        resource_metadata,
        scope=step_up_scope(granted, missing),
        error="insufficient_scope",
    )
    raise error
