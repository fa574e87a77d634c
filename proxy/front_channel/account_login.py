"""Signing in to /account through the upstream IdP: its own state, PKCE and nonce.

The same IdP login as an OAuth flow, but nothing of an authorization request:
:func:`begin_sign_in` makes a fresh upstream state (``account.<random>``), a
PKCE pair and a nonce, and keeps them in a sealed, 10-minute cookie scoped to
``Path=/oauth2/callback``; the IdP comes back to the one callback URL the
operator registered (decision J40), which sees the ``account.`` state and hands
the request to :func:`finish_sign_in`. Nothing is stored in Redis, so a user
who opens /account and walks away leaves nothing behind.

Every failure is a page (there is no client to redirect to).
"""

from __future__ import annotations

import json
import logging
import time
import typing as t
from dataclasses import dataclass

from proxy.front_channel.account_session import account_cookie_name
from proxy.front_channel.account_session import secure_cookies
from proxy.keys.keyring import Keyring
from proxy.keys.keyring import SealError
from proxy.keys.keyring import equal
from proxy.keys.keyring import random_token
from proxy.oauth import pkce
from proxy.oauth.errors import AccessDeniedError
from proxy.oauth.errors import BadRequestPageError
from proxy.oauth.errors import OAuthError
from proxy.oauth.errors import TemporarilyUnavailableError
from proxy.upstream.base import ISSUER_MISMATCH_MESSAGE
from proxy.upstream.base import UpstreamError

if t.TYPE_CHECKING:
    from collections.abc import Mapping

    from flask import Request
    from werkzeug.wrappers import Response

    from proxy.app_state import AppState
    from proxy.config.settings import Settings
    from proxy.upstream.base import Identity

log = logging.getLogger(__name__)

#: Marks an upstream state as an /account sign-in at the shared callback.
STATE_PREFIX = "account."
#: Time to get through the IdP's login page (as a consent transaction's TTL).
SIGN_IN_SECONDS = 600
CALLBACK_PATH = "/oauth2/callback"
_CONTEXT = "account-login"
_COOKIE = "mcp_account_login"
_MAX_COOKIE_CHARS = 1000


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """What the callback needs to finish one /account sign-in."""

    state: str
    verifier: str
    nonce: str
    expires_at: int


def is_account_state(state: str) -> bool:
    """Does this upstream state belong to an /account sign-in (not an OAuth flow)?"""
    return state.startswith(STATE_PREFIX)


def begin_sign_in(app: AppState) -> tuple[str, PendingSignIn]:
    """A fresh sign-in: the IdP login URL, and what the cookie must remember.

    The IdP being unreachable or misconfigured is a 503 (or 500) page.
    """
    verifier, challenge = pkce.new_pair()
    pending = PendingSignIn(
        state=STATE_PREFIX + random_token(),
        verifier=verifier,
        nonce=random_token(16),
        expires_at=int(time.time()) + SIGN_IN_SECONDS,
    )
    try:
        url = app.upstream.authorization_url(
            state=pending.state, code_challenge=challenge, nonce=pending.nonce
        )
    except UpstreamError as exc:
        log.warning("account sign-in cannot start: %s", exc.cause)
        raise _unavailable(exc) from exc
    return url, pending


def set_pending_cookie(
    response: Response,
    settings: Settings,
    keyring: Keyring,
    pending: PendingSignIn,
    *,
    root: str = "",
) -> None:
    """Sealed: the PKCE verifier and nonce are secrets, even in the user's browser."""
    plaintext = json.dumps(
        [pending.state, pending.verifier, pending.nonce, pending.expires_at]
    ).encode()
    response.set_cookie(
        account_cookie_name(settings, _COOKIE),
        keyring.seal(plaintext, context=_CONTEXT),
        max_age=SIGN_IN_SECONDS,
        path=root + CALLBACK_PATH,
        secure=secure_cookies(settings),
        httponly=True,
        samesite="Lax",
    )


def clear_pending_cookie(
    response: Response, settings: Settings, *, root: str = ""
) -> None:
    response.delete_cookie(
        account_cookie_name(settings, _COOKIE),
        path=root + CALLBACK_PATH,
        secure=secure_cookies(settings),
        httponly=True,
        samesite="Lax",
    )


def pending_sign_in(
    request: Request, settings: Settings, keyring: Keyring
) -> PendingSignIn | None:
    """The sign-in this browser started, if its cookie is ours and unexpired."""
    value = request.cookies.get(account_cookie_name(settings, _COOKIE), "")
    if not value or len(value) > _MAX_COOKIE_CHARS:
        return None
    try:
        state, verifier, nonce, expires_at = json.loads(
            keyring.open(value, context=_CONTEXT)
        )
    except (SealError, ValueError, TypeError):
        return None
    if not isinstance(expires_at, int) or expires_at <= time.time():
        return None
    return PendingSignIn(state, verifier, nonce, expires_at)


def finish_sign_in(
    app: AppState, pending: PendingSignIn | None, args: Mapping[str, str]
) -> Identity:
    """The IdP's answer (`state`, `code` or `error`, `iss`) as a verified identity.

    The allow-lists apply inside the provider's code exchange, exactly as for
    an OAuth login: a user the proxy would refuse cannot sign in here.
    """
    # Login CSRF: the state must be the one this browser's own cookie holds, so
    # nobody can sign a victim in to /account with the attacker's IdP answer.
    if pending is None or not equal(pending.state, args.get("state", "")):
        raise BadRequestPageError(
            "This sign-in did not start in this browser, or took too long. "
            "Open your connected apps page again.",
            reason="account_sign_in_binding",
        )
    upstream_error = args.get("error")
    if upstream_error:
        log.info("account sign-in: upstream returned error=%r", upstream_error[:64])
        raise _upstream_refusal(upstream_error[:32])
    code = args.get("code")
    try:
        # RFC 9207 §2.4: a mismatching iss means a mix-up attack; stop here.
        iss = args.get("iss")
        if iss is not None and not app.upstream.issuer_matches(iss):
            raise _failed("upstream_iss_mismatch")
        if not code:
            raise _failed("upstream_no_code")
        _, identity = app.upstream.exchange_code(
            code=code, code_verifier=pending.verifier, nonce=pending.nonce
        )
    except UpstreamError as exc:
        log.warning("account sign-in: code exchange failed: %s", exc.cause)
        if exc.kind == "access_denied":
            # The allow-lists (or the provider's own policy) refused this user.
            raise AccessDeniedError(
                "This account may not use this service.", reason="upstream_denied"
            ) from exc
        if exc.kind in ("unavailable", "issuer_mismatch", "invalid_client"):
            raise _unavailable(exc) from exc
        # A spent, expired or forged code, an ID token that does not verify.
        raise _failed(f"upstream_{exc.kind}") from exc
    return identity


def _unavailable(exc: UpstreamError) -> TemporarilyUnavailableError:
    """The IdP is down, or the operator's configuration does not match it: a
    503 page saying which (a page has no client to send a 500 to)."""
    if exc.kind == "issuer_mismatch":
        description = ISSUER_MISMATCH_MESSAGE
    elif exc.kind == "invalid_client":
        description = "The identity provider refused this service's credentials."
    else:
        description = "The identity provider is unavailable."
    return TemporarilyUnavailableError(description, reason=f"upstream_{exc.kind}")


def _failed(reason: str) -> BadRequestPageError:
    """The IdP's answer cannot finish a sign-in: start a fresh one."""
    return BadRequestPageError(
        "This sign-in could not be completed. Open your connected apps page again.",
        reason=reason,
    )


def _upstream_refusal(error: str) -> OAuthError:
    """An `error` the IdP sent back instead of a code (RFC 6749 §4.1.2.1)."""
    if error == "access_denied":
        return AccessDeniedError("The sign-in was refused.", reason="upstream_denied")
    if error in ("temporarily_unavailable", "server_error"):
        return TemporarilyUnavailableError(
            "The identity provider is unavailable.", reason=f"upstream_{error}"
        )
    return _failed(f"upstream_{error}")
