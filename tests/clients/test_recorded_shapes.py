"""Recorded shapes: each catalogued DCR client's real registration and authorize
requests (shared/reference/clients.md) go through the proxy on a real Redis.

Every registration must be accepted whole (all redirect URIs echoed), and every
authorize shape, with the port and host variations the client really sends,
must reach the consent page or the IdP: never an error.
"""

from __future__ import annotations

import html
import re
import typing as t
from dataclasses import dataclass
from dataclasses import field

import pytest
import redis

from proxy.oauth.pkce import s256
from tests.oauth_client import OAuthTestClient

RESOURCE = "http://127.0.0.1:9999/mcp"
CODEX_ID = "Xk3mN0pQrS7t"  # base64url(SHA-256(server URL)[:9]): 12 characters


@dataclass(frozen=True)
class Shape:
    """One client: what it registers, and the redirect URIs it authorizes with."""

    name: str
    body: dict[str, t.Any]
    authorize_with: tuple[str, ...]
    #: Extra authorize parameters (None drops one the helper would send).
    extra: dict[str, t.Any] = field(default_factory=dict)


def _body(*redirect_uris: str, **extra: t.Any) -> dict[str, t.Any]:
    return {
        "redirect_uris": list(redirect_uris),
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        **extra,
    }


CURSOR_URIS = (
    "cursor://anysphere.cursor-mcp/oauth/callback",
    "https://www.cursor.com/agents/mcp/oauth/callback",
    "http://localhost:8787/callback",
)
GROK_URIS = (
    "https://grok.com/connectors-oauth-exchange-code/",
    "https://console.x.ai/connectors-oauth-exchange-code/",
)
CLAUDE_URIS = (
    "https://claude.ai/api/mcp/auth_callback",
    "https://claude.com/api/mcp/auth_callback",
)
VSCODE_URIS = (
    "http://127.0.0.1:33418/",
    "https://vscode.dev/redirect",
    "http://127.0.0.1/",
    "https://insiders.vscode.dev/redirect",
)
INSPECTOR_URIS = (
    "http://localhost:6274/oauth/callback",
    "http://localhost:6274/oauth/callback/debug",
)

SHAPES = [
    Shape(
        "chatgpt",
        _body(
            "https://chatgpt.com/connector_platform_oauth_redirect",
            client_name="ChatGPT",
            token_endpoint_auth_method="none",
        ),
        ("https://chatgpt.com/connector_platform_oauth_redirect",),
        # Reconnects without scope; its resource may carry a query.
        {"scope": None, "resource": RESOURCE + "?connector=abc"},
    ),
    Shape(
        "chatgpt-connector",
        _body(
            "https://chatgpt.com/connector/oauth/cb_9f8e7d",
            client_name="ChatGPT",
            token_endpoint_auth_method="none",
        ),
        ("https://chatgpt.com/connector/oauth/cb_9f8e7d",),
    ),
    Shape(
        "codex",
        _body(
            f"http://127.0.0.1:47113/callback/{CODEX_ID}",
            client_name="Codex",
            token_endpoint_auth_method="none",
        ),
        # Registers 127.0.0.1, authorizes with localhost (and another port).
        (
            f"http://localhost:47113/callback/{CODEX_ID}",
            f"http://localhost:51002/callback/{CODEX_ID}",
            f"http://127.0.0.1:47113/callback/{CODEX_ID}",
        ),
    ),
    Shape(
        "claude",
        _body(
            *CLAUDE_URIS,
            client_name="Claude",
            token_endpoint_auth_method="client_secret_post",
        ),
        CLAUDE_URIS,
    ),
    Shape(
        "claude-code",
        _body(
            "http://localhost:61234/callback",
            client_name="Claude Code",
            token_endpoint_auth_method="none",
        ),
        ("http://localhost:61234/callback", "http://localhost:40001/callback"),
    ),
    Shape(
        "vscode",
        _body(
            *VSCODE_URIS,
            client_name="Visual Studio Code",
            token_endpoint_auth_method="none",
        ),
        # Its usual port, another when that is busy, and the web callback.
        (
            "http://127.0.0.1:33418/",
            "http://127.0.0.1:33419/",
            "https://vscode.dev/redirect",
        ),
    ),
    Shape(
        "cursor",
        _body(*CURSOR_URIS, client_name="Cursor", token_endpoint_auth_method="none"),
        CURSOR_URIS,
    ),
    Shape(
        "grok",
        _body(*GROK_URIS, client_name="Grok", token_endpoint_auth_method="none"),
        GROK_URIS,
    ),
    Shape(
        "goose",
        _body(
            "http://127.0.0.1:50873/oauth_callback",
            client_name="goose",
            token_endpoint_auth_method="none",
        ),
        ("http://127.0.0.1:50873/oauth_callback",),
    ),
    Shape(
        "open-webui",
        _body(
            "https://ai.example.org/oauth/clients/mcp:notes/callback",
            client_name="Open WebUI",
            token_endpoint_auth_method="client_secret_post",
        ),
        ("https://ai.example.org/oauth/clients/mcp:notes/callback",),
    ),
    Shape(
        "opencode",
        _body(
            "http://127.0.0.1:19876/callback",
            client_name="opencode",
            token_endpoint_auth_method="none",
        ),
        ("http://127.0.0.1:19876/callback",),
    ),
    Shape(
        "mcp-remote",
        _body(
            "http://localhost:3335/oauth/callback",
            client_name="MCP CLI Proxy",
            client_uri="https://github.com/modelcontextprotocol/mcp-cli",
            software_id="2e6dc280-f3c3-4e01-99a7-8181dbd1d23d",
            software_version="0.1.29",
            token_endpoint_auth_method="none",
        ),
        # Its port range runs 3335..49150; the port may move between runs.
        (
            "http://localhost:3335/oauth/callback",
            "http://localhost:49150/oauth/callback",
        ),
    ),
    Shape(
        "mcp-inspector",
        _body(
            *INSPECTOR_URIS,
            client_name="MCP Inspector",
            client_uri="https://github.com/modelcontextprotocol/inspector",
            token_endpoint_auth_method="none",
            scope="",
        ),
        INSPECTOR_URIS,
    ),
]


@pytest.fixture
def store_client(real_redis: redis.Redis) -> redis.Redis:
    """These run on a real redis-server."""
    return real_redis


def _authorize(
    oauth: OAuthTestClient, client_id: str, redirect_uri: str, **extra: t.Any
) -> t.Any:  # noqa: E501
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": s256("v" * 64),
        "code_challenge_method": "S256",
        "state": "st4te",
        "scope": "mcp",
        "resource": RESOURCE,
        **extra,
    }
    query = {k: v for k, v in params.items() if v is not None}
    return oauth.client.get("/oauth2/authorize", query_string=query)


def _consent_or_upstream(response: t.Any, idp_url: str) -> bool:
    if response.status_code == 200:
        return 'name="csrf_token"' in response.get_data(as_text=True)
    return response.status_code == 302 and response.headers["Location"].startswith(
        idp_url
    )


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_registration_is_accepted_whole(oauth: OAuthTestClient, shape: Shape) -> None:
    response = oauth.client.post("/oauth2/register", json=shape.body)
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["redirect_uris"] == shape.body["redirect_uris"]
    assert (
        body["token_endpoint_auth_method"] == shape.body["token_endpoint_auth_method"]
    )


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_every_authorize_shape_reaches_consent(
    oauth: OAuthTestClient, idp_url: str, shape: Shape
) -> None:
    client_id = oauth.client.post("/oauth2/register", json=shape.body).get_json()[
        "client_id"
    ]
    for redirect_uri in shape.authorize_with:
        response = _authorize(oauth, client_id, redirect_uri, **shape.extra)
        assert _consent_or_upstream(response, idp_url), (
            redirect_uri,
            response.status_code,
            response.get_data(as_text=True)[:300],
        )


def test_claude_gets_the_client_secret_post_it_asked_for(
    oauth: OAuthTestClient,
) -> None:
    body = next(s.body for s in SHAPES if s.name == "claude")
    registered = oauth.client.post("/oauth2/register", json=body).get_json()
    assert registered["token_endpoint_auth_method"] == "client_secret_post"
    assert registered["client_secret"]


@pytest.mark.parametrize("method", [None, "client_secret_post", "none"])
def test_open_webui_only_ever_sees_a_method_it_accepts(
    oauth: OAuthTestClient, method: str | None
) -> None:
    """It refuses a registration response naming any but none/client_secret_post;
    without a method RFC 7591 would default to client_secret_basic."""
    body = dict(next(s.body for s in SHAPES if s.name == "open-webui"))
    body.pop("token_endpoint_auth_method")
    if method:
        body["token_endpoint_auth_method"] = method
    registered = oauth.client.post("/oauth2/register", json=body).get_json()
    assert registered["token_endpoint_auth_method"] in ("none", "client_secret_post")


def test_an_unknown_client_without_a_method_keeps_rfc_7591s_default(
    oauth: OAuthTestClient,
) -> None:
    """DCR-6 unchanged outside the catalog: client_secret_basic."""
    body = _body("https://app.example.com/cb", client_name="Some App")
    registered = oauth.client.post("/oauth2/register", json=body).get_json()
    assert registered["token_endpoint_auth_method"] == "client_secret_basic"


def test_codex_completes_with_localhost_after_registering_127_0_0_1(
    oauth: OAuthTestClient,
) -> None:
    """The whole flow, token exchange included, with the localhost redirect URI."""
    body = next(s.body for s in SHAPES if s.name == "codex")
    client_id = oauth.client.post("/oauth2/register", json=body).get_json()["client_id"]
    redirect_uri = f"http://localhost:47113/callback/{CODEX_ID}"
    flow = oauth.login(client_id, redirect_uri=redirect_uri)
    assert flow.location.startswith(redirect_uri + "?")
    response = oauth.token(flow)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["access_token"]


def test_cursor_completes_through_its_own_scheme(oauth: OAuthTestClient) -> None:
    body = next(s.body for s in SHAPES if s.name == "cursor")
    client_id = oauth.client.post("/oauth2/register", json=body).get_json()["client_id"]
    flow = oauth.login(client_id, redirect_uri=CURSOR_URIS[0])
    assert flow.location.startswith(CURSOR_URIS[0] + "?")
    assert oauth.token(flow).status_code == 200


def test_a_non_catalogued_client_still_needs_its_registered_loopback_host(
    oauth: OAuthTestClient,
) -> None:
    """The Codex allowance is Codex's: anyone else's 127.0.0.1 stays 127.0.0.1."""
    body = _body(
        "http://127.0.0.1:47113/elsewhere",
        client_name="Some CLI",
        token_endpoint_auth_method="none",
    )
    client_id = oauth.client.post("/oauth2/register", json=body).get_json()["client_id"]
    response = _authorize(oauth, client_id, "http://localhost:47113/elsewhere")
    assert response.status_code == 400
    assert "Location" not in response.headers


_KNOWN = re.compile(
    r'<p id="known-client"[^>]*data-verified="(\w+)">.*?<strong>([^<]+)</strong>',
    re.S,
)


@pytest.mark.parametrize(
    ("name", "display_name"),
    [
        ("cursor", "Cursor"),
        ("chatgpt", "ChatGPT"),
        ("codex", "Codex"),
        ("vscode", "VS Code"),
        ("grok", "Grok"),
        ("open-webui", "Open WebUI"),
        ("mcp-inspector", "MCP Inspector"),
    ],
)
def test_the_consent_page_names_a_dcr_lookalike_as_unverified(
    oauth: OAuthTestClient, name: str, display_name: str
) -> None:
    shape = next(s for s in SHAPES if s.name == name)
    client_id = oauth.client.post("/oauth2/register", json=shape.body).get_json()[
        "client_id"
    ]
    response = _authorize(oauth, client_id, shape.authorize_with[0], **shape.extra)
    found = _KNOWN.search(response.get_data(as_text=True))
    assert found is not None
    assert found.groups() == ("false", html.escape(display_name))
