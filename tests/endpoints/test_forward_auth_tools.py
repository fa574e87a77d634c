"""Forward-auth applies the per-tool scopes and the tool policy to the tool that
`Mcp-Method`/`Mcp-Name` name (decision J65).

The app runs in forward-auth mode (no MCP_BACKEND_URL) in the Flask test
client on a real redis-server, with tokens from the real front and back
channel (`oauth`, oidc-provider-mock upstream). Each request is what nginx's
`auth_request`, Traefik or Caddy send: the original request's headers, no
body. The rules are the gateway's (tests/endpoints/test_gateway_tools.py).
"""

from __future__ import annotations

import json
import typing as t

import pytest

from proxy import create_app
from proxy.config.mcp_servers import McpServer
from proxy.config.settings import Settings
from proxy.config.tool_rules import RulesSource
from proxy.config.tool_rules import read_policy
from proxy.config.tool_rules import read_tool_scopes
from tests.oauth_client import OAuthTestClient

from ._helpers import ISSUER
from .test_gateway_tools import PRM_URL
from .test_gateway_tools import token_for
from .test_gateway_tools import with_rules

FORWARD_AUTH = "/oauth2/forward-auth"


@pytest.fixture
def store_client(real_redis: t.Any) -> t.Any:
    return real_redis


@pytest.fixture
def forward_settings(settings: Settings, tmp_path: t.Any) -> Settings:
    """Forward-auth mode: no backend; the gateway tests' scopes and policy."""
    return with_rules(settings.replace(mcp_scopes=("mcp:read",)), tmp_path)


@pytest.fixture
def app(forward_settings: Settings, store_client: t.Any) -> t.Any:
    return create_app(forward_settings, redis_client=store_client)


@pytest.fixture
def events(app: t.Any) -> list[t.Any]:
    seen: list[t.Any] = []
    app.extensions["proxy"].events.subscribe(seen.append)
    return seen


def check(
    client: t.Any,
    token: str,
    tool: str | None = None,
    *,
    method: str | None = "tools/call",
    verb: str = "POST",
    extra: list[tuple[str, str]] | None = None,
) -> t.Any:
    """A forward-auth subrequest for a call of `tool`, as nginx sends it."""
    headers = [("Authorization", f"Bearer {token}"), ("X-Forwarded-Uri", "/mcp")]
    if method is not None:
        headers.append(("Mcp-Method", method))
    if tool is not None:
        headers.append(("Mcp-Name", tool))
    headers += extra or []
    return client.open(FORWARD_AUTH, method=verb, headers=headers)


def denials(events: list[t.Any]) -> list[tuple[str, str, str | None]]:
    return [
        (e.fields["reason"], e.fields["tool"], e.fields.get("where"))
        for e in events
        if e.name == "gateway.tool_denied"
    ]


# --------------------------------------------------------------------------- #
# Allowed, step-up, and the policy
# --------------------------------------------------------------------------- #


def test_an_allowed_tool_passes_with_the_identity_headers(
    client: t.Any, oauth: OAuthTestClient, idp_url: str
) -> None:
    token = token_for(oauth, idp_url, "reader@example.com", "mcp:read")
    response = check(client, token, "echo")
    assert response.status_code == 200
    assert response.headers["X-Forwarded-Email"] == "reader@example.com"
    assert response.headers["X-Forwarded-Scope"] == "mcp:read"
    assert response.headers["X-Forwarded-User"]
    assert "WWW-Authenticate" not in response.headers


@pytest.mark.parametrize("verb", ["POST", "GET", "HEAD"])
def test_a_tool_needing_more_scope_gets_the_gateways_step_up_challenge(
    client: t.Any,
    oauth: OAuthTestClient,
    idp_url: str,
    events: list[t.Any],
    verb: str,
) -> None:
    """PRM-11 through the reverse proxy: 403 insufficient_scope whose scope is
    the granted plus the needed (SEP-2350), for nginx to pass on."""
    token = token_for(oauth, idp_url, "stepper@example.com", "mcp:read")
    response = check(client, token, "count", verb=verb)
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", scope="mcp:read mcp:write", '
        f'resource_metadata="{PRM_URL}"'
    )
    assert response.headers["Cache-Control"] == "no-store"
    assert "X-Forwarded-User" not in response.headers
    if verb != "HEAD":
        assert response.get_json()["error"] == "insufficient_scope"
    assert denials(events) == [("insufficient_scope", "count", "forward_auth")]


def test_after_step_up_the_same_tool_passes(
    client: t.Any, oauth: OAuthTestClient, idp_url: str
) -> None:
    token = token_for(oauth, idp_url, "writer@example.com", "mcp:write")
    assert check(client, token, "count").status_code == 200
    assert check(client, token, "echo").status_code == 200  # write implies read


@pytest.mark.parametrize(
    ("user", "claims", "tool", "status", "rule"),
    [
        ("admin@example.com", {"groups": ["admins"]}, "delete_repo", 200, None),
        ("staff@example.com", {"groups": ["staff"]}, "delete_repo", 403, 3),
        # Rule 1: a DCR client is never catalogued, and contractors are refused.
        ("c@example.com", {"groups": ["admins", "contractors"]}, "delete_repo", 403, 1),
        ("eve@evil.example", {}, "whoami", 403, 4),  # email domain
        ("mallory@example.com", {}, "count", 403, 5),  # user
        ("trent@example.com", {}, "count", 200, None),
    ],
)
def test_the_policy_refuses_by_group_domain_user_and_client(
    client: t.Any,
    oauth: OAuthTestClient,
    idp_url: str,
    events: list[t.Any],
    user: str,
    claims: dict[str, t.Any],
    tool: str,
    status: int,
    rule: int | None,
) -> None:
    token = token_for(oauth, idp_url, user, "mcp:write", **claims)
    response = check(client, token, tool)
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 200:
        assert response.headers["X-Forwarded-Email"] == user
        assert denials(events) == []
        return
    body = response.get_json()
    assert body["error"]["code"] == -32003
    assert body["id"] is None  # the call's id is in the body, never seen here
    assert "WWW-Authenticate" not in response.headers  # J54: no futile step-up
    assert "X-Forwarded-User" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    denied = [e for e in events if e.name == "gateway.tool_denied"]
    assert len(denied) == 1
    assert denied[0].fields["tool"] == tool
    assert denied[0].fields["rule"] == rule
    assert denied[0].fields["where"] == "forward_auth"
    assert denied[0].fields["sub"]


def test_a_rule_naming_the_client_id_refuses_that_client_only(
    forward_settings: Settings,
    store_client: t.Any,
    client: t.Any,
    oauth: OAuthTestClient,
    idp_url: str,
    tmp_path: t.Any,
) -> None:
    """A second worker (same Redis) whose policy names one DCR client."""
    refused = token_for(oauth, idp_url, "a@example.com", "mcp:read")
    other = token_for(oauth, idp_url, "b@example.com", "mcp:read")
    refused_client = client.get(
        FORWARD_AUTH, headers={"Authorization": f"Bearer {refused}"}
    ).headers["X-Forwarded-Client-Id"]
    policy = {
        "default": "allow",
        "rules": [{"effect": "deny", "tools": ["echo"], "clients": [refused_client]}],
    }
    worker = create_app(
        with_rules(forward_settings, tmp_path, policy=policy),
        redis_client=store_client,
    ).test_client()
    assert check(worker, refused, "echo").status_code == 403
    assert check(worker, refused, "search").status_code == 200
    assert check(worker, other, "echo").status_code == 200


def test_a_base64_mcp_name_is_decoded_by_the_gateways_rule(
    client: t.Any, oauth: OAuthTestClient, idp_url: str
) -> None:
    """`=?base64?…?=` is the same rule the gateway compares with the body."""
    token = token_for(oauth, idp_url, "s2@example.com", "mcp:write")
    assert check(client, token, "=?base64?ZGVsZXRlX3JlcG8=?=").status_code == 403
    assert check(client, token, "=?base64?ZWNobw==?=").status_code == 200  # echo


# --------------------------------------------------------------------------- #
# No headers, other methods, and a tool that is not named
# --------------------------------------------------------------------------- #


def test_without_routing_headers_only_the_token_is_checked(
    client: t.Any, oauth: OAuthTestClient, idp_url: str, events: list[t.Any]
) -> None:
    """A 2025-11-25 client names no tool: the policy cannot apply (J65)."""
    token = token_for(oauth, idp_url, "old@example.com", "mcp:read")
    response = check(client, token, method=None)
    assert response.status_code == 200
    assert response.headers["X-Forwarded-Email"] == "old@example.com"
    assert denials(events) == []


@pytest.mark.parametrize(
    ("method", "name"),
    [("tools/list", None), ("initialize", None), ("prompts/get", "delete_repo")],
)
def test_a_method_other_than_tools_call_is_not_a_tool_check(
    client: t.Any, oauth: OAuthTestClient, idp_url: str, method: str, name: str | None
) -> None:
    token = token_for(oauth, idp_url, "lister@example.com", "mcp:read")
    assert check(client, token, name, method=method).status_code == 200


@pytest.mark.parametrize(
    ("tool", "extra"),
    [
        (None, []),  # Mcp-Name missing
        ("", []),  # empty
        ("=?base64?not base64!?=", []),  # a malformed base64 form
        ("=?base64?/w==?=", []),  # not UTF-8
        ("echo", [("Mcp-Name", "delete_repo")]),  # sent twice (joined by WSGI)
        ("echo,delete_repo", []),  # as gunicorn joins two copies
    ],
)
def test_a_tools_call_without_a_usable_name_is_refused_with_403(
    client: t.Any,
    oauth: OAuthTestClient,
    idp_url: str,
    tool: str | None,
    extra: list[tuple[str, str]],
) -> None:
    """Fail closed, as 403 not 400: nginx's auth_request makes a 500 of a 400."""
    token = token_for(oauth, idp_url, "broken@example.com", "mcp:write")
    response = check(client, token, tool, extra=extra)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == -32020  # HeaderMismatch
    assert "WWW-Authenticate" not in response.headers
    assert "X-Forwarded-User" not in response.headers


def test_a_duplicate_mcp_method_is_refused_too(
    client: t.Any, oauth: OAuthTestClient, idp_url: str
) -> None:
    token = token_for(oauth, idp_url, "dup@example.com", "mcp:write")
    response = check(client, token, "echo", extra=[("Mcp-Method", "tools/call")])
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == -32020


def test_without_tool_rules_forward_auth_checks_the_token_alone(
    settings: Settings, store_client: t.Any, idp_url: str
) -> None:
    """Nothing changes for a deployment without rules, even an unnamed call."""
    app = create_app(settings, redis_client=store_client)
    client = app.test_client()
    token = token_for(OAuthTestClient(client), idp_url, "n@example.com", "mcp")
    assert check(client, token, None).status_code == 200
    assert check(client, token, "anything").status_code == 200


def test_a_bad_token_is_401_before_any_tool_check(client: t.Any) -> None:
    response = check(client, "not-a-token", None)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


# --------------------------------------------------------------------------- #
# MCP_SERVERS: each server's own rules, chosen by X-Forwarded-Uri
# --------------------------------------------------------------------------- #

GITHUB = ISSUER + "/github/mcp"
CRM = ISSUER + "/crm/mcp"
GITHUB_PRM = ISSUER + "/.well-known/oauth-protected-resource/github/mcp"


def two_servers(settings: Settings, tmp_path: t.Any) -> Settings:
    """github: `count` needs github:admin; crm: a policy refusing `echo`."""
    scopes = RulesSource(
        "github tool_scopes", inline=json.dumps({"tools": {"count": "github:admin"}})
    )
    policy_path = tmp_path / "crm-policy.json"
    deny_echo = {"effect": "deny", "tools": ["echo"]}
    policy_path.write_text(json.dumps({"default": "allow", "rules": [deny_echo]}))
    policy = RulesSource("crm tool_policy", path=str(policy_path))
    # Backends are never reached: forward-auth only answers the subrequest.
    return settings.replace(
        mcp_servers=(
            McpServer(
                path="/github/mcp",
                audience=GITHUB,
                scopes=("github",),
                backend_url="http://127.0.0.1:9/github",
                tool_scopes=read_tool_scopes(scopes),
            ),
            McpServer(
                path="/crm/mcp",
                audience=CRM,
                scopes=("crm",),
                backend_url="http://127.0.0.1:9/crm",
                tool_policy_source=policy,
                tool_policy=read_policy(policy),
            ),
        ),
        resource=GITHUB,
        mcp_path="/github/mcp",
    )


def server_token(oauth: OAuthTestClient, resource: str, scope: str) -> str:
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id, "alice@example.com", scope=scope, resource=resource)
    response = oauth.token(flow)
    assert response.status_code == 200, response.get_data(as_text=True)
    return t.cast(str, response.get_json()["access_token"])


def test_each_server_applies_its_own_rules_chosen_by_x_forwarded_uri(
    settings: Settings, store_client: t.Any, tmp_path: t.Any
) -> None:
    app = create_app(two_servers(settings, tmp_path), redis_client=store_client)
    client = app.test_client()
    oauth = OAuthTestClient(client)
    github = server_token(oauth, GITHUB, "github")
    crm = server_token(oauth, CRM, "crm")

    def ask(uri: str, token: str, tool: str) -> t.Any:
        return client.post(
            FORWARD_AUTH,
            headers={
                "Authorization": f"Bearer {token}",
                "X-Forwarded-Uri": uri,
                "Mcp-Method": "tools/call",
                "Mcp-Name": tool,
            },
        )

    stepped = ask("/github/mcp", github, "count")
    assert stepped.status_code == 403
    assert stepped.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", scope="github github:admin", '
        f'resource_metadata="{GITHUB_PRM}"'
    )
    assert ask("/github/mcp", github, "echo").status_code == 200  # no policy here
    denied = ask("/crm/mcp?session=1", crm, "echo")
    assert denied.status_code == 403
    assert denied.get_json()["error"]["code"] == -32003
    assert ask("/crm/mcp", crm, "count").status_code == 200  # no tool scopes here
