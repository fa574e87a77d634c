"""GitHub: OAuth 2.0 without OIDC, against a local stand-in of github.com.

The stand-in follows GitHub's documentation:
- "Authorizing OAuth apps", web application flow
  (https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps):
  `GET /login/oauth/authorize` (client_id, redirect_uri, scope, state,
  code_challenge, code_challenge_method=S256); `POST /login/oauth/access_token`
  answers `access_token=...&scope=...&token_type=bearer` form-encoded by
  default and JSON only with `Accept: application/json`; errors come with HTTP
  200 and `error` (`bad_verification_code`, `incorrect_client_credentials`,
  `redirect_uri_mismatch`).
- PKCE: "PKCE support for OAuth and GitHub App authentication", GitHub
  changelog 2025-07-14 (S256 only).
- "Refreshing user access tokens" (GitHub Apps): `grant_type=refresh_token`
  answers a new `access_token`, `expires_in`, `refresh_token`,
  `refresh_token_expires_in`; a dead one is `bad_refresh_token`.
- REST: `GET /user` (`id`, `login`, `name`), `GET /user/emails` (`email`,
  `primary`, `verified`, `visibility`; needs `user:email`),
  `GET /user/memberships/orgs/{org}` (`state: active|pending`; 404 when not a
  member; needs `read:org`).
"""

from __future__ import annotations

import secrets
import typing as t
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import urlencode

import pytest
from werkzeug import Request
from werkzeug import Response

from proxy.config.settings import Settings
from proxy.upstream.base import UpstreamError
from proxy.upstream.factory import GitHubProvider
from proxy.upstream.factory import build_provider
from tests.endpoints._helpers import assert_json_error

from .standins import access_claims
from .standins import come_back
from .standins import json_response
from .standins import start_login
from .standins import upstream_params

CLIENT_ID = "Iv1.proxyclient"
CLIENT_SECRET = "gh-secret"


@dataclass
class GitHubStandIn:
    server: t.Any
    user: dict[str, t.Any] = field(
        default_factory=lambda: {"id": 4242, "login": "octocat", "name": "The Octocat"}
    )
    emails: list[dict[str, t.Any]] = field(
        default_factory=lambda: [
            {"email": "old@example.com", "primary": False, "verified": True},
            {"email": "octo@example.com", "primary": True, "verified": True},
        ]
    )
    memberships: dict[str, str] = field(default_factory=dict)
    #: GitHub App user-to-server tokens expire and come with a refresh token.
    github_app: bool = False
    #: An intermediary that strips `Accept` (GitHub then answers form-encoded).
    ignore_accept: bool = False
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    token_requests: list[tuple[dict[str, str], str]] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        srv = self.server
        srv.expect_request(
            "/login/oauth/access_token", method="POST"
        ).respond_with_handler(self._token)
        srv.expect_request("/api/user").respond_with_handler(
            lambda r: self._api(r, self.user)
        )
        srv.expect_request("/api/user/emails").respond_with_handler(
            lambda r: self._api(r, self.emails)
        )
        for org in ("acme", "other"):
            srv.expect_request(
                f"/api/user/memberships/orgs/{org}"
            ).respond_with_handler(lambda r, org=org: self._membership(r, org))

    @property
    def web_url(self) -> str:
        return t.cast(str, self.server.url_for("").rstrip("/"))

    @property
    def api_url(self) -> str:
        return self.web_url + "/api"

    def authorize(self, url: str) -> str:
        """The user clicks "Authorize": a code bound to the request's PKCE."""
        params = dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))
        assert url.startswith(self.web_url + "/login/oauth/authorize?")
        code = secrets.token_hex(10)
        from urllib.parse import unquote_plus

        self.codes[code] = {k: unquote_plus(v) for k, v in params.items()}
        return code

    def _reply(self, request: Request, body: dict[str, t.Any]) -> Response:
        if (
            request.headers.get("Accept") == "application/json"
            and not self.ignore_accept
        ):
            return json_response(body)
        # GitHub's default: application/x-www-form-urlencoded, even for errors.
        return Response(urlencode(body), mimetype="application/x-www-form-urlencoded")

    def _token(self, request: Request) -> Response:
        form = dict(request.form)
        self.token_requests.append((form, request.headers.get("Accept", "")))
        if (form.get("client_id"), form.get("client_secret")) != (
            CLIENT_ID,
            CLIENT_SECRET,
        ):
            return self._reply(request, {"error": "incorrect_client_credentials"})
        if form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") not in self.refresh_tokens:
                return self._reply(request, {"error": "bad_refresh_token"})
            self.refresh_tokens.discard(form["refresh_token"])
            return self._reply(request, self._issue())
        code = self.codes.pop(form.get("code", ""), None)
        if code is None:
            return self._reply(request, {"error": "bad_verification_code"})
        if form.get("redirect_uri") != code["redirect_uri"]:
            return self._reply(request, {"error": "redirect_uri_mismatch"})
        import base64
        import hashlib

        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if (
            base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            != code["code_challenge"]
        ):
            return self._reply(request, {"error": "bad_verification_code"})
        return self._reply(request, self._issue(scope=code.get("scope", "")))

    def _issue(self, scope: str = "") -> dict[str, t.Any]:
        token = "gho_" + secrets.token_hex(8)
        self.tokens.add(token)
        body: dict[str, t.Any] = {
            "access_token": token,
            "token_type": "bearer",
            "scope": scope.replace(" ", ","),
        }
        if self.github_app:
            refresh = "ghr_" + secrets.token_hex(8)
            self.refresh_tokens.add(refresh)
            body.update(
                expires_in=28800,
                refresh_token=refresh,
                refresh_token_expires_in=15811200,
            )
        return body

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[7:] in self.tokens

    def _api(self, request: Request, body: t.Any) -> Response:
        if not self._authorized(request):
            return json_response({"message": "Bad credentials"}, 401)
        return json_response(body)

    def _membership(self, request: Request, org: str) -> Response:
        if not self._authorized(request):
            return json_response({"message": "Bad credentials"}, 401)
        if org not in self.memberships:
            return json_response({"message": "Not Found"}, 404)
        return json_response({"state": self.memberships[org], "role": "member"})


@pytest.fixture
def github(httpserver: t.Any) -> GitHubStandIn:
    return GitHubStandIn(httpserver)


def gh_settings(base: Settings, github: GitHubStandIn, **changes: t.Any) -> Settings:
    values: dict[str, t.Any] = {
        "upstream_provider": "github",
        "upstream_issuer": github.web_url,
        "github_api_url": github.api_url,
        "upstream_client_id": CLIENT_ID,
        "upstream_client_secret": CLIENT_SECRET,
        "upstream_scopes": ("read:user", "user:email"),
    }
    return base.replace(**{**values, **changes})


def log_in(oauth: t.Any, github: GitHubStandIn) -> tuple[t.Any, dict[str, str]]:
    flow = start_login(oauth)
    code = github.authorize(flow.upstream_url)
    return flow, come_back(oauth, flow, code=code)


def test_github_login_issues_namespaced_subject_and_verified_email(
    github: GitHubStandIn, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """sub is github|<numeric id>; email is the primary verified address."""
    oauth = make_oauth(gh_settings(provider_settings, github))
    flow, query = log_in(oauth, github)
    assert "code" in query
    response = oauth.token(flow)
    assert response.status_code == 200
    claims = access_claims(response.get_json()["access_token"])
    assert claims["sub"] == "github|4242"
    assert claims["email"] == "octo@example.com"
    assert claims["email_verified"] is True
    assert claims["name"] == "The Octocat"


def test_authorize_url_uses_github_endpoint_and_pkce(
    github: GitHubStandIn, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """The browser goes to /login/oauth/authorize with S256 PKCE and the scopes."""
    oauth = make_oauth(gh_settings(provider_settings, github))
    flow = start_login(oauth)
    assert flow.upstream_url.startswith(github.web_url + "/login/oauth/authorize?")
    params = upstream_params(flow)
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert params["redirect_uri"] == "http://127.0.0.1:9999/oauth2/callback"
    assert params["scope"] == "read:user user:email"
    assert "nonce" not in params


def test_token_request_asks_for_json(
    github: GitHubStandIn, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """The code exchange sends Accept: application/json and the PKCE verifier."""
    oauth = make_oauth(gh_settings(provider_settings, github))
    log_in(oauth, github)
    form, accept = github.token_requests[-1]
    assert accept == "application/json"
    assert form["code_verifier"]


def test_form_encoded_answer_is_understood(
    github: GitHubStandIn, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """GitHub's form-encoded default (an Accept-stripping hop) still logs in."""
    github.ignore_accept = True
    github.github_app = True
    oauth = make_oauth(gh_settings(provider_settings, github))
    flow, query = log_in(oauth, github)
    assert "code" in query
    assert oauth.token(flow).status_code == 200


def test_unverified_primary_email_is_not_used(
    github: GitHubStandIn, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """An unverified primary address never reaches the token."""
    github.emails = [{"email": "x@example.com", "primary": True, "verified": False}]
    oauth = make_oauth(gh_settings(provider_settings, github))
    flow, _ = log_in(oauth, github)
    claims = access_claims(oauth.token(flow).get_json()["access_token"])
    assert "email" not in claims


@pytest.mark.parametrize(
    ("memberships", "error"),
    [
        ({"acme": "active"}, None),
        ({"acme": "pending"}, "access_denied"),
        ({}, "access_denied"),
    ],
)
def test_org_allow_list(
    github: GitHubStandIn,
    provider_settings: Settings,
    make_oauth: t.Any,
    memberships: dict[str, str],
    error: str | None,
) -> None:
    """GITHUB_ALLOWED_ORGS: only active members get in; others get access_denied."""
    github.memberships = memberships
    oauth = make_oauth(
        gh_settings(provider_settings, github, github_allowed_orgs=("acme",))
    )
    flow, query = log_in(oauth, github)
    assert "read:org" in upstream_params(flow)["scope"].split()
    assert query.get("error") == error
    assert ("code" in query) is (error is None)


def test_email_allow_list_on_github(
    github: GitHubStandIn, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """ALLOWED_EMAIL_DOMAINS applies to GitHub's verified primary email."""
    oauth = make_oauth(
        gh_settings(
            provider_settings, github, allowed_email_domains=frozenset({"corp.example"})
        )
    )
    _, query = log_in(oauth, github)
    assert query["error"] == "access_denied"


def test_bad_code_is_an_error_redirect(
    github: GitHubStandIn, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """bad_verification_code (HTTP 200 at GitHub) is an error at the client."""
    oauth = make_oauth(gh_settings(provider_settings, github))
    flow = start_login(oauth)
    query = come_back(oauth, flow, code="not-a-code")
    assert query["error"] == "server_error"


def test_github_app_refresh_rotates_upstream_and_dead_token_ends_grant(
    github: GitHubStandIn, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """GitHub App tokens refresh upstream; bad_refresh_token ends our grant."""
    github.github_app = True
    oauth = make_oauth(gh_settings(provider_settings, github))
    flow, _ = log_in(oauth, github)
    body = oauth.token(flow).get_json()
    refreshed = oauth.refresh(flow.client_id, body["refresh_token"])
    assert refreshed.status_code == 200
    assert github.token_requests[-1][0]["grant_type"] == "refresh_token"
    github.refresh_tokens.clear()  # the user revoked the app
    response = oauth.refresh(flow.client_id, refreshed.get_json()["refresh_token"])
    assert_json_error(response, 400, "invalid_grant")


def test_oauth_app_token_without_refresh_still_refreshes_ours(
    github: GitHubStandIn, provider_settings: Settings, make_oauth: t.Any
) -> None:
    """OAuth App tokens never expire: our refresh works without an upstream one."""
    oauth = make_oauth(gh_settings(provider_settings, github))
    flow, _ = log_in(oauth, github)
    body = oauth.token(flow).get_json()
    requests_before = len(github.token_requests)
    assert oauth.refresh(flow.client_id, body["refresh_token"]).status_code == 200
    assert len(github.token_requests) == requests_before


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        (CLIENT_SECRET, "bad_verification_code"),
        ("wrong", "incorrect_client_credentials"),
    ],
)
def test_probe_tells_good_from_bad_credentials(
    github: GitHubStandIn, provider_settings: Settings, secret: str, expected: str
) -> None:
    """A made-up code tells apart accepted and refused client credentials."""
    provider = build_provider(
        gh_settings(provider_settings, github, upstream_client_secret=secret)
    )
    assert isinstance(provider, GitHubProvider)
    assert provider.probe_client() == expected


def test_github_api_down_is_unavailable(
    github: GitHubStandIn, provider_settings: Settings
) -> None:
    """GitHub's API failing with 5xx is `unavailable` (a retryable error)."""
    provider = build_provider(
        gh_settings(provider_settings, github, github_api_url=github.web_url + "/down")
    )
    github.server.expect_request("/down/user").respond_with_data("", status=502)
    with pytest.raises(UpstreamError) as info:
        provider.identity("gho_x")  # type: ignore[attr-defined]
    assert info.value.kind == "unavailable"


def test_defaults_for_github_com(provider_settings: Settings) -> None:
    """github.com's web and API URLs; GHES gets /api/v3."""
    provider = build_provider(
        provider_settings.replace(
            upstream_provider="github", upstream_issuer="https://github.com"
        )
    )
    assert isinstance(provider, GitHubProvider)
    assert provider.token_endpoint == "https://github.com/login/oauth/access_token"
    assert provider.api_url == "https://api.github.com"
    ghes = GitHubProvider(
        client_id="c",
        client_secret="s",
        redirect_uri="https://x/cb",
        scopes=(),
        web_url="https://ghe.example.com",
    )
    assert ghes.api_url == "https://ghe.example.com/api/v3"
