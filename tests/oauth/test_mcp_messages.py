"""JSON-RPC bodies, Mcp-Method/Mcp-Name against the body, tools/list filtering."""

from __future__ import annotations

import json

import pytest

from proxy.oauth import mcp_messages
from proxy.oauth.mcp_messages import UnreadableBodyError
from proxy.oauth.mcp_messages import answers
from proxy.oauth.mcp_messages import filter_tools_result
from proxy.oauth.mcp_messages import parse_messages
from proxy.oauth.mcp_messages import tool_calls
from proxy.oauth.mcp_messages import tools_list_ids

CALL = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo"}}
READ = {
    "jsonrpc": "2.0",
    "id": 8,
    "method": "resources/read",
    "params": {"uri": "f://x"},
}
LIST = {"jsonrpc": "2.0", "id": 9, "method": "tools/list"}


def test_a_batch_gives_every_call() -> None:
    messages = parse_messages(json.dumps([CALL, LIST, {**CALL, "id": 10}]).encode())
    assert tool_calls(messages) == [(7, "echo"), (10, "echo")]
    assert tools_list_ids(messages) == [9]


@pytest.mark.parametrize("body", [b"", b"  ", b"42", b'"x"', b"[1, 2]"])
def test_json_that_is_not_json_rpc_gives_no_messages(body: bytes) -> None:
    assert parse_messages(body) == []


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{", b"[" * 3000 + b"]" * 3000, b'{"n": ' + b"9" * 5000 + b"}"],
    ids=["text", "cut", "deep", "long_number"],
)
def test_a_body_that_is_not_readable_json_raises(body: bytes) -> None:
    """What this parser cannot read, another (Node's) might: the caller
    refuses it where rules apply, never treats it as "no call"."""
    with pytest.raises(UnreadableBodyError):
        parse_messages(body)


def test_a_byte_order_mark_is_read_past() -> None:
    body = b"\xef\xbb\xbf" + json.dumps(CALL).encode()
    assert tool_calls(parse_messages(body)) == [(7, "echo")]


def test_a_call_without_a_name_is_still_a_call() -> None:
    """A nameless call must not slip past the policy as "no call"."""
    messages = [{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}]
    assert tool_calls(messages) == [(1, "")]


def test_filter_drops_tools_the_caller_may_not_call() -> None:
    result = {
        "jsonrpc": "2.0",
        "id": 9,
        "result": {"tools": [{"name": "echo"}, {"name": "delete_repo"}, {"x": 1}]},
    }
    assert filter_tools_result(result, [9], lambda name: name == "echo")
    assert result["result"] == {"tools": [{"name": "echo"}]}


def test_filter_leaves_other_responses_alone() -> None:
    other = {"jsonrpc": "2.0", "id": 3, "result": {"tools": [{"name": "x"}]}}
    assert not filter_tools_result(other, [9], lambda name: False)
    assert other["result"]["tools"] == [{"name": "x"}]


@pytest.mark.parametrize(
    ("response_id", "request_id", "matches"),
    [
        (1, 1, True),
        ("1", 1, True),
        (" 1\n", 1, True),
        ("1e0", 1, True),
        ("0x1", 1, True),
        ("", 0, True),  # Number("") is 0
        (1, "1", True),
        ("a", "a", True),
        ("2", 1, False),
        ("one", 1, False),
        (None, 1, False),
        ("nan", 1, False),
        ([1], 1, False),
        ("0x" + "f" * 400, 1, False),  # too large for a float: no match, no error
        ("\ufeff1", 1, True),  # JavaScript trims U+FEFF, Python's strip() does not
        (2, 10**400, False),  # an id past 1.8e308: no OverflowError
        (10**400, 10**401, True),  # both Infinity to JSON.parse
        (2**53 + 1, 2**53, True),  # JSON.parse rounds both to 2**53
    ],
)
def test_a_response_answers_the_requests_a_typescript_client_would_match(
    response_id: object, request_id: object, matches: bool
) -> None:
    assert answers(response_id, request_id) is matches


def test_a_body_is_parsed_once_however_often_it_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[bytes] = []
    read_json = mcp_messages.read_json
    monkeypatch.setattr(
        mcp_messages, "read_json", lambda raw: calls.append(raw) or read_json(raw)
    )
    body = mcp_messages.Body(json.dumps(CALL).encode())
    assert calls == []  # nothing parsed until a rule reads it
    assert parse_messages(body) == [CALL]
    assert body.json() == CALL
    assert len(calls) == 1
    unreadable = mcp_messages.Body(b"{not json")
    for _ in range(2):
        with pytest.raises(UnreadableBodyError):
            unreadable.json()
