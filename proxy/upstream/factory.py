"""Upstream identity providers: one factory over the :class:`UpstreamProvider`s.

``OAUTH_PROVIDER`` picks one: ``oidc`` (default; any OpenID Connect provider,
by discovery), ``github`` (not OIDC), or a preset over OIDC with its quirks:
``google``, ``entra``, ``auth0``, ``okta``, ``keycloak``. Each is documented in
``config/providers/<name>.env``.

Subjects are namespaced per provider (``github|12345``, ``google|1098...``) so
two providers cannot hand out the same ``sub``. The generic ``oidc`` provider
keeps the IdP's raw ``sub``, as before this package existed: changing it would
re-key every user of every existing deployment. OAUTH_SUBJECT_PREFIX overrides
the default either way (set it empty to keep raw subjects on a preset).
"""

from __future__ import annotations

import typing as t

from proxy.upstream.entra import EntraProvider
from proxy.upstream.github import GitHubProvider
from proxy.upstream.google import GoogleProvider
from proxy.upstream.http import pooled_session
from proxy.upstream.oidc import OIDCProvider
from proxy.upstream.policy import LoginPolicy
from proxy.upstream.presets import Auth0Provider
from proxy.upstream.presets import KeycloakProvider
from proxy.upstream.presets import OktaProvider

if t.TYPE_CHECKING:
    import requests

    from proxy.config.settings import Settings
    from proxy.upstream.base import UpstreamProvider


__all__ = [
    "Auth0Provider",
    "EntraProvider",
    "GitHubProvider",
    "GoogleProvider",
    "KeycloakProvider",
    "LoginPolicy",
    "OIDCProvider",
    "OktaProvider",
    "build_provider",
    "subject_prefix",
]


_OIDC_CLASSES: dict[str, type[OIDCProvider]] = {
    "oidc": OIDCProvider,
    "auth0": Auth0Provider,
    "okta": OktaProvider,
    "keycloak": KeycloakProvider,
}


def subject_prefix(settings: Settings) -> str:
    """OAUTH_SUBJECT_PREFIX, else "" for oidc and "<provider>|" for the rest."""
    if settings.subject_prefix is not None:
        return settings.subject_prefix
    if settings.upstream_provider == "oidc":
        return ""
    return settings.upstream_provider + "|"


def build_provider(
    settings: Settings, session: requests.Session | None = None
) -> UpstreamProvider:
    """The configured provider, sharing one pooled HTTP session."""
    common: dict[str, t.Any] = {
        "client_id": settings.upstream_client_id,
        "client_secret": settings.upstream_client_secret,
        "redirect_uri": settings.url("/oauth2/callback"),
        "scopes": settings.upstream_scopes,
        "timeout": settings.upstream_timeout_seconds,
        "session": session or pooled_session(),
        "subject_prefix": subject_prefix(settings),
        "extra_claims": settings.kept_claims,
        "policy": LoginPolicy(settings.allowed_emails, settings.allowed_email_domains),
    }
    kind = settings.upstream_provider
    if kind == "github":
        return GitHubProvider(
            web_url=settings.upstream_issuer,
            api_url=settings.github_api_url,
            allowed_orgs=settings.github_allowed_orgs,
            **common,
        )
    common["issuer"] = settings.upstream_issuer
    if kind == "google":
        return GoogleProvider(hosted_domain=settings.google_hosted_domain, **common)
    if kind == "entra":
        return EntraProvider(allowed_tenants=settings.entra_allowed_tenants, **common)
    return _OIDC_CLASSES[kind](audience=settings.upstream_audience, **common)
