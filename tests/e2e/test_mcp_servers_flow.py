"""MCP_SERVERS end to end: two MCP servers behind one proxy, tokens that do not cross.

Real processes only: redis-server, oidc-provider-mock as the upstream IdP, two
`proxy.cli.demo_mcp_server` backends, and the proxy under gunicorn with two
workers fronting them at /github/mcp and /crm/mcp. The official MCP SDK client
connects to each from nothing (401, its server's PRM, registration, browser
login, RFC 8707 `resource` sent by the SDK itself) and calls tools; a token
won for one server is refused by the other.
"""

from __future__ import annotations

import json
import typing as t
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import pytest
import requests
from joserfc import jws
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from support.processes import ManagedProcess
from support.processes import free_port
from support.processes import start_demo_backend
from support.processes import start_proxy

from .conftest import require_redis_server
from .gateway_stack import ACCEPT
from .gateway_stack import SharedServices
from .gateway_stack import shared_services
from .mcp_oauth_client import BrowserUser
from .mcp_oauth_client import InMemoryTokenStorage
from .mcp_oauth_client import make_provider
from .mcp_oauth_client import recording_http_client
from .stack import proxy_env

USER = "servers-e2e@example.com"
TIMEOUT = 30.0


@dataclass
class TwoServers:
    proxy_url: str
    processes: dict[str, ManagedProcess]

    def url(self, name: str) -> str:
        return f"{self.proxy_url}/{name}/mcp"


@pytest.fixture(scope="module")
def services() -> Iterator[SharedServices]:
    require_redis_server()
    with shared_services() as services:
        yield services


@pytest.fixture(scope="module")
def stack(services: SharedServices) -> Iterator[TwoServers]:
    """The proxy (gunicorn, 2 workers) with MCP_SERVERS naming two demo backends."""
    processes: dict[str, ManagedProcess] = {}
    try:
        for name in ("github", "crm"):
            processes[name] = start_demo_backend(name=f"demo-{name}")
        port = free_port()
        proxy_url = f"http://127.0.0.1:{port}"
        servers = [
            {
                "path": "/github/mcp",
                "backend": processes["github"].url,
                "scopes": ["mcp", "github"],
            },
            {"path": "/crm/mcp", "backend": processes["crm"].url, "scopes": ["mcp"]},
        ]
        env = proxy_env(
            public_url=proxy_url,
            idp_url=services.idp.url,
            audience="unused",
            redis_url=services.redis.url,
            overrides={
                "MCP_SERVERS": json.dumps(servers),
                "REDIS_KEY_PREFIX": "servers-e2e:",
            },
        )
        del env["OAUTH_AUDIENCE"]  # each server has its own audience
        processes["proxy"] = start_proxy(env, port=port, workers=2)
        yield TwoServers(proxy_url, processes)
    finally:
        for proc in reversed(list(processes.values())):
            proc.close()


@dataclass
class ClientRun:
    tools: list[str]
    echo: str
    access_token: str
    first_status: int
    metadata_urls: list[str]


def _text(result: t.Any) -> str:
    assert not result.is_error, result.content
    return str(getattr(result.content[0], "text", ""))


async def _connect(mcp_url: str) -> ClientRun:
    """The SDK client from nothing: discovery, registration, login, tools."""
    storage = InMemoryTokenStorage()
    provider = make_provider(mcp_url, storage, BrowserUser(USER))
    http, events = recording_http_client(provider, TIMEOUT)
    with anyio.fail_after(TIMEOUT * 3):
        async with (
            http,
            streamable_http_client(mcp_url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            listed = await session.list_tools()
            echo = _text(await session.call_tool("echo", {"text": "hello"}))
    assert storage.tokens is not None
    return ClientRun(
        tools=sorted(tool.name for tool in listed.tools),
        echo=echo,
        access_token=storage.tokens.access_token,
        first_status=events[0].status,
        metadata_urls=[
            e.url for e in events if "/.well-known/oauth-protected-resource" in e.url
        ],
    )


def _aud(token: str) -> object:
    return json.loads(jws.extract_compact(token.encode()).payload)["aud"]


def _initialize(url: str, token: str) -> requests.Response:
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "crossing", "version": "1"},
        },
    }
    return requests.post(
        url,
        json=message,
        headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
        timeout=TIMEOUT,
    )


def test_each_server_has_its_own_protected_resource_metadata(
    stack: TwoServers,
) -> None:
    for name, scopes in (("github", ["mcp", "github"]), ("crm", ["mcp"])):
        response = requests.get(
            f"{stack.proxy_url}/.well-known/oauth-protected-resource/{name}/mcp",
            timeout=TIMEOUT,
        )
        assert response.status_code == 200
        document = response.json()
        assert document["resource"] == stack.url(name)
        assert document["scopes_supported"] == scopes
        assert document["authorization_servers"] == [stack.proxy_url]


def test_two_backends_with_tokens_that_do_not_cross(stack: TwoServers) -> None:
    github = anyio.run(_connect, stack.url("github"))
    assert github.first_status == 401
    assert f"{stack.proxy_url}/.well-known/oauth-protected-resource/github/mcp" in (
        github.metadata_urls
    )
    assert {"echo", "whoami"} <= set(github.tools)
    assert "hello" in github.echo
    assert _aud(github.access_token) == stack.url("github")

    # The github token at /crm/mcp: refused, pointing at crm's own metadata.
    # Several tries, so both gunicorn workers (and their token caches) answer.
    for _ in range(4):
        crossed = _initialize(stack.url("crm"), github.access_token)
        assert crossed.status_code == 401, crossed.text
        challenge = crossed.headers["WWW-Authenticate"]
        assert 'error="invalid_token"' in challenge
        crm_prm = f"{stack.proxy_url}/.well-known/oauth-protected-resource/crm/mcp"
        assert f'resource_metadata="{crm_prm}"' in challenge
        assert _initialize(stack.url("github"), github.access_token).status_code == 200

    # A client of its own for /crm/mcp works, and its token opens only crm.
    crm = anyio.run(_connect, stack.url("crm"))
    assert {"echo", "whoami"} <= set(crm.tools)
    assert _aud(crm.access_token) == stack.url("crm")
    assert _initialize(stack.url("crm"), crm.access_token).status_code == 200
    assert _initialize(stack.url("github"), crm.access_token).status_code == 401
