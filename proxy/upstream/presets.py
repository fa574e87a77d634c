"""Auth0, Okta and Keycloak: standard OIDC, so the generic provider plus a name.

What differs is set-up (config/providers/<name>.env, README "Identity
providers") and the subject namespace (``auth0|``, ``okta|``, ``keycloak|``):

- Auth0: issuer ``https://<tenant>.<region>.auth0.com/`` (with the slash);
  ``audience`` (OAUTH_AUDIENCE / OAUTH_UPSTREAM_AUDIENCE) names the Auth0 API,
  and refresh tokens need ``offline_access`` plus "Allow Offline Access" on it.
- Okta: issuer ``https://<org>.okta.com/oauth2/default`` (custom authorization
  server) or ``https://<org>.okta.com`` (org server); ``offline_access`` and
  the Refresh Token grant on the app for refresh tokens.
- Keycloak: issuer ``https://<host>/realms/<realm>``; ``offline_access``
  gives offline tokens that outlive the SSO session (otherwise an upstream
  refresh fails once the session idles out, and the grant ends).
"""

from __future__ import annotations

from proxy.upstream.oidc import OIDCProvider


class Auth0Provider(OIDCProvider):
    name = "auth0"


class OktaProvider(OIDCProvider):
    name = "okta"


class KeycloakProvider(OIDCProvider):
    name = "keycloak"
