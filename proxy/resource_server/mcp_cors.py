"""CORS on the MCP endpoint: which request headers a browser client may send (CORS-4).

Both MCP revisions add headers: `Mcp-Session-Id`, `MCP-Protocol-Version` and
`Last-Event-ID` (2025-11-25); `Mcp-Method`, `Mcp-Name` and one `Mcp-Param-<name>`
per `x-mcp-header` a tool declares (2026-07-28), whose names only the client
knows. So a preflight allows the fixed set plus the `Mcp-Param-*` names it
announces, each checked: an RFC 9110 token, a bounded length and count.
Nothing else is ever added: no Cookie, no credential beyond the bearer
`Authorization` the endpoint exists for, no header that names an identity.
"""

from __future__ import annotations

import re

FIXED_HEADERS = (
    "Authorization",
    "Content-Type",
    "MCP-Protocol-Version",
    "Mcp-Session-Id",
    "Last-Event-ID",
    "Mcp-Method",
    "Mcp-Name",
)
#: What browser clients read from MCP responses (and errors, and 429s).
EXPOSED_HEADERS = "WWW-Authenticate, Mcp-Session-Id, MCP-Protocol-Version, Retry-After"
PARAM_PREFIX = "mcp-param-"
#: Bounds on announced names: a preflight cannot make the answer grow unbounded.
MAX_ANNOUNCED = 32
MAX_NAME_CHARS = 128
# RFC 9110 §5.6.2: a field name is a token.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def allowed_headers(announced: str | None) -> str:
    """Access-Control-Allow-Headers for a preflight announcing ``announced``."""
    allowed = list(FIXED_HEADERS)
    if announced:
        names = [name.strip() for name in announced.split(",")][: MAX_ANNOUNCED * 2]
        params = [name for name in names if is_param_header(name)]
        allowed += sorted({name.lower() for name in params})[:MAX_ANNOUNCED]
    return ", ".join(allowed)


def is_param_header(name: str) -> bool:
    """An `Mcp-Param-<x-mcp-header>` name a client may send across origins."""
    lower = name.lower()
    return (
        lower.startswith(PARAM_PREFIX)
        and len(lower) > len(PARAM_PREFIX)
        and len(name) <= MAX_NAME_CHARS
        and _TOKEN.fullmatch(name) is not None
    )
