"""The end-to-end stack: redis-server, oidc-provider-mock, the proxy (gunicorn) and
an SDK-built MCP resource server, started and stopped with support/processes.py.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import requests

from support.processes import DEFAULT_TIMEOUT
from support.processes import ManagedProcess
from support.processes import ProcessStartError
from support.processes import free_port
from support.processes import http_ok
from support.processes import start_http
from support.processes import start_process
from support.processes import start_proxy
from support.processes import start_redis

RESOURCE_SERVER_SCRIPT = Path(__file__).with_name("mcp_resource_server.py")


def start_idp(
    *, extra_args: list[str] | None = None, timeout: float = DEFAULT_TIMEOUT
) -> ManagedProcess:
    """oidc-provider-mock, the upstream IdP.

    Its advertised issuer is the Host it is reached by, so the returned URL uses
    127.0.0.1 and callers must keep using exactly that form.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "oidc_provider_mock", "-p", str(port)]
    argv += extra_args or []
    proc = start_http(
        "idp",
        argv,
        port=port,
        ready_path="/.well-known/openid-configuration",
        timeout=timeout,
    )
    issuer = requests.get(f"{url}/.well-known/openid-configuration", timeout=5).json()[
        "issuer"
    ]
    if issuer != url:
        proc.close()
        raise ProcessStartError(f"idp advertises issuer {issuer!r}, expected {url!r}")
    return proc


def proxy_env(
    *,
    public_url: str,
    idp_url: str,
    audience: str,
    redis_url: str,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The proxy's environment per the contract; ``overrides`` win."""
    env = {
        "PUBLIC_URL": public_url,
        "OAUTH_ISSUER": idp_url,
        "OAUTH_CLIENT_ID": "proxy-client",
        "OAUTH_CLIENT_SECRET": "proxy-secret",
        "OAUTH_AUDIENCE": audience,
        "REDIS_URL": redis_url,
        "PROXY_SECRET_KEY": secrets.token_hex(32),
        "MCP_SCOPES": "mcp",
    }
    env.update(overrides or {})
    return env


def start_resource_server(
    *,
    issuer: str,
    port: int,
    required_scope: str = "mcp",
    timeout: float = DEFAULT_TIMEOUT,
) -> ManagedProcess:
    """The SDK-built MCP resource server trusting ``issuer``; url is its /mcp."""
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, str(RESOURCE_SERVER_SCRIPT), "--port", str(port)]
    argv += ["--issuer", issuer, "--resource", f"{base}/mcp"]
    argv += ["--required-scope", required_scope]
    return start_process(
        "resource-server",
        argv,
        port=port,
        url=f"{base}/mcp",
        ready=http_ok(f"{base}/.well-known/oauth-protected-resource/mcp"),
        timeout=timeout,
    )


@dataclass
class Stack:
    """The running processes and the URLs a test needs."""

    redis_url: str
    idp_url: str
    proxy_url: str
    mcp_url: str
    proxy_env: dict[str, str]
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    def dump_logs(self) -> None:
        for proc in self.processes.values():
            proc.dump()

    def stop(self) -> None:
        # Reverse start order: clients of a service go before the service.
        for proc in reversed(list(self.processes.values())):
            proc.close()


@contextlib.contextmanager
def running_stack(
    *,
    proxy_overrides: Mapping[str, str] | None = None,
    workers: int = 2,
    proxy_args: list[str] | None = None,
) -> Iterator[Stack]:
    """redis-server + IdP + proxy (gunicorn) + resource server, torn down on exit."""
    processes: dict[str, ManagedProcess] = {}
    try:
        processes["redis"] = start_redis()
        processes["idp"] = start_idp()
        proxy_port, rs_port = free_port(), free_port()
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        mcp_url = f"http://127.0.0.1:{rs_port}/mcp"
        env = proxy_env(
            public_url=proxy_url,
            idp_url=processes["idp"].url,
            audience=mcp_url,
            redis_url=processes["redis"].url,
            overrides=proxy_overrides,
        )
        processes["proxy"] = start_proxy(
            env, port=proxy_port, workers=workers, extra_args=proxy_args
        )
        processes["resource-server"] = start_resource_server(
            issuer=proxy_url, port=rs_port
        )
        yield Stack(
            redis_url=processes["redis"].url,
            idp_url=processes["idp"].url,
            proxy_url=proxy_url,
            mcp_url=mcp_url,
            proxy_env=env,
            processes=processes,
        )
    finally:
        for proc in reversed(list(processes.values())):
            proc.close()
