"""Streams start at once and end with their client: gunicorn (2 workers), real
Redis, the demo MCP backend behind a TCP tap that times the gateway's backend
connection (tests/e2e/tcp_tap.py).

A GET stream's backend sends its headers at once and its first event (a ping)
only after 15 s, so these tests can tell "headers relayed as they came" from
"headers relayed with the first event", and "the relay noticed the client
left" from "the relay noticed at the backend's next ping". Durations are
printed, never asserted.
"""

from __future__ import annotations

import socket
import time
import typing as t
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from support.processes import ManagedProcess
from support.processes import start_demo_backend

from .conftest import require_redis_server
from .gateway_stack import ACCEPT
from .gateway_stack import GatewayStack
from .gateway_stack import running_gateway
from .gateway_stack import scripted_tokens
from .gateway_stack import shared_services
from .tcp_tap import Connection
from .tcp_tap import TcpTap

PROTOCOL = "2025-11-25"
#: Bounds on waiting for a step (not a measurement, never the assertion).
WAIT_SECONDS = 12.0
#: STREAM_IDLE_TIMEOUT_SECONDS of these gateways: well below the backend's
#: 15 s between pings, well above what the other tests need.
IDLE_SECONDS = 3


def _initialize() -> dict[str, t.Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "timing", "version": "1"},
        },
    }


class Tapped(t.NamedTuple):
    stack: GatewayStack
    backend: ManagedProcess
    tap: TcpTap
    token: str


@pytest.fixture(scope="module", params=["gevent", "gthread"])
def tapped(request: pytest.FixtureRequest) -> Iterator[Tapped]:
    """The gateway as deployed (gevent) and with gunicorn's gthread worker."""
    require_redis_server()
    overrides = {"STREAM_IDLE_TIMEOUT_SECONDS": str(IDLE_SECONDS)}
    if request.param == "gthread":
        overrides["GUNICORN_CMD_ARGS"] = "--worker-class gthread --threads 8"
    with shared_services() as services:
        backend = start_demo_backend()
        parts = urlsplit(backend.url)
        tap = TcpTap(t.cast(str, parts.hostname), t.cast(int, parts.port))
        try:
            with running_gateway(
                redis=services.redis,
                idp=services.idp,
                workers=2,
                backend_url=f"http://127.0.0.1:{tap.port}/mcp",
                overrides=overrides,
            ) as stack:
                token = scripted_tokens(stack.proxy_url, stack.mcp_url, "t@example.com")
                yield Tapped(stack, backend, tap, token["access_token"])
        finally:
            tap.close()
            backend.close()


def _headers(token: str | None, session: str | None = None) -> dict[str, str]:
    headers = {
        "Accept": ACCEPT,
        "Content-Type": "application/json",
        "MCP-Protocol-Version": PROTOCOL,
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if session:
        headers["Mcp-Session-Id"] = session
    return headers


def _session(url: str, token: str | None) -> str:
    init = requests.post(url, json=_initialize(), headers=_headers(token), timeout=10)
    assert init.status_code == 200, init.text
    session = init.headers["Mcp-Session-Id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    done = requests.post(url, json=note, headers=_headers(token, session), timeout=10)
    assert done.status_code == 202, done.text
    return session


def _open_get(url: str, token: str | None, session: str) -> tuple[socket.socket, float]:
    """GET the server's stream on a raw socket; (socket, seconds to the head)."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=WAIT_SECONDS)
    head = [f"GET {parts.path} HTTP/1.1", f"Host: {parts.netloc}"]
    headers = {**_headers(token, session), "Accept": "text/event-stream"}
    head += [f"{k}: {v}" for k, v in headers.items()]
    try:
        started = time.monotonic()
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        received = b""
        while b"\r\n\r\n" not in received:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                pytest.fail(f"no response head within {WAIT_SECONDS} s")
            assert chunk, "connection closed before the response head"
            received += chunk
        took = time.monotonic() - started
        assert received.startswith(b"HTTP/1.1 200"), received[:200]
        assert b"text/event-stream" in received.lower()
    except BaseException:
        sock.close()
        raise
    return sock, took


def _stream_connection(tap: TcpTap, session: str) -> Connection:
    """The gateway's backend connection carrying the GET stream of ``session``."""
    carrying = tap.matching(session.encode())
    [conn] = [c for c in carrying if c.request_head.startswith(b"GET ")]
    return conn


def _until_closed(conn: Connection) -> float:
    started = time.monotonic()
    while conn.gateway_closed_at is None:
        if time.monotonic() - started > WAIT_SECONDS + 6:
            pytest.fail("the gateway never closed its backend connection")
        time.sleep(0.01)
    return conn.gateway_closed_at


def test_stream_headers_arrive_before_the_backends_first_event(
    tapped: Tapped,
) -> None:
    """The GET stream's head is relayed as the backend sends it, not with the
    backend's first event (a ping 15 s later)."""
    direct_session = _session(tapped.backend.url, None)
    direct, direct_took = _open_get(tapped.backend.url, None, direct_session)
    direct.close()

    session = _session(tapped.stack.mcp_url, tapped.token)
    sock, took = _open_get(tapped.stack.mcp_url, tapped.token, session)
    try:
        conn = _stream_connection(tapped.tap, session)
        assert conn.head_at is not None
        # The backend has sent its head, and no event yet: the client already
        # has the response head.
        assert conn.first_body_at is None
        print(
            f"\ntime to headers: direct {direct_took * 1000:.1f} ms, "
            f"through the gateway {took * 1000:.1f} ms"
        )
    finally:
        sock.close()


def test_client_hanging_up_closes_the_backend_connection(tapped: Tapped) -> None:
    """An idle stream whose client leaves is ended at once: the gateway closes
    its backend connection before the backend's next event would tell it, and
    before the idle timeout would have ended the stream."""
    session = _session(tapped.stack.mcp_url, tapped.token)
    sock, _ = _open_get(tapped.stack.mcp_url, tapped.token, session)
    conn = _stream_connection(tapped.tap, session)
    time.sleep(0.3)  # the relay is now blocked on the idle backend stream
    left_at = time.monotonic()
    sock.close()
    closed_at = _until_closed(conn)
    # Noticed without a backend event: nothing came from the backend between.
    assert conn.first_body_at is None or conn.first_body_at > closed_at
    # And not ended by the idle timeout either (which would also close it).
    assert conn.head_at is not None
    assert closed_at < conn.head_at + IDLE_SECONDS
    print(
        f"\nclient gone -> backend connection closed: "
        f"{(closed_at - left_at) * 1000:.1f} ms"
    )


def test_a_stream_idle_past_the_timeout_is_ended(tapped: Tapped) -> None:
    """No byte from the backend for STREAM_IDLE_TIMEOUT_SECONDS: the gateway
    ends the client's stream (the chunked body's last chunk) and closes the
    backend connection, both before the backend's first ping."""
    session = _session(tapped.stack.mcp_url, tapped.token)
    sock, _ = _open_get(tapped.stack.mcp_url, tapped.token, session)
    conn = _stream_connection(tapped.tap, session)
    opened_at = time.monotonic()
    try:
        sock.settimeout(WAIT_SECONDS)
        body = b""
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            body += chunk
        ended_at = time.monotonic()
    finally:
        sock.close()
    closed_at = _until_closed(conn)
    assert body.endswith(b"0\r\n\r\n") or body == b""
    assert conn.first_body_at is None or conn.first_body_at > closed_at
    print(
        f"\nidle stream ({IDLE_SECONDS} s timeout) ended after "
        f"{ended_at - opened_at:.2f} s"
    )
