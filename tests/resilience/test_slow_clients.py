"""Slow and long-lived clients must not starve everyone else.

Real processes and real sockets: redis-server, oidc-provider-mock as the
upstream IdP, the proxy under gunicorn (2 workers, config/gunicorn.conf.py) in
gateway mode, and the SDK-built demo MCP server behind it (it holds 500
sessions with their SSE streams in about a second, so it is not the
bottleneck). While a crowd of slow clients (tests/resilience/load.py) holds
connections, probes on new connections ask for the authorization server
metadata, refresh a token, and call a tool through the gateway on another grant.

Each scenario prints its figures (answered/total, p50/p99/max latency) and
asserts only that every probe was answered correctly within the probes' client
timeout; latencies are reported, never asserted. The last test checks, with
2-second deadlines, that the server closes idle and slow connections.
"""

from __future__ import annotations

import itertools
import json
import select
import socket
import time
from collections.abc import Callable
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import requests

from ..e2e.conftest import require_redis_server
from ..e2e.gateway_stack import ACCEPT
from ..e2e.gateway_stack import GatewayStack
from ..e2e.gateway_stack import SharedServices
from ..e2e.gateway_stack import rpc_messages
from ..e2e.gateway_stack import running_gateway
from ..e2e.gateway_stack import scripted_tokens
from ..e2e.gateway_stack import shared_services
from ..e2e.test_gateway_flow import _initialize
from .load import Figures
from .load import crowd
from .load import probe
from .load import raise_open_files_limit
from .recorded import record

#: How long the probes run in each scenario, while the crowd is in place
#: (a probe that hangs would show within its 10 s timeout: 6 s of probes
#: plus the last one's timeout).
PROBE_SECONDS = 6.0
SLOWLORIS = 1000
STREAMS = 500
SLOW_BODIES = 200
#: Sessions the streams are spread over (an MCP client holds one per server).
STREAM_SESSIONS = 50
#: Long enough for the streams to outlive setting up the crowd plus the probes.
STREAM_STEPS, STREAM_STEP_SECONDS = 15, 3.0
#: The load stack runs with the documented defaults, set explicitly so that
#: nothing in the developer's shell changes them.
LOAD_SETTINGS = {
    "REQUEST_HEADER_TIMEOUT_SECONDS": "10",
    "REQUEST_BODY_TIMEOUT_SECONDS": "15",
    "KEEPALIVE_SECONDS": "5",
    # The crowd's streams share one grant: the per-grant limit would refuse
    # most of them with 429 before they could load the server (which is what
    # it is for, tested in tests/endpoints); here they must get through.
    "RATE_LIMIT_PER_GRANT": "off",
    # Likewise the cap on open streams per grant (default 10): the 500 streams
    # share that one grant. The per-worker cap (MAX_STREAMS, 1000) stays on,
    # far above the 250 or so each of the two workers holds.
    "MAX_STREAMS_PER_GRANT": "0",
}
#: The deadline check's stack: short deadlines, so the test is quick.
SHORT = 2
SHORT_SETTINGS = {
    "REQUEST_HEADER_TIMEOUT_SECONDS": str(SHORT),
    "REQUEST_BODY_TIMEOUT_SECONDS": str(SHORT),
    "KEEPALIVE_SECONDS": str(SHORT),
}
#: A deadline counts as met when the server closes within it plus this.
SLACK = 8.0
REGISTRATION = json.dumps(
    {
        "redirect_uris": ["http://127.0.0.1:33418/callback"],
        "token_endpoint_auth_method": "none",
        "client_name": "slow " + "s" * 200,
    }
).encode()


@pytest.fixture(scope="module")
def services() -> Iterator[SharedServices]:
    require_redis_server()
    # The crowd's ~1,700 sockets here, and as many in gunicorn (it inherits this).
    raise_open_files_limit(16384)
    with shared_services() as services:
        yield services


@pytest.fixture(scope="module")
def gateway(services: SharedServices) -> Iterator[GatewayStack]:
    with running_gateway(
        redis=services.redis, idp=services.idp, workers=2, overrides=LOAD_SETTINGS
    ) as stack:
        yield stack


def _port(stack: GatewayStack) -> int:
    return int(urlsplit(stack.proxy_url).port or 80)


def _mcp_headers(token: str, session_id: str | None = None) -> dict[str, str]:
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": ACCEPT,
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-06-18",
    }
    if session_id:
        headers["Mcp-Session-Id"] = session_id
    return headers


def _mcp_session(mcp_url: str, token: str) -> str:
    """initialize + notifications/initialized: the session id."""
    headers = _mcp_headers(token)
    init = requests.post(mcp_url, json=_initialize(), headers=headers, timeout=10)
    assert init.status_code == 200, init.text
    session_id = init.headers["Mcp-Session-Id"]
    done = requests.post(
        mcp_url,
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers=_mcp_headers(token, session_id),
        timeout=10,
    )
    assert done.status_code == 202, done.text
    return session_id


@dataclass
class Clients:
    """The probing client's grant and MCP session, and the streaming client's."""

    stack: GatewayStack
    client_id: str
    refresh_token: str
    access_token: str
    session_id: str
    stream_headers: list[dict[str, str]]
    calls: itertools.count[int]

    def probes(self) -> dict[str, Callable[[float], str | None]]:
        return {
            "discovery": self.discovery,
            "token": self.refresh,
            "tool_call": self.tool_call,
        }

    def discovery(self, timeout: float) -> str | None:
        response = requests.get(
            f"{self.stack.proxy_url}/.well-known/oauth-authorization-server",
            timeout=timeout,
        )
        if response.status_code != 200:
            return f"status {response.status_code}"
        if response.json().get("issuer") != self.stack.proxy_url:
            return "wrong issuer"
        return None

    def refresh(self, timeout: float) -> str | None:
        response = requests.post(
            f"{self.stack.proxy_url}/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": self.refresh_token,
                "client_id": self.client_id,
            },
            timeout=timeout,
        )
        if response.status_code != 200:
            return f"status {response.status_code} {response.text[:80]}"
        self.refresh_token = response.json()["refresh_token"]
        return None

    def tool_call(self, timeout: float) -> str | None:
        text = f"probe {next(self.calls)}"
        response = requests.post(
            self.stack.mcp_url,
            json={
                "jsonrpc": "2.0",
                "id": 7,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": text}},
            },
            headers=_mcp_headers(self.access_token, self.session_id),
            timeout=timeout,
        )
        if response.status_code != 200:
            return f"status {response.status_code}"
        messages = rpc_messages(response.headers["Content-Type"], response.text)
        echoed = messages[-1].get("result", {}).get("content", [{}])[0].get("text")
        return None if echoed == text else f"echoed {echoed!r}"


@pytest.fixture(scope="module")
def clients(gateway: GatewayStack) -> Clients:
    proxy, mcp = gateway.proxy_url, gateway.mcp_url
    prober = scripted_tokens(proxy, mcp, "prober@example.com")
    streamer = scripted_tokens(proxy, mcp, "streamer@example.com")
    token = streamer["access_token"]
    sessions = [_mcp_session(mcp, token) for _ in range(STREAM_SESSIONS)]
    return Clients(
        stack=gateway,
        client_id=prober["client_id"],
        refresh_token=prober["refresh_token"],
        access_token=prober["access_token"],
        session_id=_mcp_session(mcp, prober["access_token"]),
        stream_headers=[_mcp_headers(token, session) for session in sessions],
        calls=itertools.count(),
    )


def _worker_model(stack: GatewayStack) -> str:
    """What gunicorn said it runs, e.g. 'Using worker: gthread'."""
    log = stack.processes["proxy"].output()
    line = next((x for x in log.splitlines() if "Using worker:" in x), "")
    return line.split("Using worker:", 1)[-1].strip() or "unknown"


def _mcp_path(stack: GatewayStack) -> str:
    return urlsplit(stack.mcp_url).path


_STREAM_BATCHES = itertools.count(1)


def _stream_bodies() -> Callable[[int], bytes]:
    """Long `count` calls. JSON-RPC ids and progress tokens must be unique in a
    session, also across scenarios (the backend may still run earlier calls)."""
    base = next(_STREAM_BATCHES) * 100_000
    return lambda index: _stream_body(base + index)


def _stream_body(number: int) -> bytes:
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": number,
            "method": "tools/call",
            "params": {
                "name": "count",
                "arguments": {
                    "to": STREAM_STEPS,
                    "delay_seconds": STREAM_STEP_SECONDS,
                },
                "_meta": {"progressToken": f"held-{number}"},
            },
        }
    ).encode()


def _finish(figures: Figures, stack: GatewayStack) -> None:
    figures.model = _worker_model(stack)
    record(figures)
    print("\n" + figures.report())
    failed = figures.failed()
    assert not failed, f"{len(failed)} probes failed: {failed[:5]}"


# The crowd stays at most this long, whatever happens to the test.
CROWD_SECONDS = 90.0


def test_slowloris(gateway: GatewayStack, clients: Clients) -> None:
    """1,000 connections sending their request head one byte per second."""
    figures = Figures("slowloris")
    with crowd(_port(gateway), CROWD_SECONDS) as slow:
        loris = slow.slowloris(SLOWLORIS)
        slow.wait_until(lambda: loris.opened >= SLOWLORIS, 15)
        figures.crowd["slowloris_live_at_start"] = loris.live
        figures.probes = probe(clients.probes(), PROBE_SECONDS)
        figures.crowd["slowloris_live_at_end"] = loris.live
        figures.crowd["slowloris"] = loris.summary()
    _finish(figures, gateway)
    assert loris.opened >= SLOWLORIS


def test_open_streams(gateway: GatewayStack, clients: Clients) -> None:
    """500 tool calls streaming SSE through the gateway, held open."""
    figures = Figures("sse_streams")
    with crowd(_port(gateway), CROWD_SECONDS) as slow:
        body = _stream_bodies()
        path, headers = _mcp_path(gateway), clients.stream_headers
        streams = slow.streams(STREAMS, path, headers, body)
        slow.wait_until(
            lambda: streams.opened + sum(streams.refused.values()) >= STREAMS, 30
        )
        figures.crowd["streams_live_at_start"] = streams.live
        figures.probes = probe(clients.probes(), PROBE_SECONDS)
        figures.crowd["streams_live_at_end"] = streams.live
        figures.crowd["streams"] = streams.summary()
    _finish(figures, gateway)
    assert figures.crowd["streams_live_at_end"] == STREAMS, streams.summary()


def test_slow_bodies(gateway: GatewayStack, clients: Clients) -> None:
    """200 registrations whose JSON body arrives one byte per second."""
    figures = Figures("slow_bodies")
    with crowd(_port(gateway), CROWD_SECONDS) as slow:
        bodies = slow.slow_bodies(SLOW_BODIES, "/oauth2/register", REGISTRATION)
        slow.wait_until(lambda: bodies.opened >= SLOW_BODIES, 15)
        figures.crowd["bodies_live_at_start"] = bodies.live
        figures.probes = probe(clients.probes(), PROBE_SECONDS)
        figures.crowd["bodies_live_at_end"] = bodies.live
        figures.crowd["slow_bodies"] = bodies.summary()
    _finish(figures, gateway)
    assert bodies.opened >= SLOW_BODIES


def test_everything_at_once(gateway: GatewayStack, clients: Clients) -> None:
    """The target: 1,000 slowloris, 500 open streams and 200 slow bodies at once;
    discovery, token and a tool call on another grant still answer (p99 printed)."""
    figures = Figures("all_at_once")
    with crowd(_port(gateway), CROWD_SECONDS) as slow:
        body = _stream_bodies()
        path, headers = _mcp_path(gateway), clients.stream_headers
        streams = slow.streams(STREAMS, path, headers, body)
        slow.wait_until(
            lambda: streams.opened + sum(streams.refused.values()) >= STREAMS, 30
        )
        loris = slow.slowloris(SLOWLORIS)
        bodies = slow.slow_bodies(SLOW_BODIES, "/oauth2/register", REGISTRATION)
        slow.wait_until(
            lambda: loris.opened >= SLOWLORIS and bodies.opened >= SLOW_BODIES, 15
        )
        figures.crowd["live_at_start"] = {
            "slowloris": loris.live,
            "streams": streams.live,
            "slow_bodies": bodies.live,
        }
        figures.probes = probe(clients.probes(), PROBE_SECONDS)
        figures.crowd["live_at_end"] = {
            "slowloris": loris.live,
            "streams": streams.live,
            "slow_bodies": bodies.live,
        }
        figures.crowd["streams"] = streams.summary()
        figures.crowd["slowloris"] = loris.summary()
        figures.crowd["slow_bodies"] = bodies.summary()
    _finish(figures, gateway)
    print(f"[all_at_once] p99 of all probes: {figures.row()['p99_ms']} ms (target 500)")
    assert figures.crowd["live_at_end"]["streams"] == STREAMS, streams.summary()


# --------------------------------------------------------------------------- #
# Deadlines: the server closes idle and slow connections
# --------------------------------------------------------------------------- #


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _read_response(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """One whole response with a Content-Length (what /healthz sends)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed mid-body"
        body += chunk
    return head


@dataclass
class Closed:
    """How a connection ended: seconds until the server closed it, and what it
    sent first (None: still open when the check gave up)."""

    seconds: float | None
    received: bytes


def _until_closed(sock: socket.socket, limit: float, trickle: bytes = b"") -> Closed:
    """Send ``trickle`` one byte per second and read, until the server closes the
    connection (EOF or reset) or ``limit`` seconds pass."""
    sock.setblocking(False)
    started = time.monotonic()
    next_byte, sent, received = started, 0, b""
    try:
        while (now := time.monotonic()) - started < limit:
            if sent < len(trickle) and now >= next_byte:
                sock.send(trickle[sent : sent + 1])
                sent, next_byte = sent + 1, next_byte + 1.0
            wait = min(next_byte - now if sent < len(trickle) else 1.0, 1.0)
            readable, _, _ = select.select([sock], [], [], max(0.01, wait))
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    return Closed(time.monotonic() - started, received)
                received += chunk
    except (ConnectionResetError, BrokenPipeError):
        return Closed(time.monotonic() - started, received)
    finally:
        sock.close()
    return Closed(None, received)


def _idle_after_two_requests(port: int) -> Closed:
    sock = _connect(port)
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    sock.sendall(request)
    assert b" 200 " in _read_response(sock)
    time.sleep(SHORT / 4)  # well within the keep-alive window: still served
    sock.sendall(request)
    assert b" 200 " in _read_response(sock)
    return _until_closed(sock, SHORT + SLACK)


def _silent(port: int) -> Closed:
    return _until_closed(_connect(port), SHORT + SLACK)


def _slow_head(port: int) -> Closed:
    head = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode()
    return _until_closed(_connect(port), SHORT + SLACK, head + b"s" * 100)


def _slow_body(port: int) -> Closed:
    sock = _connect(port)
    sock.sendall(
        f"POST /oauth2/register HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(REGISTRATION)}\r\n"
        "\r\n".encode()
    )
    return _until_closed(sock, SHORT + SLACK, REGISTRATION)


def _slow_chunked_body(port: int) -> Closed:
    sock = _connect(port)
    sock.sendall(
        f"POST /oauth2/register HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        "\r\n".encode()
    )
    chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(REGISTRATION), REGISTRATION)
    return _until_closed(sock, SHORT + SLACK, chunk)


def _slow_large_body(port: int, token: str) -> Closed:
    """A 100 kB MCP message: above the size read ahead, so the app reads it."""
    sock = _connect(port)
    sock.sendall(
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: {ACCEPT}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n"
        "\r\n".encode()
    )
    return _until_closed(sock, SHORT + SLACK, b'{"jsonrpc": "2.0", ' + b" " * 200)


def test_idle_and_slow_connections_are_closed(services: SharedServices) -> None:
    """With 2 s deadlines, the server closes: a kept-alive connection left idle,
    a connection that sends nothing, a request head or body sent one byte per
    second (total deadlines, not per read), answering 408 to the slow bodies."""
    with running_gateway(
        redis=services.redis, idp=services.idp, workers=2, overrides=SHORT_SETTINGS
    ) as stack:
        port = _port(stack)
        token = scripted_tokens(stack.proxy_url, stack.mcp_url, "deadline@example.com")
        checks: dict[str, Callable[[], Closed]] = {
            "idle keep-alive": lambda: _idle_after_two_requests(port),
            "silent connection": lambda: _silent(port),
            "slow head": lambda: _slow_head(port),
            "slow body": lambda: _slow_body(port),
            "slow chunked body": lambda: _slow_chunked_body(port),
            "slow large body": lambda: _slow_large_body(port, token["access_token"]),
        }
        with ThreadPoolExecutor(len(checks)) as pool:
            futures = {name: pool.submit(check) for name, check in checks.items()}
            results = {name: future.result() for name, future in futures.items()}
        model = _worker_model(stack)
    print(f"\n[deadlines] {model}, configured {SHORT} s each:")
    for name, closed in results.items():
        seconds = "still open" if closed.seconds is None else f"{closed.seconds:.2f} s"
        first = closed.received.split(b"\r\n", 1)[0].decode("latin-1")
        print(f"[deadlines] {name:>18}: closed after {seconds}; sent {first!r}")
    record_deadlines(model, results)
    still_open = [name for name, closed in results.items() if closed.seconds is None]
    assert not still_open, f"not closed within {SHORT + SLACK} s: {still_open}"
    for name in ("slow body", "slow chunked body", "slow large body"):
        assert results[name].received.startswith(b"HTTP/1.1 408 "), (name, results)
    for name in ("idle keep-alive", "silent connection", "slow head"):
        assert results[name].received == b"", (name, results[name])


def record_deadlines(model: str, results: dict[str, Closed]) -> None:
    figures = Figures("deadlines")
    figures.model = model
    figures.crowd = {
        name: None if closed.seconds is None else round(closed.seconds, 2)
        for name, closed in results.items()
    }
    record(figures)
