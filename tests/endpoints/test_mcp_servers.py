"""MCP_SERVERS: two MCP servers behind one proxy, and tokens that do not cross.

The app runs in the Flask test client on a real redis-server, with tokens from
the real front and back channel (`oauth`, oidc-provider-mock upstream). The two
backends are paths of one pytest-httpserver: each answers with its own name
and the identity headers it was given, so a test sees which backend (if any)
a request reached.
"""

from __future__ import annotations

import json
import typing as t
from urllib.parse import urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from werkzeug import Request
from werkzeug import Response

from proxy import create_app
from proxy.config.backend_identity import BackendIdentity
from proxy.config.mcp_servers import McpServer
from proxy.config.settings import Settings
from proxy.config.tool_rules import RulesSource
from proxy.config.tool_rules import read_policy
from proxy.config.tool_rules import read_tool_scopes
from tests.oauth_client import OAuthTestClient

from ._helpers import ISSUER
from ._helpers import assert_json_error
from ._helpers import redirect_params

GITHUB = ISSUER + "/github/mcp"
CRM = ISSUER + "/crm/mcp"
GITHUB_PRM = ISSUER + "/.well-known/oauth-protected-resource/github/mcp"
CRM_PRM = ISSUER + "/.well-known/oauth-protected-resource/crm/mcp"


def backend_reply(name: str) -> t.Callable[[Request], Response]:
    def reply(request: Request) -> Response:
        message = json.loads(request.get_data())
        seen = {
            "backend": name,
            "user": request.headers.get("X-Forwarded-User"),
            "identity": request.headers.get("X-MCP-Identity"),
        }
        body = {
            "jsonrpc": "2.0",
            "id": message["id"],
            "result": {"content": [{"type": "text", "text": json.dumps(seen)}]},
        }
        response = Response(json.dumps(body), mimetype="application/json")
        if message["method"] == "initialize":
            # Both backends hand out the same session id.
            response.headers["Mcp-Session-Id"] = "session-1"
        return response

    return reply


@pytest.fixture
def backends(httpserver: t.Any) -> dict[str, str]:
    urls = {}
    for name in ("github", "crm"):
        path = f"/{name}-backend/mcp"
        httpserver.expect_request(path, method="POST").respond_with_handler(
            backend_reply(name)
        )
        urls[name] = t.cast(str, httpserver.url_for(path))
    return urls


def servers(backends: dict[str, str], tmp_path: t.Any) -> tuple[McpServer, ...]:
    """github: a tool scope on `count`; crm: a policy file refusing `echo`."""
    scopes_source = RulesSource(
        "github tool_scopes", inline=json.dumps({"tools": {"count": "github:admin"}})
    )
    policy_path = tmp_path / "crm-policy.json"
    deny_echo = {"effect": "deny", "tools": ["echo"]}
    policy_path.write_text(json.dumps({"default": "allow", "rules": [deny_echo]}))
    policy_source = RulesSource("crm tool_policy", path=str(policy_path))
    return (
        McpServer(
            path="/github/mcp",
            audience=GITHUB,
            scopes=("github",),
            backend_url=backends["github"],
            tool_scopes=read_tool_scopes(scopes_source),
        ),
        McpServer(
            path="/crm/mcp",
            audience=CRM,
            scopes=("crm",),
            backend_url=backends["crm"],
            tool_policy_source=policy_source,
            tool_policy=read_policy(policy_source),
        ),
    )


@pytest.fixture
def store_client(real_redis: t.Any) -> t.Any:
    return real_redis


@pytest.fixture
def two_servers(
    settings: Settings, backends: dict[str, str], tmp_path: t.Any
) -> Settings:
    return settings.replace(
        mcp_servers=servers(backends, tmp_path),
        resource=GITHUB,
        mcp_path="/github/mcp",
        backend_identity=BackendIdentity.BOTH,
    )


@pytest.fixture
def app(two_servers: Settings, store_client: t.Any) -> t.Any:
    return create_app(two_servers, redis_client=store_client)


def token_response(
    oauth: OAuthTestClient,
    resource: str | None,
    scope: str,
    user: str = "alice@example.com",
    **token_form: str,
) -> dict[str, t.Any]:
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id, user, scope=scope, resource=resource)
    response = oauth.token(flow, **token_form)
    assert response.status_code == 200, response.get_data(as_text=True)
    return {**response.get_json(), "client_id": client_id}


@pytest.fixture
def github_token(oauth: OAuthTestClient) -> str:
    return t.cast(str, token_response(oauth, GITHUB, "github")["access_token"])


@pytest.fixture
def crm_token(oauth: OAuthTestClient) -> str:
    return t.cast(str, token_response(oauth, CRM, "crm")["access_token"])


def call(
    client: t.Any,
    path: str,
    token: str | None,
    tool: str = "whoami",
    session: str | None = None,
) -> t.Any:
    headers = {"Accept": "application/json, text/event-stream"}
    if session is not None:
        headers["Mcp-Session-Id"] = session
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": {}},
    }
    return client.post(path, json=message, headers=headers)


def seen_by(response: t.Any) -> dict[str, t.Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    text = response.get_json()["result"]["content"][0]["text"]
    return t.cast(dict[str, t.Any], json.loads(text))


def claims_of(client: t.Any, token: str) -> dict[str, t.Any]:
    jwks = client.get("/.well-known/jwks.json").get_json()
    return dict(jwt.decode(token, KeySet.import_key_set(jwks)).claims)


# --------------------------------------------------------------------------- #
# Protected resource metadata, one per server
# --------------------------------------------------------------------------- #


def test_each_server_has_its_own_protected_resource_metadata(client: t.Any) -> None:
    github = client.get(urlsplit(GITHUB_PRM).path).get_json()
    crm = client.get(urlsplit(CRM_PRM).path).get_json()
    assert github["resource"] == GITHUB
    assert github["scopes_supported"] == ["github", "github:admin"]
    assert crm["resource"] == CRM
    assert crm["scopes_supported"] == ["crm"]
    for document in (github, crm):
        assert document["authorization_servers"] == [ISSUER]
        assert "offline_access" not in document["scopes_supported"]


def test_the_bare_metadata_url_is_the_first_servers(client: t.Any) -> None:
    assert client.get("/.well-known/oauth-protected-resource").get_json()[
        "resource"
    ] == (GITHUB)


def test_metadata_for_no_configured_server_is_404(client: t.Any) -> None:
    assert client.get("/.well-known/oauth-protected-resource/mcp").status_code == 404


def test_the_as_metadata_offers_every_servers_scopes(client: t.Any) -> None:
    offered = client.get("/.well-known/oauth-authorization-server").get_json()[
        "scopes_supported"
    ]
    assert {"github", "github:admin", "crm", "offline_access"} <= set(offered)


@pytest.mark.parametrize(
    ("path", "prm", "scope"),
    [("/github/mcp", GITHUB_PRM, "github"), ("/crm/mcp", CRM_PRM, "crm")],
)
def test_the_401_challenge_points_at_that_servers_metadata(
    client: t.Any, path: str, prm: str, scope: str
) -> None:
    response = call(client, path, None)
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert f'resource_metadata="{prm}"' in challenge
    assert f'scope="{scope}"' in challenge


def test_only_the_configured_paths_are_served(client: t.Any, github_token: str) -> None:
    assert call(client, "/mcp", github_token).status_code == 404


# --------------------------------------------------------------------------- #
# Tokens: aud is the server asked for, and only that server takes it
# --------------------------------------------------------------------------- #


def test_a_token_has_the_audience_and_scopes_of_the_server_asked_for(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    body = token_response(oauth, CRM + "/", "crm github offline_access")
    claims = claims_of(client, body["access_token"])
    assert claims["aud"] == CRM
    # Another server's scope is not granted for this one.
    assert body["scope"].split() == ["crm", "offline_access"]


def test_a_github_token_reaches_github_and_is_refused_by_crm(
    client: t.Any, github_token: str
) -> None:
    assert seen_by(call(client, "/github/mcp", github_token))["backend"] == "github"
    # The same worker has it cached as verified for github: still refused here.
    response = call(client, "/crm/mcp", github_token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert f'resource_metadata="{CRM_PRM}"' in response.headers["WWW-Authenticate"]
    assert seen_by(call(client, "/github/mcp", github_token))["backend"] == "github"


def test_a_crm_token_reaches_crm_and_is_refused_by_github(
    client: t.Any, crm_token: str
) -> None:
    response = call(client, "/github/mcp", crm_token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert seen_by(call(client, "/crm/mcp", crm_token))["backend"] == "crm"
    assert call(client, "/github/mcp", crm_token).status_code == 401


def test_each_backend_gets_an_identity_jwt_for_itself(
    client: t.Any, github_token: str, crm_token: str, backends: dict[str, str]
) -> None:
    for path, token, backend in [
        ("/github/mcp", github_token, "github"),
        ("/crm/mcp", crm_token, "crm"),
    ]:
        seen = seen_by(call(client, path, token))
        assert seen["user"] == "alice@example.com"
        assert claims_of(client, seen["identity"])["aud"] == backends[backend]


# --------------------------------------------------------------------------- #
# Choosing the server at /oauth2/authorize and keeping it at /oauth2/token
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "resource",
    [
        None,  # several servers: the client must say which
        ISSUER + "/mcp",  # no server there
        "not-a-uri",
        [GITHUB, CRM],  # one token, one audience
    ],
)
def test_authorize_without_one_known_server_is_invalid_target(
    oauth: OAuthTestClient, resource: t.Any
) -> None:
    client_id = oauth.register()["client_id"]
    _, response = oauth.authorize(client_id, scope="github", resource=resource)
    assert redirect_params(response)["error"] == ["invalid_target"]


def test_a_resource_naming_the_same_server_twice_is_fine(
    oauth: OAuthTestClient,
) -> None:
    client_id = oauth.register()["client_id"]
    _, response = oauth.authorize(
        client_id, scope="github", resource=[GITHUB, GITHUB + "/"]
    )
    assert response.status_code == 200  # the consent page


def test_the_code_cannot_be_redeemed_for_another_server(
    oauth: OAuthTestClient,
) -> None:
    client_id = oauth.register()["client_id"]
    flow = oauth.login(client_id, scope="github", resource=GITHUB)
    response = oauth.token(flow, resource=CRM)
    assert_json_error(response, 400, "invalid_target")


def test_a_refresh_keeps_its_server_and_cannot_switch(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    body = token_response(oauth, GITHUB, "github offline_access")
    refreshed = oauth.refresh(body["client_id"], body["refresh_token"], resource=CRM)
    assert_json_error(refreshed, 400, "invalid_target")
    refreshed = oauth.refresh(body["client_id"], body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    token = refreshed.get_json()["access_token"]
    assert claims_of(client, token)["aud"] == GITHUB
    assert call(client, "/crm/mcp", token).status_code == 401


def test_consent_for_one_server_is_not_consent_for_the_other(
    oauth: OAuthTestClient,
) -> None:
    client_id = oauth.register()["client_id"]
    oauth.login(client_id, scope="github", resource=GITHUB)
    _, again = oauth.authorize(client_id, scope="github", resource=GITHUB)
    assert again.status_code == 302  # remembered for github
    _, other = oauth.authorize(client_id, scope="crm", resource=CRM)
    assert other.status_code == 200  # asked again for crm


def test_revoking_a_token_for_the_second_server_ends_it(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    body = token_response(oauth, CRM, "crm")
    response = client.post(
        "/oauth2/revoke",
        data={"token": body["access_token"], "client_id": body["client_id"]},
    )
    assert response.status_code == 200
    assert call(client, "/crm/mcp", body["access_token"]).status_code == 401


# --------------------------------------------------------------------------- #
# Per-server tool rules
# --------------------------------------------------------------------------- #


def test_github_tool_scopes_apply_at_github_only(
    client: t.Any, github_token: str, crm_token: str
) -> None:
    refused = call(client, "/github/mcp", github_token, tool="count")
    assert refused.status_code == 403
    challenge = refused.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert f'resource_metadata="{GITHUB_PRM}"' in challenge
    assert seen_by(call(client, "/crm/mcp", crm_token, tool="count"))


def test_the_crm_policy_applies_at_crm_only(
    client: t.Any, github_token: str, crm_token: str
) -> None:
    assert call(client, "/crm/mcp", crm_token, tool="echo").status_code == 403
    assert seen_by(call(client, "/github/mcp", github_token, tool="echo"))


# --------------------------------------------------------------------------- #
# Forward-auth picks the server by X-Forwarded-Uri
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("forwarded_uri", "github_ok", "crm_ok"),
    [
        ("/github/mcp", True, False),
        ("/github/mcp/sub?x=1", True, False),
        ("/crm/mcp", False, True),
        ("https://proxy.example/crm/mcp/", False, True),
        (None, True, False),  # the first server
        ("/elsewhere", True, False),  # no server: the first
        ("/crm/mcpx", True, False),  # not a sub-path of /crm/mcp
    ],
)
def test_forward_auth_checks_the_token_against_the_forwarded_server(
    client: t.Any,
    github_token: str,
    crm_token: str,
    forwarded_uri: str | None,
    github_ok: bool,
    crm_ok: bool,
) -> None:
    for token, ok in ((github_token, github_ok), (crm_token, crm_ok)):
        headers = {"Authorization": f"Bearer {token}"}
        if forwarded_uri is not None:
            headers["X-Forwarded-Uri"] = forwarded_uri
        response = client.get("/oauth2/forward-auth", headers=headers)
        assert response.status_code == (200 if ok else 401)


def test_the_bare_metadata_url_is_a_pathless_audiences(
    two_servers: Settings, store_client: t.Any
) -> None:
    github, crm = two_servers.mcp_servers
    pathless = McpServer(
        path=crm.path, audience="https://crm.example.com", scopes=crm.scopes
    )
    app = create_app(
        two_servers.replace(mcp_servers=(github, pathless)), redis_client=store_client
    )
    document = app.test_client().get("/.well-known/oauth-protected-resource")
    assert document.get_json()["resource"] == "https://crm.example.com"


def test_the_same_session_id_from_two_backends_is_bound_per_server(
    client: t.Any, oauth: OAuthTestClient
) -> None:
    alice = token_response(oauth, GITHUB, "github")["access_token"]
    bob = token_response(oauth, CRM, "crm", user="bob@example.com")["access_token"]
    headers = {"Accept": "application/json, text/event-stream"}
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    for path, token in (("/github/mcp", alice), ("/crm/mcp", bob)):
        bearer = {**headers, "Authorization": f"Bearer {token}"}
        opened = client.post(path, json=initialize, headers=bearer)
        assert opened.status_code == 200, opened.get_data(as_text=True)
        assert opened.headers["Mcp-Session-Id"] == "session-1"
    # Each binding is its own: each user keeps theirs, and neither reaches
    # the other's through the other server.
    assert call(client, "/github/mcp", alice, session="session-1").status_code == 200
    assert call(client, "/crm/mcp", bob, session="session-1").status_code == 200
    bob_at_github = token_response(oauth, GITHUB, "github", user="bob@example.com")
    token = bob_at_github["access_token"]
    hijack = call(client, "/github/mcp", token, session="session-1")
    assert hijack.status_code == 404
