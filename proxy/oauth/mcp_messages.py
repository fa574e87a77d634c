"""What an MCP POST asks for: its JSON-RPC messages and the Mcp-Method/Mcp-Name headers.

MCP 2026-07-28 (Streamable HTTP): POST requests carry `Mcp-Method` and
`Mcp-Name` (the method and, for `tools/call`, the tool name) so that
intermediaries can route without parsing bodies; a header that disagrees with
the body is a `HeaderMismatch` error (-32020), refused by the gateway before
anything reads either (proxy/resource_server/routing_headers.py, the one
rule). The body stays authoritative: the policy decides on the body's tool,
so a header cannot steer it.
"""

from __future__ import annotations

import json
import math
import re
import typing as t
from collections.abc import Callable
from collections.abc import Iterable

TOOLS_CALL = "tools/call"
TOOLS_LIST = "tools/list"
Message = dict[str, t.Any]


class UnreadableBodyError(ValueError):
    """A POST body that is not JSON this module can read, though a backend
    might: deeper than Python's recursion limit, a number of more digits
    than Python converts, invalid UTF-8. Where tool rules apply, it is
    refused: what cannot be read here cannot be checked (fail closed)."""


def read_json(body: bytes) -> t.Any:
    """The body as JSON, as every JSON-RPC reader here reads it (a UTF-8 byte
    order mark allowed, as RFC 8259 §8.1 lets parsers, and the SDKs do);
    raises UnreadableBodyError."""
    return _loads(body)


class Body:
    """A POST body, parsed when a rule first reads it and then not again
    (the routing headers' check and the tool rules both may; a relay with
    neither parses nothing)."""

    __slots__ = ("_decoded", "_error", "_read", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._read = False
        self._decoded: t.Any = None
        self._error: UnreadableBodyError | None = None

    @property
    def empty(self) -> bool:
        return not self.raw.strip()

    def json(self) -> t.Any:
        """The decoded JSON; raises UnreadableBodyError for a body that is
        not readable JSON (the same error each time)."""
        if not self._read:
            self._read = True
            try:
                self._decoded = read_json(self.raw)
            except UnreadableBodyError as exc:
                self._error = exc
        if self._error is not None:
            raise self._error
        return self._decoded


def read_json_as_a_client(data: bytes) -> t.Any:
    """An answer's JSON as the SDK clients read it: bytes that are not UTF-8
    become U+FFFD (``TextDecoder`` and httpx both replace, neither fails),
    a leading byte order mark is skipped; raises UnreadableBodyError."""
    return _loads(data.decode("utf-8", "replace").removeprefix("\ufeff"))


def _loads(text: bytes | str) -> t.Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UnreadableBodyError(str(exc)[:120]) from None


def could_list_tools(data: bytes) -> bool:
    """Could a reader find a `tools` member in this JSON text? Only if the
    name is there as is or spelled with an escape (``"\\u0074ools"``)."""
    return b"tools" in data or b"\\u" in data


def names_another_charset(content_type: str) -> bool:
    """Does this Content-Type ask the reader to decode the body as anything
    but UTF-8? ``express.json()`` decodes any ``utf-*`` charset it is told
    (``utf-7`` included), while :func:`read_json` reads UTF-8: the same
    bytes would be two different requests. Every ``charset`` parameter is
    looked at (parsers disagree on which of two counts), and one that cannot
    be read plainly counts as another."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() != "charset":
            continue
        if value.strip().strip('"').lower() != "utf-8":
            return True
    return False


def parse_messages(body: bytes | Body) -> list[Message]:
    """The JSON-RPC messages of a POST body: one, or a batch (2025-03-26).

    An empty body, or JSON that is neither an object nor an array, gives no
    messages: no MCP reader takes a call from it. A body that is not JSON
    raises UnreadableBodyError.
    """
    parsed = body if isinstance(body, Body) else Body(body)
    if parsed.empty:
        return []
    decoded = parsed.json()
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


def answers(response_id: object, request_id: object) -> bool:
    """Would a client take a response with `response_id` as the answer to
    `request_id`? The TypeScript SDK matches ``Number(response.id)``, so
    ``"1"``, ``" 1 "`` and ``"0x1"`` all answer request 1: the filter must
    match at least as much, or a list answered under such an id would pass
    unfiltered. Matching more only filters more (fail closed)."""
    if response_id == request_id:
        return True
    number = _as_number(response_id)
    return number is not None and number == _as_number(request_id)


def _as_number(value: object) -> float | None:
    """JavaScript's ``Number(value)`` for an id (as ``JSON.parse`` reads a
    number, beyond 1.8e308 infinite), or None where it is NaN or the value
    is no scalar. Python reads a few strings Number() does not (``"1_0"``,
    ``"inf"``): more matches, never fewer."""
    if isinstance(value, bool | int):
        return _int_as_float(int(value))
    if isinstance(value, float):
        return value
    if not isinstance(value, str):
        return None
    text = _JS_SPACE.sub("", value)
    if not text:
        return 0.0  # Number("") is 0
    try:
        if text[:2].lower() in _RADIX:
            return _int_as_float(int(text, 0))
        return float(text)
    except ValueError:
        return None


def _int_as_float(number: int) -> float:
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


#: What Number() trims: Python's white space and U+FEFF, which JavaScript
#: counts as white space and Python does not.
_JS_SPACE = re.compile(r"^[\s\ufeff]+|[\s\ufeff]+$")
_RADIX = ("0x", "0o", "0b")


def filter_tools_result(
    message: object, ids: Iterable[t.Any] | None, may_call: Callable[[str], bool]
) -> bool:
    """Drop from a `tools/list` result the tools the caller may not call.

    ``ids``: the `tools/list` request ids the message may answer; None for
    any (a result listing tools, whatever its id). Changes `message` in
    place; True when it was such a result (it may then need re-encoding).
    """
    if not isinstance(message, dict):
        return False
    id_ = message.get("id")
    if ids is not None and not any(answers(id_, request) for request in ids):
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
