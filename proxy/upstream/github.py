"""GitHub (OAuth Apps and GitHub Apps): OAuth 2.0 but not OpenID Connect.

No discovery, no ID token: fixed endpoints under the web URL, the identity
from the REST API. The quirks this module exists for:

- ``POST /login/oauth/access_token`` answers form-encoded unless asked for
  JSON (``Accept: application/json``), and reports errors with HTTP 200 and an
  ``error`` field (``bad_verification_code``, ``incorrect_client_credentials``,
  ``redirect_uri_mismatch``, ``bad_refresh_token``).
- The user id is ``GET /user``'s numeric ``id`` (``login`` can be renamed);
  the email is the primary *verified* one from ``GET /user/emails``.
- PKCE: S256 only (GitHub changelog, 2025-07-14).
- GitHub App user-to-server tokens expire and come with a refresh token;
  OAuth App tokens do not expire and have none.
- Org membership: ``GET /user/memberships/orgs/{org}`` (``state: active``),
  which needs the ``read:org`` scope (OAuth Apps) or the Members permission
  (GitHub Apps installed on the org).
"""

from __future__ import annotations

import logging
import typing as t
from urllib.parse import parse_qsl
from urllib.parse import quote
from urllib.parse import urlencode

import requests

from proxy.keys.keyring import equal
from proxy.upstream.base import Identity
from proxy.upstream.base import UpstreamError
from proxy.upstream.base import UpstreamTokens
from proxy.upstream.base import pick_claims
from proxy.upstream.http import network_failure
from proxy.upstream.http import observed
from proxy.upstream.http import pooled_session
from proxy.upstream.http import refresh_with
from proxy.upstream.http import token_error
from proxy.upstream.http import tokens_from
from proxy.upstream.policy import deny

log = logging.getLogger(__name__)


GITHUB_WEB_URL = "https://github.com"


GITHUB_API_URL = "https://api.github.com"


API_VERSION = "2022-11-28"


ORG_SCOPES = frozenset({"read:org", "write:org", "admin:org"})


#: GitHub's token endpoint error codes, mapped onto UpstreamError kinds.
_TOKEN_ERRORS = {
    "bad_verification_code": "invalid_grant",
    "bad_refresh_token": "invalid_grant",
    "incorrect_client_credentials": "invalid_client",
    "unverified_user_email": "access_denied",
}


def api_url_for(web_url: str) -> str:
    """github.com's API host, or GitHub Enterprise Server's ``/api/v3``."""
    if web_url.rstrip("/") == GITHUB_WEB_URL:
        return GITHUB_API_URL
    return web_url.rstrip("/") + "/api/v3"


class GitHubProvider:
    """The proxy as one GitHub OAuth App (or GitHub App) client."""

    name = "github"

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        scopes: tuple[str, ...],
        web_url: str = GITHUB_WEB_URL,
        api_url: str | None = None,
        allowed_orgs: tuple[str, ...] = (),
        timeout: float = 10.0,
        session: requests.Session | None = None,
        subject_prefix: str = "github|",
        extra_claims: tuple[str, ...] = (),
        policy: t.Callable[[Identity], None] | None = None,
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.allowed_orgs = tuple(org.lower() for org in allowed_orgs)
        if self.allowed_orgs and not ORG_SCOPES & set(scopes):
            # Without read:org the membership API answers 404 for everyone.
            scopes = (*scopes, "read:org")
        self.scopes = scopes
        self.web_url = web_url.rstrip("/")
        self.api_url = (api_url or api_url_for(self.web_url)).rstrip("/")
        self.timeout = timeout
        self.session = session or pooled_session()
        self.subject_prefix = subject_prefix
        self.extra_claims = extra_claims
        self.policy = policy

    @property
    def authorization_endpoint(self) -> str:
        return self.web_url + "/login/oauth/authorize"

    @property
    def token_endpoint(self) -> str:
        return self.web_url + "/login/oauth/access_token"

    def issuer_matches(self, iss: str) -> bool:
        # GitHub sends no RFC 9207 `iss`; anything that does must name GitHub.
        return equal(iss.rstrip("/"), self.web_url)

    def authorization_url(self, *, state: str, code_challenge: str, nonce: str) -> str:
        params = {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(self.scopes),
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        return f"{self.authorization_endpoint}?{urlencode(params)}"

    def exchange_code(
        self, *, code: str, code_verifier: str, nonce: str
    ) -> tuple[UpstreamTokens, Identity]:
        data = self._token_request(
            {
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": code_verifier,
            }
        )
        tokens = tokens_from(data, previous_refresh=None)
        identity = self.identity(tokens.access_token)
        if self.policy is not None:
            self.policy(identity)
        if self.allowed_orgs:
            self._check_orgs(identity, tokens.access_token)
        return tokens, identity

    def refresh(self, tokens: UpstreamTokens) -> UpstreamTokens:
        return refresh_with(self._token_request, tokens)

    def refreshed_identity(
        self, tokens: UpstreamTokens, *, subject: str
    ) -> Identity | None:
        """None: a GitHub refresh answer carries no identity (J66).

        Re-reading it would be two to four REST calls per refresh (``/user``,
        ``/user/emails``, each org's membership), every one of which can be
        rate limited, and GitHub's 403s do not tell a limit from a refusal.
        The grant keeps the claims of its login; the email allow-lists are
        still asked again of those at every refresh.
        """
        return None

    def probe_client(self) -> str:
        """Redeem a made-up code; return GitHub's error code (``check`` reads it)."""
        try:
            self._token_request(
                {"code": "mcp-oauth-proxy-check", "redirect_uri": self.redirect_uri}
            )
        except UpstreamError as exc:
            if exc.kind == "unavailable":
                raise
            return exc.error or exc.kind
        return "accepted"

    # -- identity -------------------------------------------------------------
    def identity(self, access_token: str) -> Identity:
        user = self._api("/user", access_token)
        if not isinstance(user, dict) or not isinstance(user.get("id"), int):
            raise UpstreamError("invalid_response", "GET /user returned no 'id'")
        login = user.get("login")
        name = user.get("name") or login
        claims = dict(user, preferred_username=login)
        # Not /user's public `email`: only the primary, verified address.
        email = self._primary_verified_email(access_token)
        return Identity(
            subject=f"{self.subject_prefix}{user['id']}",
            email=email,
            email_verified=email is not None,
            name=name if isinstance(name, str) else None,
            claims=claims,
            extra=pick_claims(claims, self.extra_claims),
        )

    def _primary_verified_email(self, access_token: str) -> str | None:
        """The primary, verified address; None without the user:email scope."""
        try:
            emails = self._api("/user/emails", access_token)
        except UpstreamError as exc:
            if exc.kind == "unavailable":
                raise
            log.info("GitHub /user/emails unavailable (%s): no email", exc.detail)
            return None
        for entry in emails if isinstance(emails, list) else []:
            if (
                isinstance(entry, dict)
                and entry.get("primary") is True
                and entry.get("verified") is True
                and isinstance(entry.get("email"), str)
            ):
                return t.cast(str, entry["email"])
        return None

    def _check_orgs(self, identity: Identity, access_token: str) -> None:
        """Active membership of at least one of GITHUB_ALLOWED_ORGS."""
        for org in self.allowed_orgs:
            try:
                membership = self._api(
                    f"/user/memberships/orgs/{quote(org, safe='')}", access_token
                )
            except UpstreamError as exc:
                if exc.kind == "unavailable":
                    raise
                continue  # 404/403: not a member, or the org restricts this app
            if isinstance(membership, dict) and membership.get("state") == "active":
                return
        deny(
            identity,
            "not an active member of GITHUB_ALLOWED_ORGS "
            f"({', '.join(self.allowed_orgs)}); the app needs read:org and, for "
            "orgs with OAuth app access restrictions, the org's approval",
        )

    # -- HTTP -----------------------------------------------------------------
    def _token_request(self, form: dict[str, str]) -> dict[str, t.Any]:
        form = dict(form, client_id=self.client_id, client_secret=self._client_secret)
        try:
            response = observed(
                "token",
                lambda: self.session.post(
                    self.token_endpoint,
                    data=form,
                    # Without this GitHub answers application/x-www-form-urlencoded.
                    headers={"Accept": "application/json"},
                    timeout=self.timeout,
                ),
            )
        except requests.RequestException as exc:
            raise UpstreamError(
                "unavailable", f"token endpoint: {network_failure(exc)}"
            ) from exc
        if response.status_code >= 500:
            raise UpstreamError(
                "unavailable", f"token endpoint answered {response.status_code}"
            )
        body = _parse_token_body(response)
        if body is None:
            raise UpstreamError(
                "unavailable", f"token endpoint answered {response.status_code}"
            )
        # GitHub reports errors with HTTP 200 and an `error` field.
        if "error" in body or response.status_code != 200:
            error = str(body.get("error") or "")[:64]
            if error in _TOKEN_ERRORS:
                kind = _TOKEN_ERRORS[error]
                raise UpstreamError(kind, f"token endpoint: {error}", error=error)
            raise token_error(error, response.status_code)
        if not isinstance(body.get("access_token"), str):
            raise UpstreamError("invalid_response", "token response lacks access_token")
        return body

    def _api(self, path: str, access_token: str) -> t.Any:
        try:
            response = observed(
                "api",
                lambda: self.session.get(
                    self.api_url + path,
                    headers={
                        "Authorization": f"Bearer {access_token}",
                        "Accept": "application/vnd.github+json",
                        "X-GitHub-Api-Version": API_VERSION,
                    },
                    timeout=self.timeout,
                ),
            )
        except requests.RequestException as exc:
            raise UpstreamError(
                "unavailable", f"GitHub API {path}: {network_failure(exc)}"
            ) from exc
        limited = response.headers.get("X-RateLimit-Remaining") == "0"
        if response.status_code >= 500 or (response.status_code == 429 or limited):
            raise UpstreamError(
                "unavailable", f"GitHub API {path} answered {response.status_code}"
            )
        if response.status_code != 200:
            raise UpstreamError(
                "rejected", f"GitHub API {path} answered {response.status_code}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise UpstreamError("unavailable", f"GitHub API {path}: not JSON") from exc


def _parse_token_body(response: requests.Response) -> dict[str, t.Any] | None:
    """JSON as asked for; GitHub's form-encoded default if a hop dropped Accept."""
    content_type = response.headers.get("Content-Type", "")
    if "application/x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(response.text, keep_blank_values=True))
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
