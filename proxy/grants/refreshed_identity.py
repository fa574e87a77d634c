"""The identity a refresh carries: re-read upstream, or the login's, still allowed.

Groups and roles decide which tools a token reaches (the gateway's tool
policy), so a refresh re-reads them whenever the IdP's refresh answer lets us
(OIDC Core §12.2: an ID token, or userinfo where the login took groups from
it) and the new access token carries what the IdP says now. The login's rules
are applied again to what comes back; a user they refuse, or an answer naming
another user, ends the grant (decisions J66, J67). When the IdP says nothing
new, the stored claims stand, and the email allow-lists are still asked of
them.
"""

from __future__ import annotations

import logging
import typing as t

from proxy.grants.base import grant_fields
from proxy.oauth.errors import InvalidGrantError
from proxy.upstream.base import Identity
from proxy.upstream.base import UpstreamError
from proxy.upstream.base import error_for
from proxy.upstream.policy import LoginPolicy

if t.TYPE_CHECKING:
    from proxy.app_state import AppState
    from proxy.store.records import Grant
    from proxy.upstream.base import UpstreamTokens

log = logging.getLogger(__name__)


#: Upstream failures that end the grant, with the `grant.revoked` reason (J67).
#: Anything else (the IdP unreachable, rate limited, misconfigured) is a 503
#: or a 500 that destroys nothing.
ENDS_THE_GRANT = {
    "subject_changed": "upstream_subject_changed",
    "access_denied": "upstream_identity_refused",
    "invalid_response": "upstream_identity_invalid",
}


#: The stored claims, asked of the current email allow-lists.
STORED_REFUSED = "identity_refused"


def refreshed_claims(
    app: AppState, grant: Grant, renewed: UpstreamTokens | None
) -> dict[str, t.Any] | None:
    """The claims this refresh stores and mints with; None keeps the grant's.

    `renewed` is the IdP's refresh answer (None when the grant has no upstream
    refresh token). Raises InvalidGrantError, with the grant revoked, when the
    user may no longer hold it; the upstream's own error when the IdP could
    not answer.
    """
    try:
        identity = (
            None
            if renewed is None
            else app.upstream.refreshed_identity(renewed, subject=grant.sub)
        )
    except UpstreamError as exc:
        reason = ENDS_THE_GRANT.get(exc.kind)
        if reason is None:
            log.warning("identity re-read at refresh failed: %s", exc.cause)
            app.events.emit(
                "upstream.refresh_failed",
                outcome="error",
                **grant_fields(grant),
                reason=f"identity_{exc.kind}",
            )
            raise error_for(exc) from exc
        log.warning(
            "grant %s ended at refresh: %s", grant.grant_id[:8], exc.detail[:200]
        )
        end_grant(app, grant, reason)
    if identity is None:
        if not still_allowed(app, grant):
            end_grant(app, grant, STORED_REFUSED)
        return None
    claims = identity.token_claims()
    changed = changed_names(grant.claims, claims)
    if changed:
        app.events.emit(
            "refresh.claims_changed", **grant_fields(grant), claims=" ".join(changed)
        )
    return claims


def still_allowed(app: AppState, grant: Grant) -> bool:
    """Would the email allow-lists admit the grant's stored identity now?

    The same question /account asks of its session (J44): a tightened
    ALLOWED_EMAILS reaches grants at their next refresh, even those whose IdP
    gives nothing new on refresh.
    """
    settings = app.settings
    policy = LoginPolicy(settings.allowed_emails, settings.allowed_email_domains)
    email = grant.claims.get("email")
    identity = Identity(
        subject=grant.sub,
        email=email if isinstance(email, str) else None,
        email_verified=grant.claims.get("email_verified") is True,
    )
    try:
        policy(identity)
    except UpstreamError:
        return False
    return True


def changed_names(old: dict[str, t.Any], new: dict[str, t.Any]) -> list[str]:
    """The claim names whose values differ, sorted: what an audit line may say
    (names only; an email or a group name is the user's business)."""
    names = old.keys() | new.keys()
    return sorted(name for name in names if old.get(name) != new.get(name))


def end_grant(app: AppState, grant: Grant, reason: str) -> t.NoReturn:
    """Revoke the grant and refuse this refresh: the client must log in again."""
    app.store.revoke_grant(grant.grant_id)
    app.events.emit("grant.revoked", **grant_fields(grant), reason=reason)
    raise InvalidGrantError(
        "The user's identity no longer allows this grant.", reason=reason
    )
