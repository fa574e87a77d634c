"""Google: OpenID Connect, with Google's rules for refresh tokens and domains.

- Refresh tokens: Google issues one only with ``access_type=offline``, and
  only on the user's *first* consent unless ``prompt=consent`` asks again; it
  refuses the ``offline_access`` scope. A refresh answer carries no new
  refresh token (the old one stays valid).
- ``hd`` (GOOGLE_HOSTED_DOMAIN): sent as a hint for the account chooser, and
  *checked* on the ID token's ``hd`` claim, since anyone can edit the URL.
- The ID token's ``iss`` is ``https://accounts.google.com`` or, for older
  implementations, ``accounts.google.com``; both are Google's.
"""

from __future__ import annotations

import logging
import typing as t

from proxy.keys.keyring import equal
from proxy.upstream.base import UpstreamError
from proxy.upstream.oidc import OIDCProvider

log = logging.getLogger(__name__)


GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")


class GoogleProvider(OIDCProvider):
    name = "google"
    claims_from_userinfo = False

    def __init__(self, *, hosted_domain: str | None = None, **options: t.Any) -> None:
        scopes = tuple(s for s in options.pop("scopes") if s != "offline_access")
        params = {"access_type": "offline", "prompt": "consent"}
        if hosted_domain:
            params["hd"] = hosted_domain
        params.update(options.pop("extra_authorize_params", None) or {})
        # Google takes no `audience`; it names no resource for the proxy.
        options["audience"] = None
        super().__init__(scopes=scopes, extra_authorize_params=params, **options)
        self.hosted_domain = hosted_domain.lower() if hosted_domain else None

    def issuer_matches(self, iss: str) -> bool:
        return any(equal(iss, issuer) for issuer in GOOGLE_ISSUERS)

    def id_token_issuer_ok(self, iss: object, claims: dict[str, t.Any]) -> bool:
        return iss in GOOGLE_ISSUERS

    def check_claims(self, claims: dict[str, t.Any]) -> None:
        if not self.hosted_domain:
            return
        hd = claims.get("hd")
        # Google: "validate that the returned ID token has an hd claim value
        # that matches what you expect" (a gmail.com account has none).
        if not isinstance(hd, str) or hd.lower() != self.hosted_domain:
            log.warning(
                "login refused for google|%s: hd %r is not GOOGLE_HOSTED_DOMAIN",
                str(claims.get("sub"))[:32],
                hd,
            )
            raise UpstreamError("access_denied", "hd claim does not match")
