"""proxy/resource_server/tool_access.py: a tools/list answer, filtered as it streams.

The caller may call `echo` only; the backend lists `echo` and `delete_repo`.
Every way the answer can be framed must come out without `delete_repo`, or
as an error (fail closed), never as the backend's whole list.
"""

from __future__ import annotations

import json
import typing as t

import pytest

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
    lines = sse.replace(b"\r\n", b"\n").split(b"\n")
    return [json.loads(line[5:]) for line in lines if line.startswith(b"data:")]


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
