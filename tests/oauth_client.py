"""A scripted MCP client and its user's browser, for driving the flow in tests.

Like Flask's tutorial `AuthActions`: each step is one method, so a test can
stop anywhere, tamper with one thing, and check the answer.
"""

from __future__ import annotations

import html
import re
import secrets
import typing as t
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import requests

from proxy.oauth.pkce import s256

REDIRECT_URI = "http://127.0.0.1:5555/callback"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


@dataclass
class Flow:
    """One authorization in progress: what the client sent and got back."""

    client_id: str
    verifier: str
    state: str | None
    redirect_uri: str
    consent_form: dict[str, str] = field(default_factory=dict)
    upstream_url: str = ""
    callback_url: str = ""
    code: str = ""
    location: str = ""


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


class OAuthTestClient:
    """Drives the app through its Flask test client; the IdP over real HTTP."""

    def __init__(self, client: t.Any) -> None:
        self.client = client
        self.idp = requests.Session()

    # -- registration ---------------------------------------------------------
    def register(self, **metadata: t.Any) -> dict[str, t.Any]:
        body = {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
        body.update(metadata)
        response = self.client.post("/oauth2/register", json=body)
        assert response.status_code == 201, response.get_data(as_text=True)
        return t.cast(dict[str, t.Any], response.get_json())

    # -- the front channel ----------------------------------------------------
    def authorize_params(
        self, client_id: str, flow: Flow, **extra: t.Any
    ) -> dict[str, t.Any]:
        params: dict[str, t.Any] = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": flow.redirect_uri,
            "code_challenge": s256(flow.verifier),
            "code_challenge_method": "S256",
            "scope": "mcp",
        }
        if flow.state is not None:
            params["state"] = flow.state
        params.update(extra)
        return {k: v for k, v in params.items() if v is not None}

    def authorize(
        self,
        client_id: str,
        *,
        state: str | None = "client-state",
        redirect_uri: str = REDIRECT_URI,
        **extra: t.Any,
    ) -> tuple[Flow, t.Any]:
        flow = Flow(client_id, secrets.token_urlsafe(48), state, redirect_uri)
        response = self.client.get(
            "/oauth2/authorize",
            query_string=self.authorize_params(client_id, flow, **extra),
        )
        if response.status_code == 200:
            page = response.get_data(as_text=True)
            flow.consent_form = {k: html.unescape(v) for k, v in _HIDDEN.findall(page)}
        elif (
            response.status_code == 302
            and "/oauth2/authorize" in response.headers["Location"]
        ):
            flow.upstream_url = response.headers["Location"]
        return flow, response

    def consent(self, flow: Flow, action: str = "approve", **override: str) -> t.Any:
        form = {**flow.consent_form, "action": action, **override}
        response = self.client.post("/oauth2/consent", data=form)
        if response.status_code == 303 and action == "approve":
            flow.upstream_url = response.headers["Location"]
        return response

    def upstream_login(self, flow: Flow, user: str = "alice@example.com") -> str:
        """Log in at the real IdP; return the callback URL it redirects to."""
        response = self.idp.post(
            flow.upstream_url, data={"sub": user}, allow_redirects=False
        )
        assert response.status_code == 302, response.text
        flow.callback_url = response.headers["Location"]
        return flow.callback_url

    def callback(self, flow: Flow, url: str | None = None) -> t.Any:
        parts = urlsplit(url or flow.callback_url)
        response = self.client.get(parts.path + "?" + parts.query)
        if response.status_code == 302:
            flow.location = response.headers["Location"]
            flow.code = query_of(flow.location).get("code", [""])[0]
        return response

    def login(
        self, client_id: str, user: str = "alice@example.com", **extra: t.Any
    ) -> Flow:
        """register-less full front channel: authorize → consent → IdP → callback."""
        flow, response = self.authorize(client_id, **extra)
        if not flow.upstream_url:
            assert response.status_code == 200, response.get_data(as_text=True)
            assert self.consent(flow).status_code == 303
        self.upstream_login(flow, user)
        response = self.callback(flow)
        assert response.status_code == 302, response.get_data(as_text=True)
        assert flow.code, flow.location
        return flow

    # -- the back channel -----------------------------------------------------
    def token(self, flow: Flow, **override: t.Any) -> t.Any:
        form = {
            "grant_type": "authorization_code",
            "code": flow.code,
            "code_verifier": flow.verifier,
            "client_id": flow.client_id,
            "redirect_uri": flow.redirect_uri,
        }
        form.update(override)
        return self.client.post(
            "/oauth2/token", data={k: v for k, v in form.items() if v is not None}
        )

    def refresh(self, client_id: str, refresh_token: str, **override: t.Any) -> t.Any:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
        }
        form.update(override)
        return self.client.post(
            "/oauth2/token", data={k: v for k, v in form.items() if v is not None}
        )

    def tokens(
        self, user: str = "alice@example.com", **register: t.Any
    ) -> tuple[str, dict[str, t.Any]]:
        """Register, log in, redeem: (client_id, token response)."""
        client_id = self.register(**register)["client_id"]
        flow = self.login(client_id, user)
        response = self.token(flow)
        assert response.status_code == 200, response.get_data(as_text=True)
        return client_id, t.cast(dict[str, t.Any], response.get_json())
