"""JSON-RPC bodies, Mcp-Method/Mcp-Name against the body, tools/list filtering."""

from __future__ import annotations

import json

import pytest

from proxy.oauth.mcp_messages import HEADER_MISMATCH
from proxy.oauth.mcp_messages import HeaderMismatchError
from proxy.oauth.mcp_messages import check_headers
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


@pytest.mark.parametrize("body", [b"", b"not json", b"{", b"42", b'"x"'])
def test_a_body_that_is_not_json_rpc_gives_no_messages(body: bytes) -> None:
    assert parse_messages(body) == []


def test_a_call_without_a_name_is_still_a_call() -> None:
    """A nameless call must not slip past the policy as "no call"."""
    messages = [{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}]
    assert tool_calls(messages) == [(1, "")]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Mcp-Method": "tools/call"},
        {"Mcp-Method": "tools/call", "Mcp-Name": "echo"},
        {"Mcp-Name": "echo"},
    ],
)
def test_headers_that_agree_pass(headers: dict[str, str]) -> None:
    check_headers(headers, [CALL])


def test_mcp_name_of_a_resource_is_its_uri() -> None:
    check_headers({"Mcp-Method": "resources/read", "Mcp-Name": "f://x"}, [READ])


@pytest.mark.parametrize(
    "headers",
    [
        {"Mcp-Method": "tools/list"},
        {"Mcp-Name": "delete_repo"},
        {"Mcp-Method": "tools/call", "Mcp-Name": "delete_repo"},
    ],
)
def test_headers_that_disagree_are_a_header_mismatch(headers: dict[str, str]) -> None:
    """MCP 2026-07-28: a header that disagrees with the body is -32020."""
    with pytest.raises(HeaderMismatchError) as caught:
        check_headers(headers, [CALL])
    error = caught.value
    assert error.status_code == 400
    assert error.body() == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": HEADER_MISMATCH, "message": error.description},
    }
    assert error.headers()["Cache-Control"] == "no-store"


def test_a_batch_header_must_fit_every_message() -> None:
    with pytest.raises(HeaderMismatchError):
        check_headers({"Mcp-Name": "echo"}, [CALL, {**CALL, "params": {"name": "x"}}])


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
