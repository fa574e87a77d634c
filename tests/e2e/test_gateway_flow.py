"""Gateway mode end to end: the official MCP SDK client talks to the proxy's /mcp.

Real processes only: redis-server, oidc-provider-mock as the upstream IdP, the
proxy under gunicorn (gthread) with MCP_BACKEND_URL set, and
`proxy.cli.demo_mcp_server` behind it. The client starts from nothing (401,
discovery, registration, browser login) and never talks to the backend itself.
"""

from __future__ import annotations

import functools
import threading
import time
import typing as t
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field

import anyio
import pytest
import requests
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from support.processes import free_port

from .conftest import require_redis_server
from .gateway_stack import ACCEPT
from .gateway_stack import GatewayStack
from .gateway_stack import SharedServices
from .gateway_stack import rpc_messages
from .gateway_stack import running_gateway
from .gateway_stack import scripted_tokens
from .gateway_stack import shared_services
from .mcp_oauth_client import BrowserUser
from .mcp_oauth_client import HttpEvent
from .mcp_oauth_client import InMemoryTokenStorage
from .mcp_oauth_client import expire_access_token
from .mcp_oauth_client import make_provider
from .mcp_oauth_client import recording_http_client

USER = "gateway-e2e@example.com"
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def services() -> Iterator[SharedServices]:
    """redis-server and the IdP, shared by every gateway started in this module."""
    require_redis_server()
    with shared_services() as services:
        yield services


@pytest.fixture(scope="module")
def gateway(services: SharedServices) -> Iterator[GatewayStack]:
    """The proxy with 2 workers in gateway mode in front of the demo MCP server."""
    with running_gateway(redis=services.redis, idp=services.idp, workers=2) as stack:
        yield stack


@pytest.fixture(scope="module")
def narrow_gateway(services: SharedServices) -> Iterator[GatewayStack]:
    """One worker with a few threads: a long stream must not block the rest."""
    with running_gateway(
        redis=services.redis, idp=services.idp, workers=1, threads=4
    ) as stack:
        yield stack


# --------------------------------------------------------------------------- #
# The SDK client session
# --------------------------------------------------------------------------- #


@dataclass
class Progress:
    """When each progress notification and the final result arrived."""

    steps: list[tuple[float, float]] = field(default_factory=list)
    result_at: float = 0.0

    async def __call__(
        self, progress: float, total: float | None, message: str | None
    ) -> None:
        self.steps.append((progress, time.monotonic()))


@dataclass
class GatewayReport:
    tools: list[str]
    echo: str
    whoami: dict[str, t.Any]
    count: str
    progress: Progress
    echo_after_refresh: str
    storage: InMemoryTokenStorage
    tokens_before: t.Any
    tokens_after: t.Any
    logins: int
    http: list[HttpEvent]
    revoked_status: int = 0
    refresh_after_revocation: tuple[int, str | None] = (0, None)
    after_revocation: list[HttpEvent] = field(default_factory=list)
    logins_after_revocation: int = 0


def _text(result: t.Any) -> str:
    assert not result.is_error, result.content
    return str(getattr(result.content[0], "text", ""))


async def _run_client(stack: GatewayStack, user: str) -> GatewayReport:
    storage = InMemoryTokenStorage()
    browser_user = BrowserUser(user)
    provider = make_provider(stack.mcp_url, storage, browser_user)
    http, events = recording_http_client(provider, TIMEOUT)
    with anyio.fail_after(TIMEOUT * 3):
        async with (
            http,
            streamable_http_client(stack.mcp_url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            listed = await session.list_tools()
            echo = _text(
                await session.call_tool("echo", {"text": "through the gateway"})
            )
            who = await session.call_tool("whoami", {})
            progress = Progress()
            counted = _text(
                await session.call_tool(
                    "count",
                    {"to": 5, "delay_seconds": 0.3},
                    progress_callback=progress,
                )
            )
            progress.result_at = time.monotonic()
            tokens_before = storage.tokens

            expire_access_token(provider)
            echo_after = _text(await session.call_tool("echo", {"text": "refreshed"}))
            report = GatewayReport(
                tools=sorted(tool.name for tool in listed.tools),
                echo=echo,
                whoami=dict(who.structured_content or {}),
                count=counted,
                progress=progress,
                echo_after_refresh=echo_after,
                storage=storage,
                tokens_before=tokens_before,
                tokens_after=storage.tokens,
                logins=len(browser_user.logins),
                http=events,
            )

            # Revoke the refresh token, as a user signing out would.
            assert storage.tokens is not None
            assert storage.client_info is not None
            revoked = await anyio.to_thread.run_sync(
                functools.partial(
                    requests.post,
                    f"{stack.proxy_url}/oauth2/revoke",
                    data={
                        "token": storage.tokens.refresh_token,
                        "client_id": storage.client_info.client_id,
                    },
                    timeout=TIMEOUT,
                )
            )
            report.revoked_status = revoked.status_code
            refreshed = await anyio.to_thread.run_sync(
                functools.partial(
                    requests.post,
                    f"{stack.proxy_url}/oauth2/token",
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": storage.tokens.refresh_token,
                        "client_id": storage.client_info.client_id,
                    },
                    timeout=TIMEOUT,
                )
            )
            report.refresh_after_revocation = (
                refreshed.status_code,
                refreshed.json().get("error"),
            )
            mark = len(events)
            # The next request carries the revoked grant's access token: 401. The
            # SDK then starts over with a new browser login.
            with anyio.fail_after(TIMEOUT):
                await session.call_tool("echo", {"text": "after revocation"})
            report.after_revocation = events[mark:]
            report.logins_after_revocation = len(browser_user.logins)
    return report


def test_sdk_client_through_the_gateway(gateway: GatewayStack) -> None:
    """PRM-7, PRM-8, RS-4, REV-4: discover, log in, call tools, stream progress,
    refresh, and lose access on revocation; all via the proxy's /mcp."""
    report = anyio.run(_run_client, gateway, USER)
    mcp = gateway.mcp_url
    proxy = gateway.proxy_url

    # From scratch: the first request was a 401 from the gateway, then the SDK
    # discovered, registered and logged in once.
    assert (report.http[0].url, report.http[0].status) == (mcp, 401)
    assert report.http[1].url.startswith(
        f"{proxy}/.well-known/oauth-protected-resource"
    )
    assert [e.status for e in report.http if e.url == f"{proxy}/oauth2/register"] == [
        201
    ]
    assert report.logins == 1

    # Tools from the backend, through the gateway; the backend saw the user, not
    # the client's token.
    assert {"echo", "whoami", "count"} <= set(report.tools)
    assert report.echo == "through the gateway"
    assert report.whoami["user"] == USER
    assert report.whoami["authorization"] is None

    # Progress streamed WHILE the call ran: at least two notifications, each
    # received before the result and spread over the call, not in one burst.
    steps = report.progress.steps
    assert len(steps) >= 2
    assert [p for p, _ in steps] == sorted(p for p, _ in steps)
    assert all(at < report.progress.result_at for _, at in steps)
    first_at, last_at = steps[0][1], steps[-1][1]
    assert last_at - first_at >= 0.5, "progress arrived in one burst (buffered)"
    assert report.count == "counted to 5"

    # The refresh rotated the tokens without the browser, and the new one works.
    assert report.tokens_after.access_token != report.tokens_before.access_token
    assert report.tokens_after.refresh_token != report.tokens_before.refresh_token
    token_posts = [e for e in report.http if e.url == f"{proxy}/oauth2/token"]
    assert [e.status for e in token_posts[:2]] == [200, 200]
    assert report.echo_after_refresh == "refreshed"

    # Revocation: the very next MCP request was refused with 401.
    assert report.revoked_status == 200
    first_mcp = next(e for e in report.after_revocation if e.url == mcp)
    assert first_mcp.status == 401
    # The revoked refresh token is dead too, so the SDK had to log in again,
    # and the request it retried with the new token went through.
    assert report.refresh_after_revocation == (400, "invalid_grant")
    assert report.after_revocation[-1].url == mcp
    assert report.after_revocation[-1].status == 200
    assert report.logins_after_revocation == 2


def test_revoked_access_token_is_401_for_any_request(gateway: GatewayStack) -> None:
    """REV-4, RS-1: after revoking the refresh token, its access token is refused
    by every worker at once (the grant lives in Redis)."""
    tokens = scripted_tokens(gateway.proxy_url, gateway.mcp_url, USER)
    headers = {
        "Authorization": f"Bearer {tokens['access_token']}",
        "Accept": ACCEPT,
        "Content-Type": "application/json",
    }
    ok = requests.post(
        gateway.mcp_url, json=_initialize(), headers=headers, timeout=TIMEOUT
    )
    assert ok.status_code == 200
    revoked = requests.post(
        f"{gateway.proxy_url}/oauth2/revoke",
        data={"token": tokens["refresh_token"], "client_id": tokens["client_id"]},
        timeout=TIMEOUT,
    )
    assert revoked.status_code == 200
    # Several requests, so both workers answer at least once with high likelihood.
    for _ in range(6):
        response = requests.post(
            gateway.mcp_url, json=_initialize(), headers=headers, timeout=TIMEOUT
        )
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


# --------------------------------------------------------------------------- #
# A long SSE stream does not block the worker
# --------------------------------------------------------------------------- #


def _initialize() -> dict[str, t.Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "e2e", "version": "1"},
        },
    }


def _echo_over_http(mcp_url: str, token: str, text: str) -> str:
    """A whole MCP exchange on its own connection: initialize, then echo."""
    with requests.Session() as http:
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": ACCEPT,
            "Content-Type": "application/json",
            "MCP-Protocol-Version": "2025-06-18",
        }
        init = http.post(mcp_url, json=_initialize(), headers=headers, timeout=TIMEOUT)
        assert init.status_code == 200, init.text
        headers["Mcp-Session-Id"] = init.headers["Mcp-Session-Id"]
        done = http.post(
            mcp_url,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers=headers,
            timeout=TIMEOUT,
        )
        assert done.status_code == 202
        call = http.post(
            mcp_url,
            json={
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": text}},
            },
            headers=headers,
            timeout=TIMEOUT,
        )
        assert call.status_code == 200, call.text
        result = rpc_messages(call.headers["Content-Type"], call.text)[-1]["result"]
        return str(result["content"][0]["text"])


def _long_count(
    mcp_url: str, token: str, first_progress: threading.Event, out: dict[str, t.Any]
) -> None:
    """Stream `count` (20 x 0.2 s) over SSE, line by line, noting when it ends."""
    with requests.Session() as http:
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": ACCEPT,
            "Content-Type": "application/json",
            "MCP-Protocol-Version": "2025-06-18",
        }
        init = http.post(mcp_url, json=_initialize(), headers=headers, timeout=TIMEOUT)
        headers["Mcp-Session-Id"] = init.headers["Mcp-Session-Id"]
        http.post(
            mcp_url,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers=headers,
            timeout=TIMEOUT,
        )
        body = {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {
                "name": "count",
                "arguments": {"to": 20, "delay_seconds": 0.2},
                "_meta": {"progressToken": "long"},
            },
        }
        progress = 0
        with http.post(
            mcp_url, json=body, headers=headers, stream=True, timeout=TIMEOUT
        ) as response:
            out["status"] = response.status_code
            for line in response.iter_lines(decode_unicode=True):
                if line.startswith("data:") and "notifications/progress" in line:
                    progress += 1
                    first_progress.set()
                if line.startswith("data:") and '"result"' in line:
                    out["result"] = line
                    break
        out["progress"] = progress
        out["ended_at"] = time.monotonic()


def test_slow_stream_does_not_block_other_requests(
    narrow_gateway: GatewayStack,
) -> None:
    """gthread: while one thread relays a long SSE stream, the same (single)
    worker answers metadata and a full MCP exchange, before the stream ends."""
    stack = narrow_gateway
    token = scripted_tokens(stack.proxy_url, stack.mcp_url, USER)["access_token"]
    first_progress = threading.Event()
    out: dict[str, t.Any] = {}
    streamer = threading.Thread(
        target=_long_count, args=(stack.mcp_url, token, first_progress, out)
    )
    streamer.start()
    try:
        assert first_progress.wait(TIMEOUT), "the long stream never started"
        metadata = requests.get(
            f"{stack.proxy_url}/.well-known/oauth-authorization-server",
            timeout=TIMEOUT,
        )
        metadata_done = time.monotonic()
        echoed = _echo_over_http(stack.mcp_url, token, "meanwhile")
        echo_done = time.monotonic()
        stream_running = streamer.is_alive()
    finally:
        streamer.join(TIMEOUT * 2)
    assert not streamer.is_alive()
    assert metadata.status_code == 200
    assert echoed == "meanwhile"
    assert stream_running, "the other requests finished only after the stream"
    assert metadata_done < out["ended_at"]
    assert echo_done < out["ended_at"]
    assert out["status"] == 200
    assert out["progress"] == 20
    assert "counted to 20" in out["result"]


# --------------------------------------------------------------------------- #
# Backend outage
# --------------------------------------------------------------------------- #


def test_backend_outage_is_502_json_through_gunicorn(
    services: SharedServices,
) -> None:
    """An unreachable MCP backend → 502 JSON (no HTML, no hang) from gunicorn."""
    dead_backend = f"http://127.0.0.1:{free_port()}/mcp"
    with running_gateway(
        redis=services.redis, idp=services.idp, workers=2, backend_url=dead_backend
    ) as stack:
        tokens = scripted_tokens(stack.proxy_url, stack.mcp_url, USER)
        response = requests.post(
            stack.mcp_url,
            json=_initialize(),
            headers={
                "Authorization": f"Bearer {tokens['access_token']}",
                "Accept": ACCEPT,
                "Content-Type": "application/json",
            },
            timeout=TIMEOUT,
        )
        assert response.status_code == 502
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json()["error"] == "bad_gateway"
        # The proxy itself stays healthy.
        assert requests.get(f"{stack.proxy_url}/healthz", timeout=5).status_code == 200
