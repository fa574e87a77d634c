"""The official MCP SDK client, from nothing to tool calls through the proxy.

Real processes only: redis-server, the proxy under gunicorn with two workers (a
flow may hop between workers, which share only Redis), oidc-provider-mock as the
upstream IdP, and an MCP resource server that verifies the proxy's JWTs offline.
"""

from __future__ import annotations

import functools
import json

import anyio
from joserfc import jws

from .mcp_oauth_client import DEFAULT_REDIRECT_URI
from .mcp_oauth_client import FlowReport
from .mcp_oauth_client import connect_and_call
from .stack import Stack

USER = "alice-e2e@example.com"


def _jwt_parts(token: str) -> tuple[dict[str, object], dict[str, object]]:
    """Header and claims of a JWT, unverified (the resource server verified it)."""
    compact = jws.extract_compact(token.encode())
    return dict(compact.protected), json.loads(compact.payload)


def test_sdk_client_connects_from_scratch_calls_tools_and_refreshes(
    e2e_stack: Stack,
) -> None:
    report: FlowReport = anyio.run(
        functools.partial(connect_and_call, e2e_stack.mcp_url, USER)
    )
    proxy = e2e_stack.proxy_url

    # Discovery and registration went through the proxy, once.
    assert report.http[0].url == e2e_stack.mcp_url
    assert report.http[0].status == 401
    assert [e.status for e in report.requests_to("/oauth2/register", "POST")] == [201]
    client = report.storage.client_info
    assert client is not None
    assert client.client_id

    # One browser login: consent page (CSRF-protected) -> IdP -> callback -> client.
    assert len(report.logins) == 1
    login = report.logins[0]
    assert report.authorize_urls[0].startswith(f"{proxy}/oauth2/authorize?")
    assert login.consent_form is not None
    assert {"request", "csrf_token"} <= set(login.consent_form.hidden)
    assert login.redirect.startswith(f"{DEFAULT_REDIRECT_URI}?")
    assert login.params["iss"] == proxy
    assert any(h.url.startswith(f"{proxy}/oauth2/callback?") for h in login.hops)

    # The tools saw the user who logged in at the IdP, through a proxy token.
    assert {"whoami", "echo"} <= set(report.tools)
    who = report.before.whoami
    assert USER in str(who["sub"])
    assert who["iss"] == proxy
    assert who["aud"] == e2e_stack.mcp_url
    assert who["client_id"] == client.client_id
    assert "mcp" in str(who["scope"]).split()
    assert report.before.echo == "before refresh"

    before = report.tokens_before
    header, claims = _jwt_parts(before.access_token)
    assert header["alg"] == "ES256"
    assert header["typ"] == "at+jwt"
    assert header["kid"]
    assert {"iss", "sub", "aud", "client_id", "scope", "exp", "iat", "jti"} <= set(
        claims
    )
    assert before.refresh_token

    # The refresh rotated both tokens and the new access token works.
    after = report.tokens_after
    assert after is not None
    assert after.access_token != before.access_token
    assert after.refresh_token
    assert after.refresh_token != before.refresh_token
    token_posts = report.requests_to("/oauth2/token", "POST")
    assert [e.status for e in token_posts] == [200, 200]
    assert len(report.logins) == 1, "the refresh must not need the browser again"
    assert report.after is not None
    assert report.after.whoami["sub"] == who["sub"]
    assert report.after.echo == "after refresh"
    _, new_claims = _jwt_parts(after.access_token)
    assert new_claims["jti"] != claims["jti"]
