"""OAuth errors as classes, one per registered code (RFC 6749 §5.2, RFC 7591 §3.2.2).

Rules raise; views never catch. An error carries a ``redirect_uri`` only after
the client and its redirect URI were validated (RFC 6749 §4.1.2.1); the
handlers in ``error_handlers.py`` redirect only then. This module imports
neither Flask nor Redis, so the rule modules can raise these errors.
"""

from __future__ import annotations

import re
import typing as t
from urllib.parse import urlencode
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

# RFC 6749 §5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
_DESCRIPTION_OK = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$")


NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


# No form-action: Chromium applies it to the redirect after the consent POST,
# which would block "Deny" for a client with a private-use redirect scheme.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class OAuthError(Exception):
    """An OAuth error response (RFC 6749 §4.1.2.1, §5.2; RFC 7591 §3.2.2)."""

    error: t.ClassVar[str] = "invalid_request"
    status_code: t.ClassVar[int] = 400

    def __init__(
        self,
        description: str = "",
        *,
        reason: str | None = None,
        redirect_uri: str | None = None,
        state: str | None = None,
    ) -> None:
        if not _DESCRIPTION_OK.match(description):
            raise ValueError("error_description must be printable ASCII without quotes")
        super().__init__(description or self.error)
        self.description = description
        self.reason = reason or self.error
        self.redirect_uri = redirect_uri
        self.state = state

    def headers(self) -> dict[str, str]:
        return dict(NO_STORE)

    def body(self) -> dict[str, str]:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body


class InvalidRequestError(OAuthError):
    """Missing, repeated or malformed parameter (RFC 6749 §5.2)."""

    error = "invalid_request"


class InvalidClientError(OAuthError):
    """Client authentication failed or the client is unknown (RFC 6749 §5.2)."""

    error = "invalid_client"
    status_code = 401

    def __init__(self, description: str = "", *, basic: bool = False, **kw: t.Any):
        super().__init__(description, **kw)
        self.basic = basic

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        if self.basic:
            # RFC 6749 §5.2: 401 with WWW-Authenticate matching the scheme used.
            headers["WWW-Authenticate"] = 'Basic realm="oauth"'
        return headers


class UnknownClientError(InvalidClientError):
    """An authorization request from an unknown client: shown, never redirected."""

    status_code = 400


class InvalidGrantError(OAuthError):
    """Bad, expired, reused or foreign code or refresh token (RFC 6749 §5.2)."""

    error = "invalid_grant"


class UnauthorizedClientError(OAuthError):
    """The client is not allowed this grant type (RFC 6749 §5.2)."""

    error = "unauthorized_client"


class UnsupportedGrantTypeError(OAuthError):
    error = "unsupported_grant_type"


class UnsupportedResponseTypeError(OAuthError):
    error = "unsupported_response_type"


class InvalidScopeError(OAuthError):
    error = "invalid_scope"


class AccessDeniedError(OAuthError):
    error = "access_denied"
    status_code = 403


class InvalidTargetError(OAuthError):
    """The `resource` is not this proxy's protected resource (RFC 8707 §2)."""

    error = "invalid_target"


class InvalidRedirectUriError(OAuthError):
    """RFC 7591 §3.2.2, and the authorize page for an unregistered redirect_uri."""

    error = "invalid_redirect_uri"


class InvalidClientMetadataError(OAuthError):
    error = "invalid_client_metadata"


class UnsupportedTokenTypeError(OAuthError):
    error = "unsupported_token_type"


class InvalidTokenError(OAuthError):
    """Bearer token missing, expired, revoked or for another audience (RFC 6750)."""

    error = "invalid_token"
    status_code = 401
    #: The WWW-Authenticate value; set by the resource side before raising.
    challenge: str | None = None

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        if self.challenge:
            headers["WWW-Authenticate"] = self.challenge
        return headers


class InsufficientScopeError(InvalidTokenError):
    """A valid token without the scope this request needs (RFC 6750 §3.1)."""

    error = "insufficient_scope"
    status_code = 403


class BadGatewayError(OAuthError):
    """The MCP backend did not answer (gateway mode)."""

    error = "bad_gateway"
    status_code = 502


class GatewayTimeoutError(OAuthError):
    error = "gateway_timeout"
    status_code = 504


class ServerError(OAuthError):
    error = "server_error"
    status_code = 500


class TemporarilyUnavailableError(OAuthError):
    """The store or the upstream IdP cannot be reached right now."""

    error = "temporarily_unavailable"
    status_code = 503

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Retry-After": "5"}


class TooManyRequestsError(OAuthError):
    """A rate limit or back-off is in force (RFC 6585 §4: 429 with Retry-After).

    The error code is RFC 6749's `temporarily_unavailable`: every OAuth
    client already treats it as "retry later".
    """

    error = "temporarily_unavailable"
    status_code = 429

    def __init__(self, retry_after_seconds: int, **kw: t.Any) -> None:
        super().__init__("Too many requests: retry later.", **kw)
        self.retry_after_seconds = max(1, retry_after_seconds)

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Retry-After": str(self.retry_after_seconds)}


class BadRequestPageError(OAuthError):
    """A browser-facing failure (consent, callback): a page, never a redirect."""

    error = "invalid_request"


def add_query(uri: str, params: dict[str, str | None]) -> str:
    """Append parameters to a redirect URI, keeping its own query (RFC 6749 §4.1.2)."""
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
