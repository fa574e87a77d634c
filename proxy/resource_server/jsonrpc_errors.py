"""MCP-level refusals the gateway answers itself, shaped as the MCP server would.

OAuth errors (401, 403, 429) keep RFC 6749/6750's JSON shape. What a client
must read as the MCP server speaking (an unknown session, a header that
disagrees with its body) is a JSON-RPC error object with the status the MCP
transport assigns, so SDK clients react as they would to the backend itself.
"""

from __future__ import annotations

import json
import typing as t

from flask import Response

#: JSON-RPC 2.0 §5.1.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
#: MCP 2026-07-28 transports: a routing header disagrees with the body.
HEADER_MISMATCH = -32020
#: JSON-RPC 2.0 §5.1: -32000 to -32099 are the server's to define; ours.
TOOL_DENIED = -32003


class JsonRpcError(Exception):
    """A JSON-RPC error response: HTTP status, error code, message, request id."""

    status_code = 400
    code = INVALID_REQUEST

    def __init__(
        self, message: str, *, request_id: t.Any = None, reason: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        #: Internal, logged only: never tells a client why.
        self.reason = reason

    def body(self) -> str:
        return json.dumps(
            {
                "jsonrpc": "2.0",
                "id": self.request_id,
                "error": {"code": self.code, "message": self.message},
            },
            separators=(",", ":"),
        )


class SessionNotFoundError(JsonRpcError):
    """MCP 2025-11-25 transports: a server answers an unknown or ended session
    id with 404, and the client starts a new session. Said, in the SDK's own
    words, for a session that is someone else's too: a stranger learns nothing.
    """

    status_code = 404
    code = INVALID_REQUEST

    def __init__(self, *, reason: str) -> None:
        super().__init__("Session not found", reason=reason)


class HeaderMismatchError(JsonRpcError):
    """MCP 2026-07-28 transports: `Mcp-Method`/`Mcp-Name` disagree with the body
    (HTTP 400, JSON-RPC `HeaderMismatch` -32020)."""

    status_code = 400
    code = HEADER_MISMATCH


class UnreadableRequestError(JsonRpcError):
    """A POST body the tool rules cannot read (JSON-RPC 2.0 §5.1 parse error,
    HTTP 400): refused where rules apply, never relayed unchecked."""

    status_code = 400
    code = PARSE_ERROR


class UnsupportedBodyError(JsonRpcError):
    """A request body in a form the gateway does not read (RFC 9110
    §15.5.16: 415): the gateway checks the bytes it relays as UTF-8 JSON, and
    a backend that decoded them otherwise would run what was never checked."""

    status_code = 415
    code = INVALID_REQUEST


class ContentEncodingError(UnsupportedBodyError):
    """A request body sent compressed: 415 with ``Accept-Encoding: identity``
    (RFC 9110 §12.5.3), which says what would be accepted."""


class ToolDeniedError(JsonRpcError):
    """The tool policy does not let this caller call this tool (decision J50)."""

    status_code = 403
    code = TOOL_DENIED


class UnnamedToolError(JsonRpcError):
    """Forward-auth: `Mcp-Method: tools/call` with no usable `Mcp-Name` (missing,
    sent twice, empty, or a malformed `=?base64?…?=`) while tool rules apply.

    The tool cannot be known (forward-auth never sees the body), so the call
    is refused: HeaderMismatch's code, but HTTP 403, since nginx's
    `auth_request` accepts only 2xx, 401 and 403 from us (decision J65).
    """

    status_code = 403
    code = HEADER_MISMATCH


def error_response(error: JsonRpcError) -> Response:
    """The refusal as an HTTP response: its JSON-RPC body, never cached."""
    response = Response(
        error.body(), status=error.status_code, mimetype="application/json"
    )
    response.headers["Cache-Control"] = "no-store"
    if isinstance(error, ContentEncodingError):
        response.headers["Accept-Encoding"] = "identity"
    return response
