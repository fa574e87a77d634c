"""Step-up end to end: the official MCP SDK client widens its own scope.

Real processes: redis-server, oidc-provider-mock, the proxy under gunicorn in
gateway mode with MCP_SCOPES=mcp:read and MCP_TOOL_SCOPES making `count` a
write tool, and the demo MCP server behind it. The SDK (mcp 2.3) handles a
403 `insufficient_scope` itself (SEP-835/SEP-2350): it re-authorizes with the
union of its scopes and the challenged ones, and retries the call.
"""

from __future__ import annotations

import json
import re
import typing as t
from collections.abc import Iterator

import anyio
import pytest
import requests
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from .conftest import require_redis_server
from .gateway_stack import GatewayStack
from .gateway_stack import running_gateway
from .gateway_stack import shared_services
from .mcp_oauth_client import BrowserUser
from .mcp_oauth_client import InMemoryTokenStorage
from .mcp_oauth_client import make_provider
from .mcp_oauth_client import recording_http_client

USER = "step-up@example.com"
TIMEOUT = 30.0
TOOL_SCOPES = {
    "tools": {"echo": "mcp:read", "whoami": "mcp:read", "count": "mcp:write"},
    "implies": {"mcp:write": ["mcp:read"]},
}


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayStack]:
    require_redis_server()
    with (
        shared_services() as services,
        running_gateway(
            redis=services.redis,
            idp=services.idp,
            workers=1,
            overrides={
                "MCP_SCOPES": "mcp:read",
                "MCP_TOOL_SCOPES": json.dumps(TOOL_SCOPES),
            },
        ) as stack,
    ):
        yield stack


class ConsentWatcher(BrowserUser):
    """The SDK's browser, keeping the scopes each consent page asked for."""

    def __init__(self, user: str) -> None:
        super().__init__(user)
        self.asked: list[list[str]] = []
        self.browser.hooks["response"].append(self._page)

    def _page(self, response: requests.Response, *args: t.Any, **kw: t.Any) -> None:
        if response.status_code == 200 and "/oauth2/authorize" in response.url:
            listed = re.search(r'<ul id="scopes">(.*?)</ul>', response.text, re.S)
            if listed:
                self.asked.append(re.findall(r"<code>([^<]+)</code>", listed.group(1)))


async def _step_up(stack: GatewayStack) -> dict[str, t.Any]:
    storage = InMemoryTokenStorage()
    browser = ConsentWatcher(USER)
    provider = make_provider(stack.mcp_url, storage, browser)
    http, events = recording_http_client(provider, TIMEOUT)
    with anyio.fail_after(TIMEOUT * 3):
        async with (
            http,
            streamable_http_client(stack.mcp_url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            echo = await session.call_tool("echo", {"text": "read is enough"})
            assert storage.tokens is not None
            read_scope = storage.tokens.scope
            counted = await session.call_tool("count", {"to": 2, "delay_seconds": 0})
            return {
                "echo": echo,
                "counted": counted,
                "read_scope": read_scope,
                "final_scope": storage.tokens.scope,
                "logins": len(browser.logins),
                "asked": browser.asked,
                "statuses": [
                    e.status for e in events if e.url.startswith(stack.mcp_url)
                ],
            }


def test_the_sdk_steps_up_by_itself_and_consent_shows_only_the_added_scope(
    gateway: GatewayStack,
) -> None:
    """PRM-11, SCOPE-2, SCOPE-3: read token → 403 → re-consent (mcp:write only)
    → the write tool runs, in one SDK session."""
    report = anyio.run(_step_up, gateway)
    assert not report["echo"].is_error
    assert not report["counted"].is_error, report["counted"].content
    assert "mcp:write" not in report["read_scope"].split()
    assert {"mcp:read", "mcp:write"} <= set(report["final_scope"].split())
    assert report["logins"] == 2
    first, second = report["asked"]
    assert "mcp:read" in first
    assert second == ["mcp:write"]
    assert 403 in report["statuses"]
