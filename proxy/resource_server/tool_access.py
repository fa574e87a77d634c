"""The gateway's tool checks: one call before relaying, one wrap of the response.

:func:`check_request` runs after the token is verified and before the backend
sees anything (and after the gateway checked the Mcp-Method/Mcp-Name headers
against the body, proxy/resource_server/routing_headers.py): the tool
policy, then the per-tool scopes (policy first: stepping up for a tool the
policy refuses would only lead to a second refusal). It returns a
:class:`ToolAccess` saying how to treat the response: a `tools/list` answer
loses the tools the caller may not call, whether it comes as JSON or as an
SSE event, so models are not shown tools they cannot use. The decision on
the calls themselves is :func:`check_calls`, which forward-auth applies too,
to the tool a request's `Mcp-Name` header names (decision J65).
"""

from __future__ import annotations

import json
import logging
import typing as t
import zlib
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field

from proxy.oauth import mcp_messages
from proxy.oauth.errors import InsufficientScopeError
from proxy.resource_server.jsonrpc_errors import ToolDeniedError
from proxy.resource_server.jsonrpc_errors import UnreadableRequestError
from proxy.resource_server.sse_events import EVENT
from proxy.resource_server.sse_events import OVERFLOW
from proxy.resource_server.sse_events import EventReader
from proxy.resource_server.tool_policy import caller_of
from proxy.resource_server.tool_scopes import check_tool_scopes
from proxy.resource_server.verification import resource_metadata_url

if t.TYPE_CHECKING:
    from proxy.app_state import AppState
    from proxy.oauth.access_tokens import AccessClaims
    from proxy.resource_server.routes import McpRoute

log = logging.getLogger(__name__)

#: A tools/list answer larger than this is not filtered but refused (fail closed).
MAX_TOOLS_LIST_BYTES = 8 * 1024 * 1024

Headers = list[tuple[str, str]]

#: How much of a compressed answer is inflated before the reader takes it.
INFLATE_STEP_BYTES = 64 * 1024

#: Content encodings a tools/list answer can be read in (identity is asked for).
_DECODABLE = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})


@dataclass(frozen=True, slots=True)
class ToolAccess:
    """What the response needs: nothing, or its tools/list results filtered.

    ``list_ids``: the ids of the request's `tools/list` calls; their answers
    are filtered. ``any_result``: a GET stream, where the TypeScript SDK
    hands a resumed answer the id of the request it resumes
    (``replayMessageId``), so every result listing tools is filtered.
    """

    list_ids: list[t.Any] = field(default_factory=list)
    may_call: Callable[[str], bool] | None = None
    any_result: bool = False

    @property
    def filters(self) -> bool:
        return self.may_call is not None and (bool(self.list_ids) or self.any_result)

    def response(
        self, chunks: Iterator[bytes], headers: Headers, status: int = 200
    ) -> tuple[Iterator[bytes], Headers]:
        """The body and headers to send: unchanged unless tools/list is filtered."""
        if not self.filters:
            return chunks, headers
        content_type = _header(headers, "content-type").lower()
        encoding = _header(headers, "content-encoding").strip().lower()
        kept = [
            (name, value)
            for name, value in headers
            if name.lower() not in ("content-length", "content-encoding")
        ]
        # Framing as the clients tell it: a type containing either name is
        # read as it says (the SDKs parse its essence, or test its start;
        # containing covers both), and the TypeScript SDK reads a GET's 2xx
        # answer as SSE whatever its type.
        declared_events = "text/event-stream" in content_type
        as_json = "application/json" in content_type
        events = declared_events or (self.any_result and 200 <= status < 300)
        # The Python SDK decodes SSE in the charset the type names; the
        # filter reads UTF-8. Both SDKs read a JSON answer's bytes as UTF-8.
        refused = declared_events and (
            as_json or mcp_messages.names_another_charset(content_type)
        )
        if encoding not in _DECODABLE or refused:
            why = f"content encoding {encoding!r}, content type {content_type!r}"
            return self._refused(chunks, why, events=events), kept
        body = _decoded(chunks, encoding)
        if events:
            return self._filtered_events(body), kept
        if as_json:
            return self._filtered_json(body), kept
        return body, kept  # an error page, a 202: no tools in it

    def _filtered_json(self, body: Iterator[bytes]) -> Iterator[bytes]:
        parts, size = [], 0
        for chunk in body:
            parts.append(chunk)
            size += len(chunk)
            if size > MAX_TOOLS_LIST_BYTES:
                yield self._cannot_filter("too large", events=False)
                return
        raw = b"".join(parts)
        if not raw.strip():
            yield raw  # a 202, an empty answer: no tool in it
            return
        try:
            decoded = mcp_messages.read_json_as_a_client(raw)
        except mcp_messages.UnreadableBodyError as exc:
            if not mcp_messages.could_list_tools(raw):
                yield raw  # whatever a client makes of it, it lists no tool
                return
            # A client's parser may read what ours cannot (fail closed).
            yield self._cannot_filter(f"unreadable JSON: {exc}", events=False)
            return
        yield _dumps(decoded) if self._filter_all(decoded) else raw

    def _filtered_events(self, body: Iterator[bytes]) -> Iterator[bytes]:
        """SSE (WHATWG HTML §9.2): each event, as sse_events.EventReader cuts
        it, is passed on whole, rewritten only when its data is a tools/list
        result; blank lines and comments between events are passed at once."""
        reader = EventReader(MAX_TOOLS_LIST_BYTES)
        for chunk in body:
            if not chunk:
                yield b""  # the relay's flush of the headers: pass it on
                continue
            yield from self._pieces(reader.feed(chunk))
        yield from self._pieces(reader.end(), ended=True)

    def _pieces(
        self, pieces: Iterator[tuple[str, bytes]], *, ended: bool = False
    ) -> Iterator[bytes]:
        for kind, piece in pieces:
            if kind == EVENT:
                # An unended event stays unended: a client drops it.
                yield self._event(piece) + (b"" if ended else b"\n\n")
            elif kind == OVERFLOW:
                error = self._cannot_filter("event too large", events=True)
                yield piece + b"\n" + error if piece else error
            else:
                yield piece

    def _event(self, event: bytes) -> bytes:
        lines = event.split(b"\n")
        data = [_data_value(line) for line in lines if _is_data(line)]
        joined = b"\n".join(data)
        if not joined.strip():
            return event  # a comment, a retry hint, a priming event
        # A line of its own (an event cut off at the end of the stream ends
        # in one) would end the event before the data put back after it.
        others = [line for line in lines if line and not _is_data(line)]
        try:
            message = mcp_messages.read_json_as_a_client(joined)
        except mcp_messages.UnreadableBodyError as exc:
            if not mcp_messages.could_list_tools(joined):
                return event  # a notification, a server's request: no tool list
            # A client's parser may read what ours cannot (fail closed).
            error = self._cannot_filter(f"unreadable event data: {exc}", events=True)
            return b"\n".join([*others, error.removesuffix(b"\n\n")])
        if not self._filter_all(message):
            return event
        return b"\n".join([*others, b"data: " + _dumps(message)])

    def _filter_all(self, decoded: object) -> bool:
        """Filter one message or each of a batch; True if any was a result."""
        messages = decoded if isinstance(decoded, list) else [decoded]
        return any([self._filter(message) for message in messages])

    def _filter(self, message: object) -> bool:
        return mcp_messages.filter_tools_result(
            message,
            None if self.any_result else self.list_ids,
            t.cast(Callable[[str], bool], self.may_call),
        )

    def _refused(
        self, chunks: Iterator[bytes], why: str, *, events: bool
    ) -> Iterator[bytes]:
        for _ in chunks:  # read to the end, so the connection can be reused
            pass
        yield self._cannot_filter(why, events=events)

    def _cannot_filter(self, why: str, *, events: bool) -> bytes:
        """Fail closed: a tools/list answer we cannot read lists nothing.

        Each `tools/list` of the request gets its error (a client waits for
        every id it sent). On a GET stream the id is not ours to know: the
        error's is null (the Python SDK gives it the resumed request's id;
        the TypeScript SDK reports it and its request times out).
        """
        log.error("tools/list answer not filtered (%s): replaced by an error", why)
        errors = [
            _dumps(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "error": {
                        "code": -32603,
                        "message": "The tool list is unavailable.",
                    },
                }
            )
            for request_id in (self.list_ids or [None])
        ]
        if events:
            return b"".join(b"data: " + error + b"\n\n" for error in errors)
        return errors[0] if len(errors) == 1 else b"[" + b",".join(errors) + b"]"


def _is_data(line: bytes) -> bool:
    """A ``data`` field: ``data:`` with a value, or ``data`` alone (§9.2.6)."""
    return line == b"data" or line.startswith(b"data:")


def _data_value(line: bytes) -> bytes:
    return line[5:].removeprefix(b" ")


NOTHING = ToolAccess()


def has_rules(route: McpRoute) -> bool:
    """True when the route's server has tool scopes or a tool policy."""
    return route.server.tool_scopes is not None or route.tool_policy is not None


def check_request(
    app: AppState,
    route: McpRoute,
    claims: AccessClaims,
    method: str,
    body: mcp_messages.Body,
    backend_headers: dict[str, str],
) -> ToolAccess:
    """Refuse what the rules refuse (raising the error to answer); else say how
    to treat the response. Cheap when no rule is configured. The rules are
    the route's own: each MCP server has its tool scopes and policy."""
    if not has_rules(route):
        return NOTHING  # nothing to decide (the gateway checked the headers)
    if method == "GET":
        # A resumed stream (Last-Event-ID) may replay a tools/list answer,
        # which the TypeScript SDK takes as the answer to the request it
        # resumes whatever its id: every result listing tools is filtered.
        return _filtered(app, route, claims, backend_headers, any_result=True)
    if method != "POST":
        return NOTHING
    try:
        messages = mcp_messages.parse_messages(body)
    except mcp_messages.UnreadableBodyError as exc:
        log.info("gateway: unreadable body refused (%s)", exc)
        raise UnreadableRequestError(
            "Parse error: the request body is not readable JSON.",
            reason="unreadable_body",
        ) from None
    list_ids = mcp_messages.tools_list_ids(messages)
    check_calls(app, route, claims, mcp_messages.tool_calls(messages))
    if not list_ids:
        return NOTHING
    return _filtered(app, route, claims, backend_headers, list_ids=list_ids)


def _filtered(
    app: AppState,
    route: McpRoute,
    claims: AccessClaims,
    backend_headers: dict[str, str],
    *,
    list_ids: list[t.Any] | None = None,
    any_result: bool = False,
) -> ToolAccess:
    """How to filter the answer, when the route has a tool policy."""
    live = route.tool_policy
    # A tool whose scope the token lacks stays listed: step-up reaches it, and
    # hiding it would leave the model no reason to ask. Only the policy hides.
    if live is None:
        return NOTHING
    caller = caller_of(claims, app.settings, app.catalog_names)
    may_call = live.current().may_call(caller)
    # Ask for an uncompressed answer: it is read and rewritten here.
    for name in [n for n in backend_headers if n.lower() == "accept-encoding"]:
        del backend_headers[name]
    backend_headers["Accept-Encoding"] = "identity"
    return ToolAccess(list_ids=list_ids or [], may_call=may_call, any_result=any_result)


def check_calls(
    app: AppState,
    route: McpRoute,
    claims: AccessClaims,
    calls: t.Sequence[tuple[t.Any, str]],
    *,
    where: str | None = None,
) -> None:
    """The tool policy, then the per-tool scopes, for these (id, tool) calls.

    The one decision the gateway (tools read from the body) and forward-auth
    (the tool its `Mcp-Name` header names) share; raises ToolDeniedError or
    InsufficientScopeError (with the step-up challenge), after the
    `gateway.tool_denied` event. ``where`` names a caller other than the
    gateway in that event.
    """
    if not calls:
        return
    live = route.tool_policy
    if live is not None:
        caller = caller_of(claims, app.settings, app.catalog_names)
        policy = live.current()
        for request_id, tool in calls:
            decision = policy.decide(caller, tool)
            if not decision.allowed:
                _denied(
                    app, claims, tool, decision.reason, rule=decision.rule, where=where
                )
                raise ToolDeniedError(
                    f"The tool policy does not allow calling '{_printable(tool)}'.",
                    request_id=request_id,
                    reason=decision.reason,
                )
    tool_scopes = route.server.tool_scopes
    if tool_scopes is not None:
        tools = [tool for _, tool in calls]
        try:
            check_tool_scopes(
                tool_scopes,
                claims,
                tools,
                resource_metadata=resource_metadata_url(app, route.server),
            )
        except InsufficientScopeError:
            granted = claims.scope.split()
            lacking = next(tool for tool in tools if tool_scopes.missing(granted, tool))
            _denied(app, claims, lacking, "insufficient_scope", where=where)
            raise


def _denied(
    app: AppState,
    claims: AccessClaims,
    tool: str,
    reason: str,
    *,
    rule: int = 0,
    where: str | None = None,
) -> None:
    app.events.emit(
        "gateway.tool_denied",
        outcome="refused",
        reason=reason,
        tool=_printable(tool),
        rule=rule or None,
        client_id=claims.client_id,
        sub=claims.sub,
        where=where,
    )


def _printable(value: str) -> str:
    return "".join(c for c in value[:128] if 0x20 <= ord(c) < 0x7F and c not in "'\"\\")


def _header(headers: Headers, wanted: str) -> str:
    """Every value of the header, joined as fetch and httpx join them: a
    backend that sends two Content-Types is read as its client reads it."""
    return ", ".join(value for name, value in headers if name.lower() == wanted)


def _decoded(chunks: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    """The body without its Content-Encoding (gzip, deflate), chunk by chunk."""
    if encoding in ("", "identity"):
        yield from chunks
        return
    # 47: zlib detects gzip or zlib framing; deflate is zlib-framed (RFC 9110).
    decompressor = zlib.decompressobj(15 if encoding == "deflate" else 47)
    try:
        for chunk in chunks:
            # A small chunk may inflate a thousandfold: at most a step at a
            # time, so the size limits downstream hold before memory goes.
            while chunk:
                yield decompressor.decompress(chunk, INFLATE_STEP_BYTES)
                chunk = decompressor.unconsumed_tail
        yield decompressor.flush()
    except zlib.error as exc:  # a corrupt body: what decoded so far, nothing more
        log.warning("tools/list answer does not decompress: %s", exc)
        for _ in chunks:
            pass


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
