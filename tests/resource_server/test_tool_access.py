"""proxy/resource_server/tool_access.py: a tools/list answer, filtered as it streams.

The caller may call `echo` only; the backend lists `echo` and `delete_repo`.
Every way the answer can be framed must come out without `delete_repo`, or
as an error (fail closed), never as the backend's whole list.
"""

from __future__ import annotations

import json
import re
import typing as t

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from proxy.resource_server.tool_access import BOM
from proxy.resource_server.tool_access import ToolAccess

LISTED = {
    "jsonrpc": "2.0",
    "id": 1,
    "result": {"tools": [{"name": "echo"}, {"name": "delete_repo"}]},
}
RESULT = json.dumps(LISTED).encode()
ACCESS = ToolAccess(list_ids=[1], may_call=lambda name: name == "echo")
SSE = [("Content-Type", "text/event-stream")]
JSON = [("Content-Type", "application/json")]


def _answer(chunks: list[bytes], headers: list[tuple[str, str]] = SSE) -> bytes:
    body, _ = ACCESS.response(iter(chunks), headers)
    return b"".join(body)


def _one_answer(body: bytes, framing: str) -> tuple[bytes, t.Any]:
    """The relayed bytes of one backend answer, framed as SSE or JSON, and
    the one message they carry."""
    if framing == "sse":
        answer = _answer([b"data: " + body + b"\n\n"])
        (message,) = _messages(answer)
        return answer, message
    answer = _answer([body], JSON)
    return answer, json.loads(answer)


def _messages(sse: bytes) -> list[t.Any]:
    """The JSON of each event a client dispatches, read as WHATWG HTML §9.2.6
    says (so a framing fault loses the message and the test sees it): one
    leading BOM dropped, lines end in CRLF, LF or CR, a blank line dispatches,
    an event the stream ends inside is dropped."""
    text = sse.decode("utf-8").removeprefix("\ufeff")
    dispatched, data = [], []
    for line in re.split(r"\r\n|\r|\n", text):
        if not line:
            if data:
                dispatched.append(json.loads("\n".join(data)))
            data = []
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            if field == "data":
                data.append(value.removeprefix(" "))
    return dispatched


def _only_echo_or_an_error(messages: list[t.Any]) -> None:
    answers = [m for m in messages if m.get("id") == 1]
    assert answers, messages
    for answer in answers:
        if "error" in answer:
            assert answer["error"]["code"] == -32603
        else:
            assert [tool["name"] for tool in answer["result"]["tools"]] == ["echo"]


def test_a_crlf_split_between_two_chunks_still_ends_the_event() -> None:
    """sse-starlette (the Python SDK's) ends lines with CRLF; a chunk may end
    between the CR and the LF of the blank line that ends an event."""
    progress = b'event: message\r\ndata: {"jsonrpc":"2.0","method":"n"}\r\n\r'
    listing = b"\nevent: message\r\ndata: " + RESULT + b"\r\n\r\n"
    _only_echo_or_an_error(_messages(_answer([progress, listing])))
    assert b"delete_repo" not in _answer([progress, listing])


def test_bare_cr_line_endings_are_line_endings() -> None:
    answer = _answer([b"event: message\rdata: " + RESULT + b"\r\r"])
    assert b"delete_repo" not in answer
    _only_echo_or_an_error(_messages(answer))


@pytest.mark.parametrize("framing", ["sse", "json"])
def test_a_batch_answer_is_filtered_element_by_element(framing: str) -> None:
    _, decoded = _one_answer(json.dumps([LISTED]).encode(), framing)
    assert [tool["name"] for tool in decoded[0]["result"]["tools"]] == ["echo"]


@pytest.mark.parametrize(
    "unreadable",
    [
        b'{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete_repo"}],"x":'
        + b"[" * 3000
        + b"]" * 3000
        + b"}}",
        b'{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete_repo"}],"n":'
        + b"9" * 5000
        + b"}}",
    ],
    ids=["deep", "long_number"],
)
@pytest.mark.parametrize("framing", ["sse", "json"])
def test_an_answer_other_parsers_could_read_but_ours_cannot_lists_nothing(
    unreadable: bytes, framing: str
) -> None:
    """Node's JSON.parse reads both; Python's json does not: fail closed."""
    answer, error = _one_answer(unreadable, framing)
    assert b"delete_repo" not in answer
    assert error == {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {"code": -32603, "message": "The tool list is unavailable."},
    }


def test_events_without_data_pass_untouched() -> None:
    """A priming event (an id, no data), a comment and a retry hint."""
    stream = b"id: 5\ndata:\n\n: keep-alive\n\nretry: 1000\n\n"
    assert _answer([stream]) == stream


def test_the_relays_empty_first_chunk_still_flushes_the_headers() -> None:
    body, _ = ACCESS.response(iter([b"", b"data: " + RESULT + b"\n\n"]), SSE)
    assert next(body) == b""


@pytest.mark.parametrize(
    "chunks",
    [
        [b"data: " + RESULT + b"\r\n\r"],
        [b"data: " + RESULT + b"\r", b"", b"\n\r\n"],
        [b"data: " + RESULT + b"\r", b"\n", b"\r", b"\n"],
    ],
    ids=["cr_held_at_the_end", "empty_chunk_while_cr_held", "crlf_crlf_in_four"],
)
def test_a_cr_at_a_chunks_end_is_one_line_end_whatever_follows(
    chunks: list[bytes],
) -> None:
    answer = _answer(chunks)
    assert b"delete_repo" not in answer
    assert answer.endswith(b"\n\n")
    _only_echo_or_an_error(_messages(answer))


def test_a_rewritten_event_keeps_its_fields_and_ends_where_it_ended() -> None:
    answer = _answer([b"event: message\r\nid: 7\r\ndata: " + RESULT + b"\r\n\r\n"])
    filtered = dict(LISTED, result={"tools": [{"name": "echo"}]})
    expected = json.dumps(filtered, separators=(",", ":")).encode()
    assert answer == b"event: message\nid: 7\ndata: " + expected + b"\n\n"


@pytest.mark.parametrize(
    "chunks",
    [
        [BOM + b"data: " + RESULT + b"\n\n"],
        [BOM[:1], BOM[1:] + b"data: " + RESULT + b"\n\n"],
    ],
    ids=["whole", "split"],
)
def test_a_byte_order_mark_before_the_stream_does_not_hide_the_first_event(
    chunks: list[bytes],
) -> None:
    """A client's UTF-8 decoder drops it, so the first line is a data line."""
    answer = _answer(chunks)
    assert b"delete_repo" not in answer
    _only_echo_or_an_error(_messages(answer))


@pytest.mark.parametrize("framing", ["sse", "json"])
@pytest.mark.parametrize("answered_as", ["1", " 1 ", "1.0", "0x1"])
def test_an_answer_under_an_id_a_client_reads_as_the_requests_is_filtered(
    answered_as: str, framing: str
) -> None:
    """The TypeScript SDK matches ``Number(response.id)``: "1" answers 1."""
    body = json.dumps(dict(LISTED, id=answered_as)).encode()
    answer, message = _one_answer(body, framing)
    assert b"delete_repo" not in answer
    assert [tool["name"] for tool in message["result"]["tools"]] == ["echo"]


# -- any framing, any chunking: the client sees the backend's events, filtered --

PROGRESS = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"n": 1}}
OTHER_RESULT = {"jsonrpc": "2.0", "id": 2, "result": {"tools": [{"name": "x"}]}}
_EVENTS = st.sampled_from([LISTED, PROGRESS, OTHER_RESULT, None])  # None: a comment


@st.composite
def _streams(draw: st.DrawFn) -> tuple[list[bytes], list[t.Any]]:
    """A backend's SSE stream cut into chunks anywhere, and the messages a
    client reading it directly would see."""
    end = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    lines = []
    for message in draw(st.lists(_EVENTS, min_size=1, max_size=6)):
        if message is None:
            lines += [": keep-alive", ""]
            continue
        if draw(st.booleans()):
            lines.append("event: message")
        pretty = draw(st.booleans())  # data over several lines
        text = json.dumps(message, indent=1 if pretty else None)
        lines += [f"data: {line}" for line in text.split("\n")] + [""]
    text = "".join(line + end for line in lines)
    stream = (BOM if draw(st.booleans()) else b"") + text.encode()
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [
        stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)
    ]
    return chunks, _messages(stream)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(_streams())
def test_any_chunking_of_any_framing_reaches_the_client_filtered(
    stream: tuple[list[bytes], list[t.Any]],
) -> None:
    chunks, direct = stream
    expected = [
        dict(LISTED, result={"tools": [{"name": "echo"}]}) if m == LISTED else m
        for m in direct
    ]
    assert _messages(_answer(chunks)) == expected
