"""MCP_SERVERS: several MCP servers behind one proxy, each its own resource.

The variable holds a path to a `.toml` or `.json` file, or the JSON itself (a
value starting with `[` or `{`). The document is a list of servers (JSON), or
a table whose `servers` key is that list (TOML's ``[[servers]]``). Each server:

- ``path``: where the gateway serves it, e.g. ``/github/mcp`` (sub-paths too);
- ``backend``: the MCP server it relays to (http or https);
- ``audience``: its RFC 8707 resource and its tokens' `aud` (default
  ``PUBLIC_URL + path``);
- ``scopes``: what a token for it may carry (default MCP_SCOPES);
- ``tool_scopes``, ``tool_policy``: as MCP_TOOL_SCOPES and MCP_TOOL_POLICY (a
  file path, relative to this file, or the rules themselves as a table);
- ``backend_audience``: the identity JWT's `aud` (default ``backend``).

Unset, the proxy serves one server from MCP_PATH, OAUTH_AUDIENCE, MCP_SCOPES,
MCP_TOOL_SCOPES, MCP_TOOL_POLICY and MCP_BACKEND_URL, exactly as before.
Every problem is one :class:`ConfigError` naming the variable, the server and
the fix, so a bad file stops the start-up (decision J55).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from proxy.config.env import ConfigError
from proxy.config.tool_rules import RulesSource
from proxy.config.tool_rules import decode_json
from proxy.config.tool_rules import read_document
from proxy.config.tool_rules import read_policy
from proxy.config.tool_rules import read_tool_scopes
from proxy.oauth.resource_indicators import canonical_resource
from proxy.oauth.scopes import OFFLINE_ACCESS
from proxy.oauth.tool_policy import ToolPolicy
from proxy.oauth.tool_scopes import ToolScopes

VARIABLE = "MCP_SERVERS"

#: First path segments the proxy serves itself: a server there would shadow
#: (or be shadowed by) an OAuth endpoint.
RESERVED_SEGMENTS = frozenset(
    {
        "oauth2",
        ".well-known",
        "authorize",
        "token",
        "register",
        "account",
        "metrics",
        "healthz",
        "readyz",
        "static",
    }
)

#: More servers than this is a mistake in the file, not a deployment.
MAX_SERVERS = 64

_FIELDS = frozenset(
    {"path", "backend", "audience", "scopes", "tool_scopes", "tool_policy"}
    | {"backend_audience"}
)
_SEGMENT = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%-]+")
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


@dataclass(frozen=True, slots=True)
class McpServer:
    """One protected MCP server: where it is served, where it relays, its rules."""

    #: The gateway path (no trailing slash), e.g. ``/github/mcp``.
    path: str
    #: Its RFC 8707 resource: the `aud` of every token issued for it.
    audience: str
    #: What a token for it may carry (the 401 challenge asks for these).
    scopes: tuple[str, ...]
    #: The backend URL (None: forward-auth only, the legacy single server).
    backend_url: str | None = None
    #: The identity JWT's `aud` (None: backend_url).
    backend_audience: str | None = None
    tool_scopes: ToolScopes | None = None
    tool_policy_source: RulesSource | None = None
    tool_policy: ToolPolicy | None = None

    @property
    def offered_scopes(self) -> tuple[str, ...]:
        """Its scopes plus every tool scope: what may be granted for it."""
        extra = self.tool_scopes.scopes if self.tool_scopes else ()
        return tuple(dict.fromkeys([*self.scopes, *extra]))

    @property
    def metadata_path(self) -> str:
        """Its protected resource metadata, path-inserted (RFC 9728 §3.1)."""
        return "/.well-known/oauth-protected-resource" + urlsplit(self.audience).path

    def serves(self, path: str) -> bool:
        """True for its own path and the sub-paths below it."""
        return path == self.path or path.startswith(self.path + "/")


def read_mcp_servers(
    value: str, *, public_url: str, default_scopes: tuple[str, ...]
) -> tuple[McpServer, ...]:
    """The servers MCP_SERVERS describes; ConfigError on the first problem."""
    value = value.strip()
    if value.startswith(("[", "{")):
        document, base = decode_json(value.encode(), VARIABLE), os.getcwd()
    else:
        document = read_document(value, f"{VARIABLE}={value}")
        base = os.path.dirname(os.path.abspath(value))
    if isinstance(document, dict) and set(document) == {"servers"}:
        document = document["servers"]
    if not isinstance(document, list) or not document:
        raise ConfigError(
            f"{VARIABLE}: give a non-empty list of servers (JSON) or "
            "[[servers]] tables (TOML), each with 'path' and 'backend'"
        )
    if len(document) > MAX_SERVERS:
        raise ConfigError(f"{VARIABLE}: more than {MAX_SERVERS} servers")
    servers: list[McpServer] = []
    for index, entry in enumerate(document, 1):
        server = _server(entry, index, public_url, default_scopes, base)
        for other in servers:
            if other.path == server.path:
                raise ConfigError(
                    f"{VARIABLE}: server {server.path!r} is listed twice; give "
                    "each server its own 'path'"
                )
            if other.audience == server.audience:
                raise ConfigError(
                    f"{VARIABLE}: servers {other.path!r} and {server.path!r} share "
                    f"the audience {server.audience!r}; a token for one would open "
                    "the other, so give each its own 'audience'"
                )
            if _metadata_path(other) == _metadata_path(server):
                raise ConfigError(
                    f"{VARIABLE}: servers {other.path!r} and {server.path!r} would "
                    "share one protected resource metadata URL; give their "
                    "audiences different paths"
                )
        servers.append(server)
    return tuple(servers)


def _metadata_path(server: McpServer) -> str:
    return server.metadata_path.rstrip("/")


def _server(
    entry: object,
    index: int,
    public_url: str,
    default_scopes: tuple[str, ...],
    base: str,
) -> McpServer:
    if not isinstance(entry, dict):
        raise ConfigError(
            f"{VARIABLE}: server #{index} is not a table; give 'path' and 'backend'"
        )
    path = _path(entry.get("path"), index)
    where = f"{VARIABLE}: server {path!r}"
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; use " + ", ".join(sorted(_FIELDS))
        )
    backend = _url(entry.get("backend"), where, "backend", required=True)
    audience_text = entry.get("audience", public_url + path)
    audience = (
        canonical_resource(audience_text) if isinstance(audience_text, str) else None
    )
    if audience is None or audience_text != audience_text.strip():
        raise ConfigError(
            f"{where}: 'audience' must be the absolute http(s) URL clients use "
            f'for it, e.g. audience = "{public_url}{path}"'
        )
    scopes = _scopes(entry.get("scopes"), where, default_scopes)
    scopes_source = _rules(entry.get("tool_scopes"), f"{where} tool_scopes", base)
    policy_source = _rules(entry.get("tool_policy"), f"{where} tool_policy", base)
    return McpServer(
        path=path,
        audience=audience,
        scopes=scopes,
        backend_url=backend,
        backend_audience=_url(
            entry.get("backend_audience"), where, "backend_audience", required=False
        ),
        tool_scopes=read_tool_scopes(scopes_source) if scopes_source else None,
        tool_policy_source=policy_source,
        tool_policy=read_policy(policy_source) if policy_source else None,
    )


def _path(value: object, index: int) -> str:
    """A gateway path: absolute, plain segments, not one of the proxy's own."""
    shown = repr(value) if isinstance(value, str) else f"#{index}"
    fix = 'e.g. path = "/github/mcp"'
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(
            f"{VARIABLE}: server {shown}: 'path' must start with '/', {fix}"
        )
    if "?" in value or "#" in value:
        raise ConfigError(
            f"{VARIABLE}: server {shown}: 'path' must not have a query or "
            f"fragment, {fix}"
        )
    path = value.rstrip("/")
    segments = path.split("/")[1:]
    if (
        not segments
        or not all(_SEGMENT.fullmatch(s) for s in segments)
        or any(s in (".", "..") for s in segments)
    ):
        raise ConfigError(
            f"{VARIABLE}: server {shown}: 'path' must be plain segments (no '//', "
            f"'.', '..' or spaces), {fix}"
        )
    if segments[0].lower() in RESERVED_SEGMENTS:
        raise ConfigError(
            f"{VARIABLE}: server {shown}: 'path' collides with the proxy's own "
            f"/{segments[0]} routes; choose another first segment, {fix}"
        )
    return path


def _url(value: object, where: str, key: str, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    fix = f'e.g. {key} = "http://127.0.0.1:8000/mcp"'
    if not isinstance(value, str):
        raise ConfigError(f"{where}: '{key}' is required, {fix}")
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ConfigError(f"{where}: '{key}' has an invalid port, {fix}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: '{key}' must be an absolute http(s) URL, {fix}")
    if parts.fragment or parts.username or parts.password:
        raise ConfigError(
            f"{where}: '{key}' must not have a fragment, user name or password, {fix}"
        )
    return value


def _scopes(value: object, where: str, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not all(
        isinstance(s, str) and _SCOPE.fullmatch(s) for s in value
    ):
        raise ConfigError(
            f"{where}: 'scopes' must be a list of scope names, e.g. scopes = [\"mcp\"]"
        )
    if OFFLINE_ACCESS in value:
        raise ConfigError(
            f"{where}: 'scopes' must not name {OFFLINE_ACCESS} (the authorization "
            "server grants it, never a resource)"
        )
    return tuple(dict.fromkeys(value))


def _rules(value: object, where: str, base: str) -> RulesSource | None:
    """A tool rules source: a file (relative to the servers file) or a table."""
    if value is None:
        return None
    if isinstance(value, dict):
        return RulesSource(where, inline=json.dumps(value))
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.startswith("{"):
            return RulesSource(where, inline=text)
        return RulesSource(where, path=os.path.join(base, text))
    raise ConfigError(
        f"{where}: give a .toml or .json file path, or the rules as a table"
    )
