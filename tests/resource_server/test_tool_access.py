"""proxy/resource_server/tool_access.py: a tools/list answer, filtered as it streams.

The caller may call `echo` only; the backend lists `echo` and `delete_repo`.
Every way the answer can be framed must come out without `delete_repo`, or
as an error (fail closed), never as the backend's whole list.
"""

from __future__ import annotations

import gzip
import json
import re
import tracemalloc
import typing as t

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from proxy.resource_server.sse_events import BOM
from proxy.resource_server.sse_events import LATIN1_BOM
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


def _events(sse: bytes) -> list[tuple[str, str, t.Any]]:
    """(type, last event id, JSON data) of each event a client dispatches,
    read as the TypeScript SDK's pipeline reads it (so a framing fault loses
    or changes the event and the test sees it): a UTF-8 decoder drops one
    leading BOM, eventsource-parser one leading "ï»¿"; then WHATWG HTML
    §9.2.6: lines end in CRLF, LF or CR, a blank line dispatches, a field
    with no colon has an empty value, an event the stream ends inside is
    dropped."""
    text = sse.decode("utf-8").removeprefix("\ufeff").removeprefix("ï»¿")
    dispatched = []
    data: list[str] = []
    kind, last_id = "", ""
    *lines, _unended = re.split(r"\r\n|\r|\n", text)
    for line in lines:
        if not line:
            if data:
                message = _json_or_text("\n".join(data))
                dispatched.append((kind or "message", last_id, message))
            data, kind = [], ""
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                kind = value
            elif name == "id" and "\0" not in value:
                last_id = value
    return dispatched


def _json_or_text(data: str) -> t.Any:
    """The data as JSON if it is (a client parses it), else as it came."""
    try:
        return json.loads(data)
    except ValueError:
        return data


def _messages(sse: bytes) -> list[t.Any]:
    return [message for _, _, message in _events(sse)]


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
FILTERED = dict(LISTED, result={"tools": [{"name": "echo"}]})
_MESSAGES = st.sampled_from([LISTED, PROGRESS, OTHER_RESULT])


@st.composite
def _event_lines(draw: st.DrawFn) -> list[str]:
    """One event as a backend may write it: optional fields before its data,
    the JSON on one line or several, ``data:`` with or without its space, a
    bare ``data`` line (an empty value, so a line break in the JSON)."""
    lines = []
    if draw(st.booleans()):
        lines.append(draw(st.sampled_from(["event: message", "event:other"])))
    if draw(st.booleans()):
        lines.append(f"id: {draw(st.integers(0, 99))}")
    if draw(st.booleans()):
        lines.append("retry: 1000")
    text = json.dumps(draw(_MESSAGES), indent=1 if draw(st.booleans()) else None)
    for line in text.split("\n"):
        lines.append(draw(st.sampled_from(["data: ", "data:"])) + line)
        if draw(st.integers(0, 9)) == 0:
            lines.append("data")
    return lines


#: Leading marks: the ones a client skips all of, then ones it does not.
_SKIPPED_MARKS = ["", "\ufeff", "ï»¿", "\ufeffï»¿"]
_MORE_MARKS = ["\ufeff\ufeff", "ï»¿ï»¿", "\ufeffï»¿\ufeff", "ï»¿\ufeff"]


@st.composite
def _streams(draw: st.DrawFn) -> tuple[list[bytes], bytes, bytes]:
    """A backend's SSE stream cut into chunks anywhere, the stream whole, and
    the stream as the filter reads it (every leading mark skipped)."""
    end = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    lines = []
    for kind in draw(st.lists(st.sampled_from(["event", "comment"]), max_size=6)):
        lines += draw(_event_lines()) if kind == "event" else [": keep-alive"]
        lines += [""] * draw(st.integers(1, 2))
    if draw(st.booleans()):
        lines += draw(_event_lines())  # cut off by the end of the stream
    text = "".join(line + end for line in lines)
    mark = draw(st.sampled_from(_SKIPPED_MARKS + _MORE_MARKS))
    stream = (mark + text).encode()
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [
        stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)
    ]
    return chunks, stream, text.encode()


@settings(max_examples=1000, derandomize=True, deadline=None)
@given(_streams())
def test_any_chunking_of_any_framing_reaches_the_client_filtered(
    stream: tuple[list[bytes], bytes, bytes],
) -> None:
    """Events, their types and ids as a client reading the backend directly
    would see them; only the listed tools differ. Past marks a client would
    not all skip, the filter reads on (a client then shows no more than the
    filter read, and never the whole list)."""
    chunks, whole, past_the_marks = stream
    read = whole if _events(whole) == _events(past_the_marks) else past_the_marks
    expected = [
        (kind, last_id, FILTERED if message == LISTED else message)
        for kind, last_id, message in _events(read)
    ]
    assert _events(_answer(chunks)) == expected


@pytest.mark.parametrize(
    "mark", ["ï»¿".encode(), BOM + "ï»¿".encode()], ids=["latin1_mark", "both"]
)
@pytest.mark.parametrize("split", [False, True])
def test_a_mark_eventsource_parser_skips_does_not_hide_the_first_event(
    mark: bytes, split: bool
) -> None:
    """eventsource-parser drops a leading "ï»¿" (a BOM read as Latin-1)."""
    stream = mark + b"data: " + RESULT + b"\n\n"
    chunks = [stream[:4], stream[4:]] if split else [stream]
    answer = _answer(chunks)
    assert b"delete_repo" not in answer
    assert _messages(answer) == [FILTERED]


def test_a_resumed_stream_filters_every_result_listing_tools() -> None:
    """On a GET stream the TypeScript SDK gives a replayed answer the id of
    the request it resumes, so no id can be trusted to be another's."""
    resumed = ToolAccess(may_call=lambda name: name == "echo", any_result=True)
    replayed = dict(LISTED, id=41)
    body, _ = resumed.response(
        iter([b"id: 9\ndata: " + json.dumps(replayed).encode() + b"\n\n"]), SSE
    )
    assert _messages(b"".join(body)) == [dict(FILTERED, id=41)]


@pytest.mark.parametrize(
    ("content_type", "framing"),
    [
        ("application/json-seq", "json"),
        ("Application/JSON; charset=utf-8", "json"),
        ("text/event-streamx", "sse"),
    ],
)
def test_a_content_type_a_client_would_read_is_read_as_it_would(
    content_type: str, framing: str
) -> None:
    """The Python SDK takes what starts with application/json as JSON, the
    TypeScript SDK what contains text/event-stream as SSE."""
    headers = [("Content-Type", content_type)]
    if framing == "json":
        answer = _answer([RESULT], headers)
        assert json.loads(answer) == FILTERED
    else:
        answer = _answer([b"data: " + RESULT + b"\n\n"], headers)
        assert _messages(answer) == [FILTERED]


def test_a_content_type_naming_both_framings_is_refused() -> None:
    headers = [("Content-Type", "application/json; x=text/event-stream")]
    answer = _answer([RESULT], headers)
    assert b"delete_repo" not in answer
    _only_echo_or_an_error(_messages(answer))


@pytest.mark.parametrize("framing", ["sse", "json"])
def test_an_answer_too_large_to_filter_answers_every_listing_with_an_error(
    framing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client waits for each id it sent: each tools/list gets its error."""
    monkeypatch.setattr("proxy.resource_server.tool_access.MAX_TOOLS_LIST_BYTES", 64)
    batch = ToolAccess(list_ids=[1, 2], may_call=lambda name: name == "echo")
    big = json.dumps([LISTED, dict(LISTED, id=2)]).encode()
    headers = SSE if framing == "sse" else JSON
    body, _ = batch.response(
        iter([b"data: " + big if framing == "sse" else big]), headers
    )
    answer = b"".join(body)
    errors = _messages(answer) if framing == "sse" else json.loads(answer)
    assert [(e["id"], e["error"]["code"]) for e in errors] == [(1, -32603), (2, -32603)]


@pytest.mark.parametrize(
    "marks", [BOM + BOM, LATIN1_BOM + LATIN1_BOM, BOM + LATIN1_BOM + BOM]
)
def test_marks_a_client_would_not_all_skip_are_read_past_too(marks: bytes) -> None:
    """What the filter left in front would be the client's to skip: the
    client would then read a list the filter never saw."""
    answer = _answer([marks + b"data: " + RESULT + b"\n\n"])
    assert b"delete_repo" not in answer
    assert _messages(answer) == [FILTERED]


RESUMED = ToolAccess(may_call=lambda name: name == "echo", any_result=True)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json"])
def test_a_get_streams_answer_is_read_as_sse_whatever_its_type(
    content_type: str | None,
) -> None:
    """The TypeScript SDK reads a 2xx GET body as SSE without looking."""
    headers = [] if content_type is None else [("Content-Type", content_type)]
    stream = b"data: " + json.dumps(dict(LISTED, id=41)).encode() + b"\n\n"
    body, _ = RESUMED.response(iter([stream]), headers, 200)
    assert _messages(b"".join(body)) == [dict(FILTERED, id=41)]


def test_a_get_refused_by_the_backend_passes_as_it_came() -> None:
    error = b'{"error":"method not allowed"}'
    body, _ = RESUMED.response(iter([error]), [("Content-Type", "text/plain")], 405)
    assert b"".join(body) == error


@pytest.mark.parametrize("charset", ["utf-16", "cp037", "utf-7"])
def test_an_event_stream_in_another_charset_lists_nothing(charset: str) -> None:
    """The Python SDK decodes SSE in the charset named; the filter reads UTF-8."""
    stream = ("data: " + RESULT.decode() + "\n\n").encode(charset)
    headers = [("Content-Type", f"text/event-stream; charset={charset}")]
    answer = _answer([stream], headers)
    assert _messages(answer) == [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "error": {"code": -32603, "message": "The tool list is unavailable."},
        }
    ]


def test_an_event_stream_declared_utf_8_is_filtered() -> None:
    headers = [("Content-Type", "text/event-stream; charset=UTF-8")]
    assert _messages(_answer([b"data: " + RESULT + b"\n\n"], headers)) == [FILTERED]


def test_bytes_that_are_not_utf_8_are_read_as_a_client_reads_them() -> None:
    """Both SDKs decode with U+FFFD in place: a stray byte neither hides a
    list from the filter nor turns a notification into an error."""
    listed = RESULT.replace(b'"echo"}', b'"echo", "title": "caf\xe9"}')
    note = b'{"jsonrpc":"2.0","method":"notifications/message","params":{"d":"\xff"}}'
    answer = _answer([b"data: " + listed + b"\n\ndata: " + note + b"\n\n"])
    assert b"delete_repo" not in answer
    first, second = _events(answer.replace(b"\xff", b"?"))
    assert [tool["name"] for tool in first[2]["result"]["tools"]] == ["echo"]
    assert answer.endswith(b"data: " + note + b"\n\n")  # passed as it came
    assert second[2]["method"] == "notifications/message"


@pytest.mark.parametrize("framing", ["sse", "json"])
def test_unreadable_data_that_names_no_tools_passes_as_it_came(framing: str) -> None:
    """Nested past Python's limit, Node reads it: a notification or a
    server's request without a `tools` member cannot be a list, and
    replacing it would break the client's session for nothing."""
    deep = b'{"jsonrpc":"2.0","method":"n","params":' + b"[" * 3000 + b"]" * 3000 + b"}"
    if framing == "sse":
        assert _answer([b"data: " + deep + b"\n\n"]) == b"data: " + deep + b"\n\n"
    else:
        assert _answer([deep], JSON) == deep


def test_a_compressed_answer_is_inflated_a_step_at_a_time() -> None:
    """100 MB of zeros in 100 KB of gzip: refused as too large before it is
    held in memory whole."""
    bomb = gzip.compress(b'{"jsonrpc":"2.0","id":1,"result":{"tools":[' + b" " * 10**8)
    headers = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
    tracemalloc.start()
    try:
        answer = _answer([bomb], headers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert json.loads(answer)["error"]["code"] == -32603
    assert peak < 40 * 1024 * 1024, peak


def test_a_second_content_type_is_read_as_clients_join_it() -> None:
    """fetch and httpx join repeated values: the TypeScript SDK would read
    "application/octet-stream, text/event-stream" as SSE."""
    headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Type", "text/event-stream"),
    ]
    answer = _answer([b"data: " + RESULT + b"\n\n"], headers)
    assert _messages(answer) == [FILTERED]
