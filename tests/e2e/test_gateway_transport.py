"""Both MCP revisions through the gateway, end to end: gunicorn (2 workers), real
Redis, the IdP, and the demo MCP server behind the proxy's /mcp.

- 2025-11-25 (the `mcp` package's Client pinned to the initialize handshake):
  a session, tools listed and called, progress streamed as it happens;
- 2026-07-28 (the same package, pinned to the stateless revision: every POST
  carries `Mcp-Method`/`Mcp-Name` and `x-mcp-header` values as
  `Mcp-Param-*`): `server/discover`, tools, progress, and a
  `subscriptions/listen` stream that receives a tools list-changed event;
- sessions bound to their owner: another client's token presenting a session
  id gets 404, and the session still works for its owner;
- stream caps: past the grant's cap 429, past the worker's 503, both with
  Retry-After, while discovery, the token endpoint and another grant's tool
  call still answer.
"""

from __future__ import annotations

import socket
import time
import typing as t
from collections.abc import Iterator
from urllib.parse import urlsplit

import anyio
import httpx2
import pytest
import requests
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.subscriptions import ToolsListChanged

from .conftest import require_redis_server
from .gateway_stack import ACCEPT
from .gateway_stack import GatewayStack
from .gateway_stack import rpc_messages
from .gateway_stack import running_gateway
from .gateway_stack import scripted_tokens
from .gateway_stack import shared_services

TIMEOUT = 20.0
PER_GRANT = 2
PER_WORKER = 3
LEGACY = "2025-11-25"
MODERN = "2026-07-28"


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayStack]:
    require_redis_server()
    overrides = {
        "MAX_STREAMS_PER_GRANT": str(PER_GRANT),
        "MAX_STREAMS": str(PER_WORKER),
    }
    with shared_services() as services:
        with running_gateway(
            redis=services.redis, idp=services.idp, workers=2, overrides=overrides
        ) as stack:
            yield stack


class User:
    """One authorization (grant) through the gateway: its tokens and client id."""

    def __init__(self, stack: GatewayStack, email: str) -> None:
        self.stack = stack
        self.tokens = scripted_tokens(stack.proxy_url, stack.mcp_url, email)
        self.token = self.tokens["access_token"]

    def headers(self, session: str | None = None, **extra: str) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": ACCEPT,
            "Content-Type": "application/json",
            "MCP-Protocol-Version": LEGACY,
            **extra,
        }
        if session:
            headers["Mcp-Session-Id"] = session
        return headers

    def http(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=httpx2.Timeout(TIMEOUT),
        )

    def session(self) -> str:
        init = requests.post(
            self.stack.mcp_url,
            json=_initialize(),
            headers=self.headers(),
            timeout=TIMEOUT,
        )
        assert init.status_code == 200, init.text
        session = init.headers["Mcp-Session-Id"]
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        done = requests.post(
            self.stack.mcp_url,
            json=note,
            headers=self.headers(session),
            timeout=TIMEOUT,
        )
        assert done.status_code == 202, done.text
        return session

    def echo(self, text: str, session: str | None = None) -> requests.Response:
        return requests.post(
            self.stack.mcp_url,
            json={
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": text}},
            },
            headers=self.headers(session),
            timeout=TIMEOUT,
        )


def _initialize() -> dict[str, t.Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": {"name": "e2e", "version": "1"},
        },
    }


def _echoed(response: requests.Response) -> str:
    assert response.status_code == 200, response.text
    message = rpc_messages(response.headers["Content-Type"], response.text)[-1]
    return str(message["result"]["content"][0]["text"])


def _text(result: t.Any) -> str:
    assert not result.is_error, result.content
    return str(getattr(result.content[0], "text", ""))


# --------------------------------------------------------------------------- #
# The mcp package's client, pinned to each revision
# --------------------------------------------------------------------------- #


def test_sdk_client_pinned_to_2025_11_25(gateway: GatewayStack) -> None:
    """Initialize handshake, a session, tools, and progress streamed as it comes."""
    alice = User(gateway, "alice@example.com")
    progress: list[tuple[float, float]] = []

    async def on_progress(value: float, total: float | None, message: str | None):
        progress.append((value, time.monotonic()))

    async def run() -> tuple[str, list[str], str, float]:
        async with (
            alice.http() as http,
            Client(
                streamable_http_client(gateway.mcp_url, http_client=http),
                mode="legacy",
            ) as client,
        ):
            tools = [tool.name for tool in (await client.list_tools()).tools]
            counted = _text(
                await client.call_tool(
                    "count",
                    {"to": 4, "delay_seconds": 0.3},
                    progress_callback=on_progress,
                )
            )
            return client.protocol_version, tools, counted, time.monotonic()

    version, tools, counted, result_at = anyio.run(run)
    assert version == LEGACY
    assert {"echo", "count", "region_echo", "add_note"} <= set(tools)
    assert counted == "counted to 4"
    assert [value for value, _ in progress] == [1, 2, 3, 4]
    # Streamed while the call ran, not in one burst with the result.
    assert progress[-1][1] - progress[0][1] >= 0.6
    assert all(at < result_at for _, at in progress)


def test_sdk_client_on_2026_07_28(gateway: GatewayStack) -> None:
    """server/discover, then stateless POSTs with Mcp-Method/Mcp-Name and
    Mcp-Param-* headers, relayed unchanged; a subscriptions/listen stream gets
    the list-changed event."""
    bob = User(gateway, "bob@example.com")
    sent: list[httpx2.Request] = []
    progress: list[float] = []

    async def record(request: httpx2.Request) -> None:
        sent.append(request)

    async def on_progress(value: float, total: float | None, message: str | None):
        progress.append(value)

    async def run() -> dict[str, t.Any]:
        http = bob.http()
        http.event_hooks["request"].append(record)
        async with (
            http,
            Client(
                streamable_http_client(gateway.mcp_url, http_client=http),
                mode="auto",  # probes server/discover, then adopts 2026-07-28
            ) as client,
        ):
            out: dict[str, t.Any] = {"version": client.protocol_version}
            out["tools"] = [tool.name for tool in (await client.list_tools()).tools]
            out["echo"] = _text(await client.call_tool("echo", {"text": "modern"}))
            region = await client.call_tool("region_echo", {"region": "eu-west"})
            out["region"] = region.structured_content
            out["count"] = _text(
                await client.call_tool(
                    "count",
                    {"to": 3, "delay_seconds": 0.1},
                    progress_callback=on_progress,
                )
            )
            with anyio.fail_after(TIMEOUT):
                async with client.listen(tools_list_changed=True) as subscription:
                    await client.call_tool("add_note", {"text": "hello"})
                    out["event"] = await subscription.__anext__()
            return out

    out = anyio.run(run)
    assert out["version"] == MODERN
    assert {"echo", "region_echo", "add_note"} <= set(out["tools"])
    assert out["echo"] == "modern"
    # The x-mcp-header value reached the backend as its Mcp-Param-Region header.
    assert out["region"] == {"region": "eu-west", "header": "eu-west"}
    assert out["count"] == "counted to 3"
    assert progress == [1, 2, 3]
    assert isinstance(out["event"], ToolsListChanged)
    # What the client sent: no session, the routing headers on every POST.
    posts = [r for r in sent if r.method == "POST"]
    assert posts
    assert all("mcp-session-id" not in r.headers for r in posts)
    methods = {r.headers.get("mcp-method") for r in posts}
    assert {"server/discover", "tools/list", "tools/call"} <= methods
    assert "subscriptions/listen" in methods
    calls = [r for r in posts if r.headers.get("mcp-method") == "tools/call"]
    assert {r.headers.get("mcp-name") for r in calls} >= {"echo", "region_echo"}


# --------------------------------------------------------------------------- #
# Sessions bound to their owner
# --------------------------------------------------------------------------- #


def test_another_clients_token_with_my_session_is_404(gateway: GatewayStack) -> None:
    """RS-5: B's valid token with A's session id is answered as an unknown
    session (404), for POST, GET and DELETE alike; A's session still works."""
    alice, mallory = User(gateway, "carol@example.com"), User(gateway, "m@example.com")
    session = alice.session()

    stolen = mallory.echo("hijack", session)
    assert stolen.status_code == 404
    assert stolen.json()["error"]["message"] == "Session not found"
    get = requests.get(
        gateway.mcp_url,
        headers=mallory.headers(session, Accept="text/event-stream"),
        timeout=TIMEOUT,
    )
    assert get.status_code == 404
    deleted = requests.delete(
        gateway.mcp_url, headers=mallory.headers(session), timeout=TIMEOUT
    )
    assert deleted.status_code == 404
    # No token at all: 401 before any session question.
    anonymous = requests.post(
        gateway.mcp_url,
        json=_initialize(),
        headers={"Accept": ACCEPT, "Mcp-Session-Id": session},
        timeout=TIMEOUT,
    )
    assert anonymous.status_code == 401

    assert _echoed(alice.echo("still mine", session)) == "still mine"
    # The owner's DELETE ends the session, and its binding with it.
    ended = requests.delete(
        gateway.mcp_url, headers=alice.headers(session), timeout=TIMEOUT
    )
    assert ended.status_code in (200, 204)
    assert alice.echo("after delete", session).status_code == 404


# --------------------------------------------------------------------------- #
# Stream caps, and the rest of the service meanwhile
# --------------------------------------------------------------------------- #


def _raw_stream(user: User, session: str) -> tuple[socket.socket, int]:
    """GET /mcp on a raw socket, left open; (socket, status of the answer)."""
    parts = urlsplit(user.stack.mcp_url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT)
    head = [f"GET {parts.path} HTTP/1.1", f"Host: {parts.netloc}"]
    headers = user.headers(session, Accept="text/event-stream")
    head += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    status = int(received.split(b" ", 2)[1]) if received else 0
    return sock, status


def _service_answers(
    stack: GatewayStack, user: User, other: User, other_session: str
) -> dict[str, int]:
    """Discovery, a token refresh, and a tool call of another grant."""
    started = time.monotonic()
    answers = {
        "discovery": requests.get(
            f"{stack.proxy_url}/.well-known/oauth-authorization-server",
            timeout=TIMEOUT,
        ).status_code,
    }
    refreshed = requests.post(
        f"{stack.proxy_url}/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": user.tokens["refresh_token"],
            "client_id": user.tokens["client_id"],
        },
        timeout=TIMEOUT,
    )
    answers["token"] = refreshed.status_code
    if refreshed.status_code == 200:
        user.tokens = {**user.tokens, **refreshed.json()}
    answers["other grant's tool call"] = other.echo(
        "meanwhile", other_session
    ).status_code
    print(f"  probes {answers} in {(time.monotonic() - started) * 1000:.0f} ms")
    return answers


def test_stream_caps_refuse_with_retry_after_and_the_service_answers(
    gateway: GatewayStack,
) -> None:
    """Past the grant's cap 429, past the worker's 503, each with Retry-After;
    meanwhile discovery, token and another grant's tool call still answer."""
    dave, erin = User(gateway, "dave@example.com"), User(gateway, "erin@example.com")
    held: list[socket.socket] = []
    streams: list[requests.Response] = []
    try:
        print(f"\n{PER_GRANT} streams per grant, {PER_WORKER} per worker, 2 workers:")
        # Sessions first: their POSTs accept SSE, so they count while open.
        sessions = [dave.session() for _ in range(PER_GRANT + 1)]
        erins = erin.session()
        for session in sessions[:PER_GRANT]:
            sock, status = _raw_stream(dave, session)
            held.append(sock)
            assert status == 200
        over = requests.get(
            gateway.mcp_url,
            headers=dave.headers(sessions[-1], Accept="text/event-stream"),
            timeout=TIMEOUT,
        )
        assert over.status_code == 429
        assert int(over.headers["Retry-After"]) >= 1
        assert over.json()["error"] == "temporarily_unavailable"
        answers = _service_answers(gateway, dave, erin, erins)
        assert answers == {
            "discovery": 200,
            "token": 200,
            "other grant's tool call": 200,
        }

        # Fill the workers: one stream per new grant until one is refused.
        # (Opening a session may be refused too: its POST accepts SSE.)
        refused: requests.Response | None = None
        for n in range(2 * PER_WORKER + 2):
            user = User(gateway, f"filler{n}@example.com")
            init = requests.post(
                gateway.mcp_url,
                json=_initialize(),
                headers=user.headers(),
                timeout=TIMEOUT,
            )
            if init.status_code == 200:
                session = init.headers["Mcp-Session-Id"]
                refused = requests.get(
                    gateway.mcp_url,
                    headers=user.headers(session, Accept="text/event-stream"),
                    timeout=TIMEOUT,
                    stream=True,
                )
                if refused.status_code == 200:
                    streams.append(refused)
                    refused = None
                    continue
            else:
                refused = init
            break
        assert refused is not None, "the workers never filled up"
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"] == "temporarily_unavailable"
        print(f"  worker cap reached with {len(held) + len(streams)} streams held")
        answers = _service_answers(gateway, dave, erin, erins)
        assert answers["discovery"] == 200
        assert answers["token"] == 200
        # A tool call may stream (its client accepts SSE), so it takes a slot
        # first: on a full worker it is refused at once, never left waiting.
        assert answers["other grant's tool call"] in (200, 503)
    finally:
        for sock in held:
            sock.close()
        for response in streams:
            response.close()
