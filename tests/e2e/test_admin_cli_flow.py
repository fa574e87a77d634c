"""The admin CLI against a running proxy: gunicorn with 2 workers, a real IdP, Redis.

An operator offboards a user (``grants revoke --user``) or disables a client
(``clients disable``) with ``python -m proxy admin`` in its own process, and
the very next request carrying that user's or client's tokens is refused on
every worker: the gateway's forward-auth answers 401, the refresh is refused.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from proxy.oauth.pkce import s256
from support.processes import REPO_ROOT
from support.processes import ManagedProcess
from support.processes import free_port
from support.processes import start_proxy

from .gateway_stack import scripted_tokens
from .mcp_oauth_client import DEFAULT_REDIRECT_URI
from .stack import proxy_env

#: Requests after each admin action: enough to land on both workers.
REQUESTS_AFTER = 6
TIMEOUT = 10.0


@dataclass
class Proxy:
    url: str
    mcp_url: str
    env: dict[str, str]
    process: ManagedProcess


@pytest.fixture(scope="module")
def proxy(redis_url: str, idp_url: str) -> Iterator[Proxy]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = proxy_env(
        public_url=url,
        idp_url=idp_url,
        audience=f"{url}/mcp",
        redis_url=redis_url,
        overrides={"REDIS_KEY_PREFIX": f"e2e-admin-{uuid.uuid4().hex[:8]}:"},
    )
    process = start_proxy(env, port=port, workers=2)
    try:
        assert len(process.worker_pids()) == 2
        yield Proxy(url, f"{url}/mcp", env, process)
    except BaseException:
        process.dump()
        raise
    finally:
        process.close()


def run_admin(proxy: Proxy, tmp_path: Path, *argv: str) -> dict[str, object]:
    """`python -m proxy admin ... --json` as its own process, as an operator runs it."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO_ROOT),
        "REDIS_URL": proxy.env["REDIS_URL"],
        "REDIS_KEY_PREFIX": proxy.env["REDIS_KEY_PREFIX"],
        "PROXY_SECRET_KEY": proxy.env["PROXY_SECRET_KEY"],
    }
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "proxy", "admin", *argv, "--json"],
        env=env,
        cwd=tmp_path,  # no .env of the developer's
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    audit = [json.loads(line) for line in done.stderr.splitlines() if line]
    assert any(line["event"] == "admin.action" for line in audit), done.stderr
    return dict(json.loads(done.stdout))


def forward_auth(proxy: Proxy, access_token: str) -> int:
    response = requests.get(
        f"{proxy.url}/oauth2/forward-auth",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=TIMEOUT,
    )
    return response.status_code


def refused_everywhere(proxy: Proxy, access_token: str) -> bool:
    """Forward-auth refuses the token on each of several fresh connections."""
    statuses = [forward_auth(proxy, access_token) for _ in range(REQUESTS_AFTER)]
    return statuses == [401] * REQUESTS_AFTER


def refresh(proxy: Proxy, tokens: dict[str, str]) -> requests.Response:
    return requests.post(
        f"{proxy.url}/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": tokens["client_id"],
        },
        timeout=TIMEOUT,
    )


def test_offboarding_a_user_ends_their_tokens_on_every_worker(
    proxy: Proxy, tmp_path: Path
) -> None:
    user = f"leaver-{secrets.token_hex(4)}@example.com"
    tokens = scripted_tokens(proxy.url, proxy.mcp_url, user)
    stays = scripted_tokens(proxy.url, proxy.mcp_url, "stayer@example.com")
    assert forward_auth(proxy, tokens["access_token"]) == 200

    result = run_admin(proxy, tmp_path, "grants", "revoke", "--user", user)

    assert result["count"] == 1
    statuses = [
        forward_auth(proxy, tokens["access_token"]) for _ in range(REQUESTS_AFTER)
    ]
    assert statuses == [401] * REQUESTS_AFTER
    refused = refresh(proxy, tokens)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    # Nobody else was touched.
    assert forward_auth(proxy, stays["access_token"]) == 200
    assert refresh(proxy, stays).status_code == 200


def test_disabling_a_client_ends_its_tokens_and_refuses_it_everywhere(
    proxy: Proxy, tmp_path: Path
) -> None:
    tokens = scripted_tokens(proxy.url, proxy.mcp_url, "user@example.com")
    assert forward_auth(proxy, tokens["access_token"]) == 200

    result = run_admin(proxy, tmp_path, "clients", "disable", tokens["client_id"])

    assert result["count"] == 1
    statuses = [
        forward_auth(proxy, tokens["access_token"]) for _ in range(REQUESTS_AFTER)
    ]
    assert statuses == [401] * REQUESTS_AFTER
    refused = refresh(proxy, tokens)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    query = urlencode(
        {
            "response_type": "code",
            "client_id": tokens["client_id"],
            "redirect_uri": DEFAULT_REDIRECT_URI,
            "code_challenge": s256(secrets.token_urlsafe(48)),
            "code_challenge_method": "S256",
        }
    )
    page = requests.get(
        f"{proxy.url}/oauth2/authorize?{query}",
        headers={"Accept": "text/html"},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert page.status_code == 400
    assert "Location" not in page.headers
