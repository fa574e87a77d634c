"""The gateway-mode stack: the proxy (gunicorn) serving /mcp in front of the demo
MCP server, built from the process helpers in support/processes.py.

redis-server and the IdP may be shared by several proxies; each proxy gets its
own Redis key prefix (its secret key seals its own signing keys).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import uuid
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import urlencode

import requests

from proxy.oauth.pkce import s256
from support.processes import ManagedProcess
from support.processes import free_port
from support.processes import start_demo_backend
from support.processes import start_proxy
from support.processes import start_redis

from .mcp_oauth_client import DEFAULT_REDIRECT_URI
from .mcp_oauth_client import drive_browser_login
from .stack import proxy_env
from .stack import start_idp

#: What an MCP client sends as Accept on every Streamable HTTP POST.
ACCEPT = "application/json, text/event-stream"


def rpc_messages(content_type: str, body: str) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a JSON or SSE (`data:` lines) response body."""
    if content_type.startswith("application/json"):
        return [json.loads(body)]
    return [
        json.loads(line[len("data:") :])
        for line in body.splitlines()
        if line.startswith("data:") and line[len("data:") :].strip()
    ]


@dataclass
class GatewayStack:
    """A running gateway: the MCP URL clients use is the proxy's own /mcp."""

    proxy_url: str
    mcp_url: str
    backend_url: str
    idp_url: str
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    def dump_logs(self) -> None:
        for proc in self.processes.values():
            proc.dump()


@contextlib.contextmanager
def running_gateway(
    *,
    redis: ManagedProcess,
    idp: ManagedProcess,
    workers: int = 2,
    threads: int | None = None,
    backend_url: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Iterator[GatewayStack]:
    """The proxy under gunicorn in gateway mode, plus a demo backend unless
    ``backend_url`` is given; everything started here stops on exit."""
    processes: dict[str, ManagedProcess] = {}
    try:
        if backend_url is None:
            processes["backend"] = start_demo_backend()
            backend_url = processes["backend"].url
        port = free_port()
        proxy_url = f"http://127.0.0.1:{port}"
        extra = {
            "MCP_BACKEND_URL": backend_url,
            "REDIS_KEY_PREFIX": f"gw-{uuid.uuid4().hex[:8]}:",
        }
        if threads is not None:
            extra["GUNICORN_THREADS"] = str(threads)
        env = proxy_env(
            public_url=proxy_url,
            idp_url=idp.url,
            audience=f"{proxy_url}/mcp",
            redis_url=redis.url,
            overrides={**extra, **(overrides or {})},
        )
        processes["proxy"] = start_proxy(env, port=port, workers=workers)
        yield GatewayStack(
            proxy_url=proxy_url,
            mcp_url=f"{proxy_url}/mcp",
            backend_url=backend_url,
            idp_url=idp.url,
            processes=processes,
        )
    finally:
        for proc in reversed(list(processes.values())):
            proc.close()


def scripted_tokens(
    proxy_url: str, mcp_url: str, user: str, *, timeout: float = 10.0
) -> dict[str, str]:
    """Register, log in through the browser flow, redeem: the token response plus
    ``client_id``. The scripted equivalent of an MCP client's first connection."""
    redirect_uri = DEFAULT_REDIRECT_URI
    registered = requests.post(
        f"{proxy_url}/oauth2/register",
        json={"redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none"},
        timeout=timeout,
    )
    assert registered.status_code == 201, registered.text
    client_id = registered.json()["client_id"]
    verifier = secrets.token_urlsafe(48)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
            "state": "st",
            "resource": mcp_url,
        }
    )
    code, state, _ = drive_browser_login(
        f"{proxy_url}/oauth2/authorize?{query}", user, timeout=timeout
    )
    assert state == "st"
    response = requests.post(
        f"{proxy_url}/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "resource": mcp_url,
        },
        timeout=timeout,
    )
    assert response.status_code == 200, response.text
    return {**response.json(), "client_id": client_id}


@dataclass
class SharedServices:
    """redis-server and the IdP, shared by the gateways of one test module."""

    redis: ManagedProcess
    idp: ManagedProcess


@contextlib.contextmanager
def shared_services() -> Iterator[SharedServices]:
    redis = start_redis()
    try:
        idp = start_idp()
        try:
            yield SharedServices(redis, idp)
        finally:
            idp.close()
    finally:
        redis.close()
