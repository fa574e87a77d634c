"""The MCP servers this app fronts, as the gateway and forward-auth use them.

One :class:`McpRoute` per configured server (``Settings.servers``): its
settings, its own backend connection pool and its own live tool policy, so
two servers never share a connection, a rule or a re-read file. Which route
a request is for comes from its path (the gateway's URL rule, forward-auth's
``X-Forwarded-Uri``); what a token is for, from its `aud` (decision J57).
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

from proxy.resource_server.relay import backend_pool
from proxy.resource_server.tool_policy import LivePolicy

if t.TYPE_CHECKING:
    import urllib3

    from proxy.config.mcp_servers import McpServer
    from proxy.config.settings import Settings
    from proxy.observability.events import Events


@dataclass(slots=True)
class McpRoute:
    """One protected MCP server at run time."""

    server: McpServer
    #: Pooled connections to its backend (None: no backend, forward-auth only).
    backend: urllib3.HTTPConnectionPool | None = None
    #: Its tool policy, as in force now (None: no tool policy).
    tool_policy: LivePolicy | None = None
    #: The backend URL's path and query: what is asked of ``backend``.
    backend_target: str = "/"


def build_routes(settings: Settings, events: Events) -> tuple[McpRoute, ...]:
    """A route per server, each with its own pool and policy (built once per app)."""
    routes = []
    for server in settings.servers:
        policy = None
        if server.tool_policy_source and server.tool_policy:
            # A policy file is re-read when it changes, per server.
            policy = LivePolicy(
                server.tool_policy_source, server.tool_policy, events=events
            )
        pool, target = None, "/"
        if server.backend_url:
            pool = backend_pool(settings, server.backend_url)
            target = _path_and_query(server.backend_url)
        routes.append(McpRoute(server, pool, policy, target))
    return tuple(routes)


def _path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def route_for_path(routes: t.Sequence[McpRoute], path: str) -> McpRoute | None:
    """The route serving `path` (its own path or below; the longest wins)."""
    found = [r for r in routes if r.server.serves(path)]
    return max(found, key=lambda r: len(r.server.path)) if found else None


def route_for_forwarded_uri(
    routes: t.Sequence[McpRoute], forwarded_uri: str | None
) -> McpRoute:
    """Forward-auth's route: the one the original request's path names, else
    the first (the single server of a deployment without MCP_SERVERS)."""
    if forwarded_uri:
        try:
            path = urlsplit(forwarded_uri).path
        except ValueError:
            path = ""
        found = route_for_path(routes, path)
        if found is not None:
            return found
    return routes[0]
