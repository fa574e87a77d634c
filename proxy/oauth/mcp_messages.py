"""What an MCP POST asks for: its JSON-RPC messages and the Mcp-Method/Mcp-Name headers.

MCP 2026-07-28 (Streamable HTTP): POST requests carry `Mcp-Method` and
`Mcp-Name` (the method and, for `tools/call`, the tool name) so that
intermediaries can route without parsing bodies; a header that disagrees with
the body is a `HeaderMismatch` error (-32020). The body stays authoritative:
the gateway decides on the body's tool, and refuses a request whose headers
say otherwise, so a header cannot steer a policy. :func:`check_headers` is the
one rule; the transport uses it too.
"""

from __future__ import annotations

import json
import typing as t
from collections.abc import Callable
from collections.abc import Iterable

from proxy.oauth.errors import OAuthError

MCP_METHOD_HEADER = "Mcp-Method"
MCP_NAME_HEADER = "Mcp-Name"
TOOLS_CALL = "tools/call"
TOOLS_LIST = "tools/list"
#: MCP 2026-07-28: the JSON-RPC error code of a header that disagrees with the body.
HEADER_MISMATCH = -32020

Message = dict[str, t.Any]


class HeaderLookup(t.Protocol):
    """Request headers, case-insensitive (a dict in tests, werkzeug's Headers)."""

    def get(self, key: str) -> str | None: ...


#: JSON-RPC 2.0 §5.1: -32000 to -32099 are for the server to define; ours.
TOOL_DENIED = -32003


class JsonRpcError(OAuthError):
    """A gateway refusal about one MCP message, answered with a JSON-RPC error
    body (what MCP clients read) and `Cache-Control: no-store`."""

    code: t.ClassVar[int] = -32600

    def __init__(
        self, description: str, *, request_id: t.Any = None, reason: str | None = None
    ) -> None:
        super().__init__(description, reason=reason)
        self.request_id = request_id

    def body(self) -> dict[str, t.Any]:
        return {
            "jsonrpc": "2.0",
            "id": self.request_id,
            "error": {"code": self.code, "message": self.description},
        }


class HeaderMismatchError(JsonRpcError):
    """Mcp-Method or Mcp-Name disagrees with the JSON-RPC body (MCP 2026-07-28)."""

    error = "header_mismatch"
    status_code = 400
    code = HEADER_MISMATCH


class ToolDeniedError(JsonRpcError):
    """The tool policy does not let this caller call this tool (decision J50)."""

    error = "tool_denied"
    status_code = 403
    code = TOOL_DENIED


def parse_messages(body: bytes) -> list[Message]:
    """The JSON-RPC messages of a POST body: one, or a batch (2025-03-26).

    A body that is not JSON-RPC gives no messages: the backend answers it
    (with its own parse error), and nothing here can be decided on it.
    """
    if not body or body.lstrip()[:1] not in (b"{", b"["):
        return []
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        return []
    items = decoded if isinstance(decoded, list) else [decoded]
    return [item for item in items if isinstance(item, dict)]


def name_of(message: Message) -> str | None:
    """What `Mcp-Name` names for this message: a tool, prompt or resource."""
    params = message.get("params")
    if not isinstance(params, dict):
        return None
    for key in ("name", "uri"):
        value = params.get(key)
        if isinstance(value, str):
            return value
    return None


def tool_calls(messages: Iterable[Message]) -> list[tuple[t.Any, str]]:
    """(id, tool name) of every `tools/call`; a call without a name names ""."""
    calls = []
    for message in messages:
        if message.get("method") == TOOLS_CALL:
            params = message.get("params")
            name = params.get("name") if isinstance(params, dict) else None
            calls.append((message.get("id"), name if isinstance(name, str) else ""))
    return calls


def tools_list_ids(messages: Iterable[Message]) -> list[t.Any]:
    """The ids of `tools/list` requests: their responses are filtered."""
    return [
        m.get("id")
        for m in messages
        if m.get("method") == TOOLS_LIST and m.get("id") is not None
    ]


def check_headers(headers: HeaderLookup, messages: list[Message]) -> None:
    """Raise HeaderMismatchError when Mcp-Method or Mcp-Name contradicts the body.

    Absent headers are fine (clients of earlier revisions send none). In a
    batch, a header must agree with every message it could describe.
    """
    method = headers.get(MCP_METHOD_HEADER)
    name = headers.get(MCP_NAME_HEADER)
    if method is None and name is None:
        return
    for message in messages:
        if "method" not in message:
            continue  # a response the client sends back (sampling, elicitation)
        request_id = message.get("id")
        if method is not None and method.strip() != message.get("method"):
            raise HeaderMismatchError(
                f"{MCP_METHOD_HEADER} does not match the body's method.",
                request_id=request_id,
                reason="header_mismatch",
            )
        if name is not None and name.strip() != name_of(message):
            raise HeaderMismatchError(
                f"{MCP_NAME_HEADER} does not match the body's name.",
                request_id=request_id,
                reason="header_mismatch",
            )


def filter_tools_result(
    message: object, ids: Iterable[t.Any], may_call: Callable[[str], bool]
) -> bool:
    """Drop from a `tools/list` result the tools the caller may not call.

    Changes `message` in place; True when it was such a result (it may then
    need re-encoding).
    """
    if not isinstance(message, dict) or message.get("id") not in list(ids):
        return False
    result = message.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
        return False
    result["tools"] = [
        tool
        for tool in result["tools"]
        if isinstance(tool, dict)
        and isinstance(tool.get("name"), str)
        and may_call(tool["name"])
    ]
    return True
