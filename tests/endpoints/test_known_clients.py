"""GET /oauth2/authorize for catalogued clients: the consent page and TRUSTED_CLIENTS.

A static client is named by the operator, so its catalogued identity is
verified; a DCR registration only looks like a catalogued client. Only a
verified identity may skip consent (MCP 2026-07-28: "a proxy with one static
upstream client MUST obtain consent per client").
"""

from __future__ import annotations

import re
import typing as t

import pytest

from proxy import create_app
from proxy.config.env import StaticClient
from proxy.config.settings import Settings
from tests.oauth_client import OAuthTestClient

CHATGPT_REDIRECT = "https://chatgpt.com/connector_platform_oauth_redirect"
_KNOWN = re.compile(r'<p id="known-client"[^>]*data-verified="(\w+)"')


def _oauth(settings: Settings, fake_redis: t.Any, **changes: t.Any) -> OAuthTestClient:
    static = StaticClient(
        client_id="chatgpt-static",
        redirect_uris=(CHATGPT_REDIRECT,),
        client_name="ChatGPT (static)",
    )
    app = create_app(
        settings.replace(static_clients=(static,), **changes), redis_client=fake_redis
    )
    return OAuthTestClient(app.test_client())


def _verified_mark(response: t.Any) -> str | None:
    found = _KNOWN.search(response.get_data(as_text=True))
    return found.group(1) if found else None


def test_a_static_client_is_shown_as_a_verified_known_client(
    settings: Settings, fake_redis: t.Any
) -> None:
    oauth = _oauth(settings, fake_redis)
    _, response = oauth.authorize("chatgpt-static", redirect_uri=CHATGPT_REDIRECT)
    assert response.status_code == 200
    assert _verified_mark(response) == "true"


def test_a_dcr_lookalike_is_shown_unverified(
    settings: Settings, fake_redis: t.Any
) -> None:
    oauth = _oauth(settings, fake_redis)
    client_id = oauth.register(redirect_uris=[CHATGPT_REDIRECT])["client_id"]
    _, response = oauth.authorize(client_id, redirect_uri=CHATGPT_REDIRECT)
    assert response.status_code == 200
    assert _verified_mark(response) == "false"


def test_an_unknown_client_is_not_marked(settings: Settings, fake_redis: t.Any) -> None:
    oauth = _oauth(settings, fake_redis)
    client_id = oauth.register(redirect_uris=["https://app.example.com/cb"])[
        "client_id"
    ]
    _, response = oauth.authorize(client_id, redirect_uri="https://app.example.com/cb")
    assert response.status_code == 200
    assert _verified_mark(response) is None


def test_a_trusted_static_client_skips_consent(
    settings: Settings, fake_redis: t.Any, idp_url: str
) -> None:
    oauth = _oauth(settings, fake_redis, trusted_clients=("chatgpt",))
    _, response = oauth.authorize("chatgpt-static", redirect_uri=CHATGPT_REDIRECT)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(idp_url)


def test_a_dcr_registration_imitating_a_trusted_client_still_sees_consent(
    settings: Settings, fake_redis: t.Any
) -> None:
    """The confused-deputy case: ChatGPT's redirect URIs prove nothing."""
    oauth = _oauth(settings, fake_redis, trusted_clients=("chatgpt",))
    client_id = oauth.register(redirect_uris=[CHATGPT_REDIRECT])["client_id"]
    _, response = oauth.authorize(client_id, redirect_uri=CHATGPT_REDIRECT)
    assert response.status_code == 200
    assert 'name="csrf_token"' in response.get_data(as_text=True)


@pytest.mark.parametrize("trusted", [(), ("claude",)])
def test_a_static_client_not_trusted_sees_consent(
    settings: Settings, fake_redis: t.Any, trusted: tuple[str, ...]
) -> None:
    oauth = _oauth(settings, fake_redis, trusted_clients=trusted)
    _, response = oauth.authorize("chatgpt-static", redirect_uri=CHATGPT_REDIRECT)
    assert response.status_code == 200
