"""The upstream interface: what endpoints may ask of any identity provider.

:class:`UpstreamProvider` is the whole interface (authorize URL, code exchange
with identity, refresh); :class:`UpstreamError` says how a call failed;
:class:`Identity` and :class:`UpstreamTokens` are what comes back."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from dataclasses import field

from proxy.oauth.access_tokens import RESERVED_CLAIMS
from proxy.oauth.errors import OAuthError
from proxy.oauth.errors import ServerError
from proxy.oauth.errors import TemporarilyUnavailableError


class UpstreamError(Exception):
    """The IdP said no, or could not be reached. ``kind`` drives the response.

    kinds: ``unavailable`` (network, 5xx, bad JSON: retryable), ``invalid_grant``
    (the upstream grant is dead: end ours), ``access_denied`` (the user or
    policy refused), ``invalid_response`` (an ID token that does not verify),
    ``invalid_client`` (the IdP refused OUR credentials: an operator problem,
    never a reason to end a user's grant), ``issuer_mismatch`` (the discovery
    document names another issuer than OAUTH_ISSUER: a configuration error),
    ``subject_changed`` (a refresh answer names another user than the grant's:
    end the grant, J67), ``rejected`` (any other refusal).
    """

    def __init__(
        self, kind: str, detail: str, *, error: str = "", endpoint: str = ""
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        #: The IdP's own error code, when it sent one (``invalid_client``, ...).
        self.error = error
        #: Which IdP endpoint failed (``discovery``, ``token``...), when known.
        self.endpoint = endpoint

    @property
    def cause(self) -> str:
        """What an operator reads in the log: the cause first, then the detail."""
        if self.kind == "issuer_mismatch":
            return f"issuer mismatch: {self.detail}"
        if self.endpoint == "discovery" and self.kind == "unavailable":
            return f"discovery unreachable: {self.detail}"
        if self.kind == "invalid_client":
            return f"token endpoint answered {self.error or 'invalid_client'}"
        return f"{self.kind}: {self.detail}"


#: What the client and the user read when OAUTH_ISSUER and the IdP disagree.
ISSUER_MISMATCH_MESSAGE = (
    "The identity provider names another issuer than this proxy is configured "
    "for (issuer mismatch): the operator must correct OAUTH_ISSUER."
)


def error_for(
    exc: UpstreamError, *, redirect_uri: str | None = None, state: str | None = None
) -> OAuthError:
    """The client-facing error for an upstream failure: a mismatch says so."""
    if exc.kind == "issuer_mismatch":
        return ServerError(
            ISSUER_MISMATCH_MESSAGE,
            reason="upstream_issuer_mismatch",
            redirect_uri=redirect_uri,
            state=state,
        )
    return TemporarilyUnavailableError(
        "The identity provider is unavailable.",
        reason=f"upstream_{exc.kind}",
        redirect_uri=redirect_uri,
        state=state,
    )


@dataclass(frozen=True, slots=True)
class UpstreamTokens:
    access_token: str
    refresh_token: str | None = None
    expires_at: int | None = None
    id_token: str | None = None
    scope: str | None = None

    def as_dict(self) -> dict[str, t.Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "scope": self.scope,
        }

    @classmethod
    def from_dict(cls, data: dict[str, t.Any]) -> UpstreamTokens:
        return cls(
            access_token=data["access_token"],
            refresh_token=data.get("refresh_token"),
            expires_at=data.get("expires_at"),
            scope=data.get("scope"),
        )


@dataclass(frozen=True, slots=True)
class Identity:
    """Who logged in, as the IdP vouched for it.

    ``subject`` is namespaced per provider (``github|12345``; raw ``sub`` for
    the generic ``oidc`` provider). ``email_verified`` is True only when the
    IdP vouches for the address; allow-lists use verified addresses only.
    ``claims`` is everything the IdP said (never stored); ``extra`` holds the
    TOKEN_EXTRA_CLAIMS copied into access tokens.
    """

    subject: str
    email: str | None = None
    name: str | None = None
    email_verified: bool = False
    claims: dict[str, t.Any] = field(default_factory=dict)
    extra: dict[str, t.Any] = field(default_factory=dict)

    def token_claims(self) -> dict[str, t.Any]:
        """The identity claims stored in the grant and copied into access tokens."""
        claims = {k: v for k, v in self.extra.items() if k not in RESERVED_CLAIMS}
        if self.email:
            claims["email"] = self.email
            claims["email_verified"] = self.email_verified
        if self.name:
            claims["name"] = self.name
        return claims


def pick_claims(claims: dict[str, t.Any], names: t.Iterable[str]) -> dict[str, t.Any]:
    """The named upstream claims that are present, minus the reserved ones."""
    return {
        name: claims[name]
        for name in names
        if name in claims and name not in RESERVED_CLAIMS and claims[name] is not None
    }


def is_true(value: object) -> bool:
    """A boolean claim: some IdPs send ``"true"`` as a string."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


class UpstreamProvider(t.Protocol):
    """What the endpoints need from an identity provider."""

    name: str

    def authorization_url(self, *, state: str, code_challenge: str, nonce: str) -> str:
        """Where to send the browser to log in."""
        ...

    def exchange_code(
        self, *, code: str, code_verifier: str, nonce: str
    ) -> tuple[UpstreamTokens, Identity]:
        """Redeem the upstream code and establish the user's identity."""
        ...

    def refresh(self, tokens: UpstreamTokens) -> UpstreamTokens:
        """Renew the upstream tokens; raise UpstreamError("invalid_grant") if dead."""
        ...

    def refreshed_identity(
        self, tokens: UpstreamTokens, *, subject: str
    ) -> Identity | None:
        """The identity the renewed `tokens` vouch for, through the login's rules.

        None when the provider has nothing new to say (no ID token on refresh,
        no cheap userinfo): the grant keeps the claims it has. Raises
        UpstreamError ``subject_changed`` if it is not `subject`'s, or as
        ``exchange_code`` does when the login rules now refuse the user (J66).
        """
        ...

    def issuer_matches(self, iss: str) -> bool:
        """RFC 9207: does an `iss` on the callback name this IdP?"""
        ...
