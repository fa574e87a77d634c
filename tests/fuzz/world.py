"""The seeded state the fuzzers mutate: real clients, flows and tokens.

Mutating something valid reaches deeper code than random text: a token with
one claim changed passes the base64 and JSON layers and meets the signature
check, a consent form with a fresh CSRF token meets the client lookup.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from proxy.config.settings import Settings
from tests.endpoints._helpers import basic
from tests.oauth_client import REDIRECT_URI
from tests.oauth_client import Flow
from tests.oauth_client import OAuthTestClient


@dataclass
class World:
    """Everything one fuzz test starts from; mutable, as successes move it on."""

    prefix: str
    public_id: str
    confidential_id: str
    confidential_secret: str
    consent_form: dict[str, str]
    callback_url: str
    code_flow: Flow
    access_token: str
    refresh_token: str
    confidential_access_token: str
    confidential_refresh_token: str
    redirect_uri: str = REDIRECT_URI


def seed_world(oauth: OAuthTestClient, settings: Settings) -> World:
    """Register two clients and take them through the real flow (real IdP)."""
    public_id = oauth.register(client_name="Fuzz public")["client_id"]
    confidential = oauth.register(
        client_name="Fuzz confidential",
        token_endpoint_auth_method="client_secret_basic",
    )
    consent_flow, response = oauth.authorize(public_id)
    assert response.status_code == 200, response.get_data(as_text=True)

    callback_flow, _ = oauth.authorize(public_id)
    assert oauth.consent(callback_flow).status_code == 303
    callback_url = oauth.upstream_login(callback_flow)

    code_flow = oauth.login(public_id)
    _, tokens = oauth.tokens()
    confidential_tokens = _confidential_tokens(oauth, confidential)
    return World(
        prefix=settings.key_prefix,
        public_id=public_id,
        confidential_id=confidential["client_id"],
        confidential_secret=confidential["client_secret"],
        consent_form=consent_flow.consent_form,
        callback_url=callback_url,
        code_flow=code_flow,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        confidential_access_token=confidential_tokens["access_token"],
        confidential_refresh_token=confidential_tokens["refresh_token"],
    )


def _confidential_tokens(
    oauth: OAuthTestClient, client: dict[str, t.Any]
) -> dict[str, t.Any]:
    flow = oauth.login(client["client_id"])
    response = oauth.client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": flow.code,
            "code_verifier": flow.verifier,
            "redirect_uri": flow.redirect_uri,
        },
        headers=basic(client["client_id"], client["client_secret"]),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return t.cast(dict[str, t.Any], response.get_json())
