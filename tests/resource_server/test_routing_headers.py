"""proxy/resource_server/routing_headers.py: Mcp-Method/Mcp-Name against the body."""

from __future__ import annotations

import json

import pytest

from proxy.resource_server.jsonrpc_errors import HEADER_MISMATCH
from proxy.resource_server.jsonrpc_errors import HeaderMismatchError
from proxy.resource_server.jsonrpc_errors import UnreadableRequestError
from proxy.resource_server.routing_headers import check_routing_headers
from proxy.resource_server.routing_headers import decode_header_value
from proxy.resource_server.routing_headers import read_routing_headers


def _body(method: str, **params: object) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    ).encode()


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ([], _body("tools/call", name="echo")),
        (
            [("Mcp-Method", "tools/call"), ("Mcp-Name", "echo")],
            _body("tools/call", name="echo"),
        ),
        (
            [("mcp-method", "resources/read"), ("mcp-name", "file:///a")],
            _body("resources/read", uri="file:///a"),
        ),
        (
            [("Mcp-Method", "prompts/get"), ("Mcp-Name", "=?base64?aMOpbGxv?=")],
            _body("prompts/get", name="héllo"),
        ),
        ([("Mcp-Method", "tools/list")], _body("tools/list")),
        # A name header on a method that names nothing is not compared.
        ([("Mcp-Method", "tools/list"), ("Mcp-Name", "x")], _body("tools/list")),
        # JSON but no JSON-RPC object: the backend answers the error.
        ([("Mcp-Method", "tools/call")], b"42"),
        # No routing header: nothing to compare, whatever the body.
        ([], b"{not json"),
        # No body (a GET stream, a DELETE): no message to compare.
        ([("Mcp-Method", "tools/call")], b""),
    ],
)
def test_agreeing_or_absent_headers_pass(
    headers: list[tuple[str, str]], body: bytes
) -> None:
    check_routing_headers(headers, body)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ([("Mcp-Method", "tools/list")], _body("tools/call", name="echo")),
        (
            [("Mcp-Method", "tools/call"), ("Mcp-Name", "whoami")],
            _body("tools/call", name="echo"),
        ),
        ([("Mcp-Name", "other")], _body("resources/read", uri="file:///a")),
        (
            [("Mcp-Method", "tools/call")],
            json.dumps({"jsonrpc": "2.0", "id": 7}).encode(),
        ),
        (
            [("Mcp-Method", "tools/call"), ("Mcp-Method", "tools/call")],
            _body("tools/call", name="echo"),
        ),
        (
            [("Mcp-Method", "tools/call"), ("Mcp-Name", "=?base64?!!?=")],
            _body("tools/call", name="echo"),
        ),
    ],
)
def test_disagreeing_headers_are_header_mismatch(
    headers: list[tuple[str, str]], body: bytes
) -> None:
    with pytest.raises(HeaderMismatchError) as caught:
        check_routing_headers(headers, body)
    assert caught.value.code == HEADER_MISMATCH == -32020
    assert caught.value.status_code == 400


def test_mismatch_keeps_the_request_id() -> None:
    with pytest.raises(HeaderMismatchError) as caught:
        check_routing_headers([("Mcp-Method", "x")], _body("tools/list"))
    assert json.loads(caught.value.body())["id"] == 7


@pytest.mark.parametrize(
    ("value", "decoded"),
    [
        ("plain", "plain"),
        ("=?base64?aMOpbGxv?=", "héllo"),
        ("=?base64?not base64?=", None),
        ("=?base64?aGk=x?=", None),
        ("=?base64?/w==?=", None),  # not UTF-8
    ],
)
def test_decode_header_value(value: str, decoded: str | None) -> None:
    assert decode_header_value(value) == decoded


def test_a_method_header_with_a_comma_is_two_copies_joined() -> None:
    """gunicorn joins a repeated header with ','; no MCP method has one."""
    joined = [("Mcp-Method", "tools/call,tools/list")]
    with pytest.raises(HeaderMismatchError) as caught:
        read_routing_headers(joined)
    assert caught.value.reason == "duplicate_header"
    with pytest.raises(HeaderMismatchError):
        check_routing_headers(joined, _body("tools/call", name="echo"))


def test_read_routing_headers_says_what_was_sent() -> None:
    sent = read_routing_headers([("MCP-METHOD", "tools/call"), ("mcp-name", "e")])
    assert (sent.method, sent.name, sent.sent) == ("tools/call", "e", True)
    assert not read_routing_headers([("Accept", "*/*")]).sent


def test_routing_headers_with_a_batch_are_header_mismatch() -> None:
    """The headers name one message; a batch could carry another beside it."""
    batch = json.dumps(
        [{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}}]
    ).encode()
    with pytest.raises(HeaderMismatchError) as caught:
        check_routing_headers([("Mcp-Method", "tools/list")], batch)
    assert caught.value.code == HEADER_MISMATCH
    assert caught.value.status_code == 400
    # Without routing headers a batch is the body's business alone.
    check_routing_headers([], batch)


def test_a_byte_order_mark_does_not_hide_the_body_from_the_comparison() -> None:
    with pytest.raises(HeaderMismatchError):
        check_routing_headers(
            [("Mcp-Method", "tools/call"), ("Mcp-Name", "echo")],
            b"\xef\xbb\xbf" + _body("tools/call", name="delete_repo"),
        )


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","x":'
        + b"[" * 3000
        + b"]" * 3000
        + b"}",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","n":' + b"9" * 5000 + b"}",
    ],
    ids=["not_json", "deep", "long_number"],
)
def test_routing_headers_with_a_body_that_cannot_be_read_are_a_parse_error(
    body: bytes,
) -> None:
    """Node reads the deep and the long one: the headers cannot be checked
    against what the backend would run, so they are not let through."""
    with pytest.raises(UnreadableRequestError) as raised:
        check_routing_headers([("Mcp-Method", "tools/list")], body)
    assert raised.value.status_code == 400
    assert raised.value.code == -32700
