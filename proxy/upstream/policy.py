"""Who may log in: the ALLOWED_EMAILS / ALLOWED_EMAIL_DOMAINS allow-lists.

Pure rules, no I/O: a provider calls :class:`LoginPolicy` with the identity it
established. Only a *verified* email counts (``Identity.email_verified``), so
nobody gets in by typing an allowed address into an unverified account.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from proxy.upstream.base import Identity
from proxy.upstream.base import UpstreamError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """Allow-lists; an empty policy lets every authenticated user in."""

    emails: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()

    @property
    def restricts_email(self) -> bool:
        return bool(self.emails or self.domains)

    def __call__(self, identity: Identity) -> None:
        """Raise ``UpstreamError("access_denied")`` unless the identity may log in."""
        if not self.restricts_email:
            return
        if identity.email is None or not identity.email_verified:
            deny(identity, "no verified email, and an email allow-list is set")
        email = (identity.email or "").lower()
        domain = email.rpartition("@")[2]
        if email in self.emails or domain in self.domains:
            return
        deny(identity, f"email domain '{domain}' is not in the allow-lists")


def deny(identity: Identity, why: str) -> None:
    """Log why (the operator's answer to "why can't X log in?") and refuse."""
    log.warning("login refused for %s: %s", identity.subject[:64], why)
    raise UpstreamError("access_denied", why)
