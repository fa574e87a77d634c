"""proxy/resource_server/relay.py: how a request reaches the backend."""

from __future__ import annotations

import typing as t

import pytest
import urllib3

from proxy.config.settings import Settings
from proxy.resource_server import relay


class _RecordingSocket:
    """What a connection writes, write by write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def settimeout(self, _: float | None) -> None:
        return None


def _connection(body: t.Any, **options: t.Any) -> list[bytes]:
    conn = relay.OneSendHTTPConnection("backend.test", 80)
    sock = _RecordingSocket()
    conn.sock = t.cast(t.Any, sock)
    headers = {"Accept": "application/json"}
    conn.request("POST", "/mcp", body=body, headers=headers, **options)
    return sock.writes


def test_a_request_with_a_body_is_one_write() -> None:
    writes = _connection(b'{"jsonrpc": "2.0"}')
    assert len(writes) == 1
    head, _, body = writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /mcp HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 18" in head
    assert body == b'{"jsonrpc": "2.0"}'


def test_a_request_without_a_body_still_sends_its_head() -> None:
    writes = _connection(None)
    assert len(writes) == 1
    assert writes[0].startswith(b"POST /mcp HTTP/1.1\r\n")
    assert writes[0].endswith(b"\r\n\r\n")


def test_a_large_body_is_not_copied_into_its_heads_write() -> None:
    body = b"x" * (relay.ONE_SEND_MAX_BODY + 1)
    writes = _connection(body)
    assert len(writes) == 2
    assert writes[0].endswith(b"\r\n\r\n")
    assert writes[1] == body


def test_a_chunked_body_is_sent_as_before() -> None:
    writes = _connection(iter([b"abc", b"de"]), chunked=True)
    assert writes[0].startswith(b"POST /mcp HTTP/1.1\r\n")
    assert writes[0].endswith(b"\r\n\r\n")
    assert b"\r\nTransfer-Encoding: chunked\r\n" in writes[0]
    assert b"".join(writes).endswith(b"\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")


@pytest.mark.parametrize(
    ("url", "connection"),
    [
        ("http://127.0.0.1:8001/mcp", relay.OneSendHTTPConnection),
        ("https://mcp.example.com/mcp", relay.OneSendHTTPSConnection),
    ],
)
def test_backend_pools_use_one_write_connections(
    url: str, connection: type, settings: Settings
) -> None:
    pool = relay.backend_pool(settings, url)
    assert pool.ConnectionCls is connection
    assert isinstance(pool, urllib3.HTTPConnectionPool)
