"""Forward-auth behind a real nginx, configured as the README says, end to end.

Real processes: redis-server, oidc-provider-mock, the proxy under gunicorn in
forward-auth mode (no MCP_BACKEND_URL) with MCP_SCOPES=mcp:read and
MCP_TOOL_SCOPES making `count` a write tool, the demo MCP server, and nginx
in front of both: `auth_request` asks the proxy about every /mcp request,
whose subrequest carries the MCP 2026-07-28 client's `Mcp-Method`/`Mcp-Name`
but no body. The official SDK client (pinned to 2026-07-28 by `mode="auto"`)
steps up through nginx by itself: nginx passes the 403's challenge on only
because of the README's `@mcp_forbidden` block (J65).

Skipped where nginx is not installed (`apt-get install nginx-light`).
"""

from __future__ import annotations

import json
import shutil
import textwrap
import typing as t
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import requests
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from support.processes import ManagedProcess
from support.processes import free_port
from support.processes import start_demo_backend
from support.processes import start_process
from support.processes import start_proxy

from .conftest import require_redis_server
from .gateway_stack import shared_services
from .mcp_oauth_client import BrowserUser
from .mcp_oauth_client import InMemoryTokenStorage
from .mcp_oauth_client import make_provider
from .mcp_oauth_client import recording_http_client
from .stack import proxy_env

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()),
    None,
)
USER = "nginx-step-up@example.com"
TIMEOUT = 30.0
TOOL_SCOPES = {
    "tools": {"echo": "mcp:read", "count": "mcp:write"},
    "implies": {"mcp:write": ["mcp:read"]},
}


def nginx_conf(workdir: Path, port: int, proxy_port: int, backend: str) -> str:
    """The README's forward-auth locations, around a minimal server block."""
    proxy = f"http://127.0.0.1:{proxy_port}"
    return textwrap.dedent(
        f"""\
        worker_processes 1;
        daemon off;
        pid {workdir}/nginx.pid;
        error_log {workdir}/error.log info;
        events {{ worker_connections 256; }}
        http {{
          access_log {workdir}/access.log;
          client_body_temp_path {workdir}/body;
          proxy_temp_path {workdir}/proxy;
          fastcgi_temp_path {workdir}/fastcgi;
          uwsgi_temp_path {workdir}/uwsgi;
          scgi_temp_path {workdir}/scgi;
          server {{
            listen 127.0.0.1:{port};

            location = /_oauth_check {{
                internal;
                proxy_pass              {proxy}/oauth2/forward-auth;
                proxy_pass_request_body off;
                proxy_set_header        Content-Length "";
                proxy_set_header        Authorization $http_authorization;
                proxy_set_header        X-Forwarded-Uri $request_uri;
            }}

            location /mcp {{
                auth_request     /_oauth_check;
                auth_request_set $mcp_user $upstream_http_x_forwarded_user;
                auth_request_set $auth_www_authenticate $upstream_http_www_authenticate;
                error_page 403 = @mcp_forbidden;
                proxy_set_header Authorization "";
                proxy_set_header X-Forwarded-User $mcp_user;
                proxy_buffering  off;
                proxy_read_timeout 1h;
                proxy_pass       {backend};
            }}

            location @mcp_forbidden {{
                add_header WWW-Authenticate $auth_www_authenticate always;
                return 403;
            }}

            location ~ ^/(oauth2|\\.well-known)/ {{ proxy_pass {proxy}; }}
          }}
        }}
        """
    )


def start_nginx(workdir: Path, port: int, conf: str) -> ManagedProcess:
    path = workdir / "nginx.conf"
    path.write_text(conf)

    def listening() -> bool:
        requests.get(f"http://127.0.0.1:{port}/", timeout=1.0)  # any answer
        return True

    return start_process(
        "nginx",
        [t.cast(str, NGINX), "-c", str(path), "-p", str(workdir), "-e", "stderr"],
        port=port,
        url=f"http://127.0.0.1:{port}",
        ready=listening,
    )


@pytest.fixture(scope="module")
def mcp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if NGINX is None:
        pytest.skip("nginx is not installed")
    require_redis_server()
    workdir = tmp_path_factory.mktemp("nginx")
    with shared_services() as services:
        processes: list[ManagedProcess] = []
        try:
            backend = start_demo_backend()
            processes.append(backend)
            nginx_port, proxy_port = free_port(), free_port()
            public = f"http://127.0.0.1:{nginx_port}"
            env = proxy_env(
                public_url=public,
                idp_url=services.idp.url,
                audience=f"{public}/mcp",
                redis_url=services.redis.url,
                overrides={
                    "MCP_SCOPES": "mcp:read",
                    "MCP_TOOL_SCOPES": json.dumps(TOOL_SCOPES),
                },
            )
            processes.append(start_proxy(env, port=proxy_port, workers=1))
            backend_origin = backend.url.removesuffix("/mcp")
            conf = nginx_conf(workdir, nginx_port, proxy_port, backend_origin)
            processes.append(start_nginx(workdir, nginx_port, conf))
            yield f"{public}/mcp"
        finally:
            for proc in reversed(processes):
                proc.close()


async def _step_up(mcp_url: str) -> dict[str, t.Any]:
    storage = InMemoryTokenStorage()
    browser = BrowserUser(USER)
    provider = make_provider(mcp_url, storage, browser)
    http, events = recording_http_client(provider, TIMEOUT)
    with anyio.fail_after(TIMEOUT * 3):
        async with (
            http,
            Client(
                streamable_http_client(mcp_url, http_client=http), mode="auto"
            ) as client,
        ):
            echo = await client.call_tool("echo", {"text": "read is enough"})
            assert storage.tokens is not None
            read_scope = storage.tokens.scope
            counted = await client.call_tool("count", {"to": 2, "delay_seconds": 0})
            return {
                "version": client.protocol_version,
                "echo": echo,
                "counted": counted,
                "read_scope": read_scope,
                "final_scope": storage.tokens.scope,
                "logins": len(browser.logins),
                "statuses": [e.status for e in events if e.url.startswith(mcp_url)],
            }


def test_the_sdk_steps_up_through_nginx_on_the_forward_auth_challenge(
    mcp_url: str,
) -> None:
    """PRM-11 in forward-auth mode: Mcp-Name count → 403 insufficient_scope,
    passed on by nginx → re-authorization with the union → the call runs."""
    report = anyio.run(_step_up, mcp_url)
    assert report["version"] == "2026-07-28"
    assert not report["echo"].is_error
    assert not report["counted"].is_error, report["counted"].content
    assert "mcp:write" not in (report["read_scope"] or "").split()
    assert {"mcp:read", "mcp:write"} <= set(report["final_scope"].split())
    assert report["logins"] == 2
    assert 403 in report["statuses"]


def test_nginx_passes_a_401_challenge_once(mcp_url: str) -> None:
    """nginx copies a 401's WWW-Authenticate itself; the README's block for
    403 must not add a second copy."""
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    unauthorized = requests.post(mcp_url, json=call, timeout=TIMEOUT)
    assert unauthorized.status_code == 401
    challenges = unauthorized.raw.headers.getlist("WWW-Authenticate")
    assert len(challenges) == 1
    assert "resource_metadata=" in challenges[0]
