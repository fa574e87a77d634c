"""Stream caps over real sockets: gunicorn (2 gevent workers), real Redis, the
demo MCP backend, and GET /mcp SSE streams held open by raw sockets.

A grant's (N+1)th stream is refused with 429 and Retry-After while another
grant still gets its stream; closing streams frees their slots (the client
hanging up is noticed while the stream is idle); and a killed worker's slots
free themselves once their leases end. Slots are read from Redis, where the
per-grant leases live; durations are printed, never asserted.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis
import requests

from .conftest import require_redis_server
from .gateway_stack import ACCEPT
from .gateway_stack import GatewayStack
from .gateway_stack import running_gateway
from .gateway_stack import scripted_tokens
from .gateway_stack import shared_services
from .test_gateway_flow import _initialize

PER_GRANT = 3
LEASE_SECONDS = 3
#: Bounds on waiting for Redis to show what a step did (not a measurement).
WAIT_SECONDS = 20.0


@pytest.fixture(scope="module")
def capped() -> Iterator[tuple[GatewayStack, redis.Redis, str]]:
    require_redis_server()
    prefix = f"caps-{uuid.uuid4().hex[:8]}:"
    overrides = {
        "MAX_STREAMS_PER_GRANT": str(PER_GRANT),
        "STREAM_LEASE_SECONDS": str(LEASE_SECONDS),
        "REDIS_KEY_PREFIX": prefix,
    }
    with shared_services() as services:
        client = redis.Redis.from_url(services.redis.url)
        with running_gateway(
            redis=services.redis, idp=services.idp, workers=2, overrides=overrides
        ) as stack:
            try:
                yield stack, client, prefix
            finally:
                client.close()


class Grant:
    def __init__(self, stack: GatewayStack, user: str) -> None:
        self.stack = stack
        self.token = scripted_tokens(stack.proxy_url, stack.mcp_url, user)[
            "access_token"
        ]
        payload = self.token.split(".")[1]
        padded = payload + "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
        self.grant_id = str(claims["sid"])

    def headers(self, session: str | None = None) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": ACCEPT,
            "Content-Type": "application/json",
            "MCP-Protocol-Version": "2025-06-18",
        }
        if session:
            headers["Mcp-Session-Id"] = session
        return headers

    def session(self) -> str:
        """A new MCP session (the backend allows one GET stream per session)."""
        url = self.stack.mcp_url
        init = requests.post(
            url, json=_initialize(), headers=self.headers(), timeout=10
        )
        assert init.status_code == 200, init.text
        session = init.headers["Mcp-Session-Id"]
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        done = requests.post(url, json=note, headers=self.headers(session), timeout=10)
        assert done.status_code == 202, done.text
        return session

    def raw_stream(self, session: str) -> socket.socket:
        """GET /mcp on a raw socket, left open; its answer is not awaited (the
        backend's first event on an idle stream comes after 15 s)."""
        parts = urlsplit(self.stack.mcp_url)
        sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        head = [f"GET {parts.path} HTTP/1.1", f"Host: {parts.netloc}"]
        head += [f"{k}: {v}" for k, v in self.headers(session).items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        return sock

    def get(self, session: str) -> requests.Response:
        headers = {**self.headers(session), "Accept": "text/event-stream"}
        return requests.get(
            self.stack.mcp_url, headers=headers, timeout=10, stream=True
        )


def _live(client: redis.Redis, prefix: str, grant: Grant) -> int:
    """Leases on the grant's slots that have not ended (Redis' own clock)."""
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    key = f"{prefix}streams:{{{grant.grant_id}}}"
    return int(client.zcount(key, f"({now_ms}", "+inf"))


def _until(what: str, check: Callable[[], bool]) -> float:
    """Seconds until ``check()`` held; fails after WAIT_SECONDS."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > WAIT_SECONDS:
            pytest.fail(f"not within {WAIT_SECONDS} s: {what}")
        time.sleep(0.05)
    took = time.monotonic() - started
    print(f"  {what}: {took * 1000:.0f} ms")
    return took


def test_grant_cap_refuses_then_frees_on_close(
    capped: tuple[GatewayStack, redis.Redis, str],
) -> None:
    stack, client, prefix = capped
    alice, bob = Grant(stack, "alice@example.com"), Grant(stack, "bob@example.com")
    sessions = [alice.session() for _ in range(PER_GRANT + 1)]
    print(f"\n{PER_GRANT} streams per grant, 2 workers:")
    held = [alice.raw_stream(s) for s in sessions[:PER_GRANT]]
    try:
        _until(f"alice holds {PER_GRANT}", lambda: _live(client, prefix, alice) == 3)
        started = time.monotonic()
        refused = alice.get(sessions[PER_GRANT])
        took = (time.monotonic() - started) * 1000
        print(
            f"  alice's stream {PER_GRANT + 1}: {refused.status_code} in {took:.0f} ms"
        )
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"] == "temporarily_unavailable"
        bobs = bob.raw_stream(bob.session())
        try:
            _until("bob holds 1", lambda: _live(client, prefix, bob) == 1)
        finally:
            bobs.close()
    finally:
        for sock in held:
            sock.close()
    _until("alice's closed streams freed", lambda: _live(client, prefix, alice) == 0)
    _until("bob's closed stream freed", lambda: _live(client, prefix, bob) == 0)
    again = alice.raw_stream(sessions[PER_GRANT])
    try:
        _until("alice streams again", lambda: _live(client, prefix, alice) == 1)
    finally:
        again.close()
    _until("and frees it", lambda: _live(client, prefix, alice) == 0)
    # A hang-up noticed while the relay waits on the backend ends it cleanly:
    # no greenlet dies closing a response another one is reading.
    output = stack.processes["proxy"].output(max_chars=2_000_000)
    assert "reentrant call" not in output
    assert "Traceback" not in output


def test_killed_workers_streams_free_themselves(
    capped: tuple[GatewayStack, redis.Redis, str],
) -> None:
    """SIGKILL runs no clean-up: the leases end STREAM_LEASE_SECONDS later."""
    stack, client, prefix = capped
    carol = Grant(stack, "carol@example.com")
    sessions = [carol.session() for _ in range(PER_GRANT)]
    held = [carol.raw_stream(s) for s in sessions]
    try:
        print(f"\nlease {LEASE_SECONDS} s:")
        _until(f"carol holds {PER_GRANT}", lambda: _live(client, prefix, carol) == 3)
        time.sleep(LEASE_SECONDS * 1.5)  # renewed meanwhile: still held
        assert _live(client, prefix, carol) == PER_GRANT
        proxy = stack.processes["proxy"]
        for pid in proxy.worker_pids():
            os.kill(pid, signal.SIGKILL)
        _until(
            "leases of the killed workers ended",
            lambda: _live(client, prefix, carol) == 0,
        )
    finally:
        for sock in held:
            sock.close()
    # gunicorn has restarted the workers: carol streams again.
    fresh = carol.session()
    again = carol.raw_stream(fresh)
    try:
        _until("carol streams again", lambda: _live(client, prefix, carol) == 1)
    finally:
        again.close()
