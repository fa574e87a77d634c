"""MCP 2026-07-28 routing headers: `Mcp-Method`, `Mcp-Name` say what the body says.

Clients copy the JSON-RPC method, and the name of the tool, prompt or
resource, into headers so that intermediaries can route without reading the
body. The body stays authoritative: a request whose headers disagree with it
is refused (HeaderMismatch, -32020, HTTP 400) before anything else reads
either, so nothing downstream can be told one thing and do another. Only
requests that carry the headers are parsed; 2025-11-25 clients send none.
"""

from __future__ import annotations

import base64
import binascii
import re
import typing as t
from collections.abc import Iterable
from dataclasses import dataclass

from proxy.oauth import mcp_messages
from proxy.resource_server.jsonrpc_errors import HeaderMismatchError
from proxy.resource_server.jsonrpc_errors import UnreadableRequestError

METHOD_HEADER = "mcp-method"
NAME_HEADER = "mcp-name"
#: The body parameter each name-bearing method mirrors into `Mcp-Name`.
NAME_PARAMS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
# A value that would not survive as a header travels as =?base64?<b64>?=.
_BASE64_VALUE = re.compile(r"^=\?base64\?(?P<payload>.*)\?=$")


@dataclass(frozen=True, slots=True)
class RoutingHeaders:
    """A request's `Mcp-Method` and `Mcp-Name`, as sent (None: absent)."""

    method: str | None = None
    name: str | None = None

    @property
    def sent(self) -> bool:
        return self.method is not None or self.name is not None


def read_routing_headers(headers: Iterable[tuple[str, str]]) -> RoutingHeaders:
    """The routing headers of a request; HeaderMismatchError if one is sent twice.

    Two copies are refused, not resolved: first-copy and last-copy readers
    (this proxy, an intermediary, the backend) would disagree on the tool.
    Under WSGI two copies arrive joined by a comma, which no method has.
    The gateway and forward-auth both read them here, so both apply one rule.
    """
    method_header: str | None = None
    name_header: str | None = None
    for name, value in headers:
        key = name.lower()
        if key not in (METHOD_HEADER, NAME_HEADER):
            continue
        if (method_header if key == METHOD_HEADER else name_header) is not None:
            raise HeaderMismatchError(
                f"{name} header appears more than once", reason="duplicate_header"
            )
        if key == METHOD_HEADER:
            method_header = value
        else:
            name_header = value
    if method_header is not None and "," in method_header:
        # No method has a comma: a WSGI server (gunicorn) joined two copies.
        raise HeaderMismatchError(
            "Mcp-Method header appears more than once", reason="duplicate_header"
        )
    return RoutingHeaders(method=method_header, name=name_header)


def check_routing_headers(
    headers: Iterable[tuple[str, str]], body: bytes | mcp_messages.Body
) -> None:
    """Raise HeaderMismatchError unless the routing headers agree with ``body``."""
    sent = read_routing_headers(headers)
    method_header, name_header = sent.method, sent.name
    parsed = body if isinstance(body, mcp_messages.Body) else mcp_messages.Body(body)
    if not sent.sent or parsed.empty:
        return  # a GET or DELETE carries no message for the headers to name
    try:
        decoded = parsed.json()
    except mcp_messages.UnreadableBodyError:
        # Not "the backend's parse error to answer": Node reads some JSON
        # Python cannot (deep nesting, long numbers), so headers that cannot
        # be compared could be lying to an intermediary that trusts them.
        raise UnreadableRequestError(
            "Parse error: Mcp-Method and Mcp-Name headers came with a body "
            "that is not readable JSON.",
            reason="unreadable_body",
        ) from None
    if isinstance(decoded, list):
        # Routing headers name one message; a batch (gone since 2025-06-18)
        # would let them name one and the body carry others.
        raise HeaderMismatchError(
            "Mcp-Method and Mcp-Name headers name a single JSON-RPC message, "
            "not a batch",
            reason="batch_with_headers",
        )
    if not isinstance(decoded, dict):
        return  # not a JSON-RPC message: the backend answers the error
    message: dict[str, t.Any] = decoded
    request_id = message.get("id")
    method = message.get("method")
    if method_header is not None and method_header != method:
        raise HeaderMismatchError(
            "Mcp-Method header does not match the request body's method",
            request_id=request_id,
            reason="method_mismatch",
        )
    param = NAME_PARAMS.get(method) if isinstance(method, str) else None
    if name_header is None or param is None:
        return
    params = message.get("params")
    named = params.get(param) if isinstance(params, dict) else None
    if named is not None and decode_header_value(name_header) != named:
        raise HeaderMismatchError(
            f"Mcp-Name header does not match the request body's '{param}' parameter",
            request_id=request_id,
            reason="name_mismatch",
        )


def decode_header_value(value: str) -> str | None:
    """The value a client meant: itself, or its =?base64?...?= payload as UTF-8.

    A malformed payload is None, so it never matches a body value.
    """
    match = _BASE64_VALUE.fullmatch(value)
    if match is None:
        return value
    payload = match.group("payload")
    try:
        decoded = base64.b64decode(payload, validate=True)
        if base64.b64encode(decoded).decode("ascii") != payload:
            return None
        return decoded.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
