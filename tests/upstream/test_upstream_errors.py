"""How the IdP's token-endpoint refusals are classified (proxy.upstream.token_error).

Only `invalid_grant` may end a user's grant; everything that means "not now"
must leave it alone (peers' users were logged out by rate limits and outages).
"""

from __future__ import annotations

import typing as t

import pytest

from proxy.upstream.base import UpstreamError
from proxy.upstream.http import token_error
from tests.oauth_client import OAuthTestClient


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        ("invalid_grant", 400, "invalid_grant"),
        ("invalid_client", 401, "invalid_client"),
        ("unauthorized_client", 400, "invalid_client"),
        ("temporarily_unavailable", 400, "unavailable"),
        ("server_error", 400, "unavailable"),
        ("slow_down", 400, "unavailable"),
        ("", 429, "unavailable"),
        ("", 408, "unavailable"),
        ("", 403, "unavailable"),
        ("invalid_scope", 429, "unavailable"),
        ("invalid_scope", 400, "rejected"),
    ],
)
def test_token_error_kind(error: str, status: int, kind: str) -> None:
    assert token_error(error, status).kind == kind


@pytest.mark.parametrize(
    "failure",
    [token_error("", 429), token_error("temporarily_unavailable"), token_error("x")],
)
def test_a_refusal_other_than_invalid_grant_keeps_the_grant(
    oauth: OAuthTestClient,
    app: t.Any,
    monkeypatch: pytest.MonkeyPatch,
    failure: UpstreamError,
) -> None:
    """UP-10: a 503 for the client, and the same refresh token works afterwards."""
    client_id, tokens = oauth.tokens()
    upstream = app.extensions["proxy"].upstream

    def refuse(*_: t.Any) -> t.NoReturn:
        raise failure

    with monkeypatch.context() as patch:
        patch.setattr(upstream, "refresh", refuse)
        response = oauth.refresh(client_id, tokens["refresh_token"])
    assert response.status_code == 503
    assert response.get_json()["error"] == "temporarily_unavailable"
    assert oauth.refresh(client_id, tokens["refresh_token"]).status_code == 200
