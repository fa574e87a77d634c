"""A small real stack for the Redis-fault tests: its own redis-server (configured
per test), oidc-provider-mock, and the proxy under gunicorn (2 workers), from
support/processes.py; plus the few client calls the tests make.

Each test gets its own redis-server because the tests fill it, flood it or
count its keys.
"""

from __future__ import annotations

import collections
import contextlib
import json
import uuid
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
import requests

from support.processes import ManagedProcess
from support.processes import free_port
from support.processes import start_proxy
from support.processes import start_redis

from ..e2e.gateway_stack import scripted_tokens
from ..e2e.stack import proxy_env
from ..e2e.stack import start_idp

#: What ChatGPT- and Claude-like clients send (tests/e2e registers the same way).
REALISTIC_REGISTRATION = {
    "client_name": "Flood MCP client",
    "redirect_uris": ["http://127.0.0.1:33418/callback"],
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "token_endpoint_auth_method": "none",
}


def max_size_registration(limit: int = 4096) -> bytes:
    """A valid registration of exactly ``limit`` bytes that stores as much as it
    can: a 512-character name and as many long redirect URIs as fit (max 20)."""
    body: dict[str, Any] = {
        "client_name": "N" * 512,
        "token_endpoint_auth_method": "none",
        "redirect_uris": [],
    }
    uri = "https://flood.example/" + "p" * 150 + "/callback{}"
    while len(body["redirect_uris"]) < 20:
        candidate = dict(body, redirect_uris=[*body["redirect_uris"], uri.format(0)])
        if len(json.dumps(candidate)) > limit - 8:
            break
        body["redirect_uris"].append(uri.format(len(body["redirect_uris"])))
    raw = json.dumps(body).encode()
    return raw[:-1] + b" " * (limit - len(raw)) + b"}"


@dataclass
class FaultStack:
    proxy_url: str
    resource: str
    prefix: str
    redis: ManagedProcess
    proxy: ManagedProcess

    def redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url, socket_timeout=10)

    def login(self, user: str) -> dict[str, str]:
        """Register, log in through the browser flow at the IdP, redeem."""
        return scripted_tokens(self.proxy_url, self.resource, user)

    def refresh(
        self, client_id: str, refresh_token: str, session: Any = requests
    ) -> requests.Response:
        return session.post(  # type: ignore[no-any-return]
            f"{self.proxy_url}/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": client_id,
            },
            # Above the refresh lease (UPSTREAM_TIMEOUT_SECONDS + 5 s): a retry
            # may wait for a lease whose holder died (test_worker_killed.py).
            timeout=30,
        )

    def readyz(self) -> requests.Response:
        return requests.get(f"{self.proxy_url}/readyz", timeout=5)

    def key_counts(self) -> dict[str, int]:
        """Our keys by kind (the part of the name after the prefix, to ':')."""
        counts: collections.Counter[str] = collections.Counter()
        for key in self.redis_client().scan_iter(match=f"{self.prefix}*", count=1000):
            name = key.decode()[len(self.prefix) :]
            counts[name.split(":", 1)[0]] += 1
        return dict(sorted(counts.items()))


@contextlib.contextmanager
def fault_stack(
    *,
    redis_args: list[str] | None = None,
    overrides: Mapping[str, str] | None = None,
    workers: int = 2,
) -> Iterator[FaultStack]:
    processes: list[ManagedProcess] = []
    try:
        redis_proc = start_redis(extra_args=redis_args)
        processes.append(redis_proc)
        idp = start_idp()
        processes.append(idp)
        port = free_port()
        proxy_url = f"http://127.0.0.1:{port}"
        prefix = f"fault-{uuid.uuid4().hex[:8]}:"
        env = proxy_env(
            public_url=proxy_url,
            idp_url=idp.url,
            audience=f"{proxy_url}/mcp",
            redis_url=redis_proc.url,
            overrides={"REDIS_KEY_PREFIX": prefix, **(overrides or {})},
        )
        proxy = start_proxy(env, port=port, workers=workers)
        processes.append(proxy)
        yield FaultStack(proxy_url, f"{proxy_url}/mcp", prefix, redis_proc, proxy)
    finally:
        for proc in reversed(processes):
            proc.close()
