"""The /account session: a sealed, short cookie saying who signed in; its CSRF token.

No server-side session exists: the cookie is AES-GCM sealed with the keyring
(so the user's email is not readable in the cookie jar and nothing in it can
be edited), carries its own expiry, and is scoped to ``Path=/account`` so no
other endpoint ever receives it. It holds no secret of the server: only who
signed in, when it ends, and a random session id the CSRF token is bound to
(decision J41).
"""

from __future__ import annotations

import json
import time
import typing as t
from dataclasses import asdict
from dataclasses import dataclass

from proxy.keys.keyring import Keyring
from proxy.keys.keyring import SealError
from proxy.keys.keyring import equal
from proxy.keys.keyring import random_token
from proxy.upstream.base import Identity
from proxy.upstream.base import UpstreamError
from proxy.upstream.policy import LoginPolicy

if t.TYPE_CHECKING:
    from flask import Request
    from werkzeug.wrappers import Response

    from proxy.config.settings import Settings


#: 20 minutes, absolute: long enough to review and revoke, short enough that a
#: copied cookie is soon worthless (sign-out cannot reach a copy elsewhere).
ACCOUNT_SESSION_SECONDS = 1200
ACCOUNT_PATH = "/account"
_CONTEXT = "account-session"
#: A sealed session is a few hundred bytes; anything far larger is not ours.
_MAX_COOKIE_CHARS = 2000


@dataclass(frozen=True, slots=True)
class AccountSession:
    """Who is signed in to /account, as the IdP vouched for it at sign-in."""

    sub: str
    email: str | None
    email_verified: bool
    name: str | None
    #: Random, per sign-in: the CSRF token is an HMAC of it.
    sid: str
    expires_at: int

    @classmethod
    def start(cls, identity: Identity, now: int) -> AccountSession:
        return cls(
            sub=identity.subject,
            email=identity.email,
            email_verified=identity.email_verified,
            name=identity.name,
            sid=random_token(),
            expires_at=now + ACCOUNT_SESSION_SECONDS,
        )

    def identity(self) -> Identity:
        return Identity(
            subject=self.sub,
            email=self.email,
            name=self.name,
            email_verified=self.email_verified,
        )


def secure_cookies(settings: Settings) -> bool:
    """Secure (and the ``__Secure-`` prefix) unless PUBLIC_URL is http loopback."""
    return not settings.insecure_loopback


def account_cookie_name(settings: Settings, name: str) -> str:
    """``__Secure-<name>`` over https. Not ``__Host-``: that prefix needs ``Path=/``."""
    return f"__Secure-{name}" if secure_cookies(settings) else name


def seal_session(keyring: Keyring, session: AccountSession) -> str:
    plaintext = json.dumps(asdict(session), separators=(",", ":")).encode()
    return keyring.seal(plaintext, context=_CONTEXT)


def open_session(keyring: Keyring, value: str, now: int) -> AccountSession | None:
    """The session a cookie value holds, or None: absent, altered, expired."""
    if not value or len(value) > _MAX_COOKIE_CHARS:
        return None
    try:
        data = json.loads(keyring.open(value, context=_CONTEXT))
        session = AccountSession(**data)
    except (SealError, ValueError, TypeError):
        return None
    if not isinstance(session.expires_at, int) or session.expires_at <= now:
        return None
    return session


def current_session(
    request: Request, settings: Settings, keyring: Keyring
) -> AccountSession | None:
    """This browser's /account session, if it has a valid one."""
    return open_session(keyring, session_cookie(request, settings), int(time.time()))


def session_cookie(request: Request, settings: Settings) -> str:
    """The raw cookie value ("" when absent)."""
    return request.cookies.get(account_cookie_name(settings, "mcp_account"), "")


def set_session_cookie(
    response: Response,
    settings: Settings,
    keyring: Keyring,
    session: AccountSession,
    *,
    root: str = "",
) -> None:
    """`root`: the app's mount point (``request.script_root``) behind a prefix."""
    response.set_cookie(
        account_cookie_name(settings, "mcp_account"),
        seal_session(keyring, session),
        max_age=max(0, session.expires_at - int(time.time())),
        path=root + ACCOUNT_PATH,
        secure=secure_cookies(settings),
        httponly=True,
        samesite="Lax",
    )


def clear_session_cookie(
    response: Response, settings: Settings, *, root: str = ""
) -> None:
    response.delete_cookie(
        account_cookie_name(settings, "mcp_account"),
        path=root + ACCOUNT_PATH,
        secure=secure_cookies(settings),
        httponly=True,
        samesite="Lax",
    )


def csrf_token(keyring: Keyring, session: AccountSession) -> str:
    """The token every /account form carries: bound to this one sign-in."""
    return keyring.mac(session.sid, purpose="account-csrf")


def check_csrf(keyring: Keyring, session: AccountSession, token: str) -> bool:
    return bool(token) and equal(csrf_token(keyring, session), token)


def still_allowed(settings: Settings, session: AccountSession) -> bool:
    """Would the email allow-lists admit this user now?

    The sign-in already went through the provider's full policy; asking the
    email lists again on every request means a tightened ALLOWED_EMAILS takes
    effect at the next restart, not when the session runs out (decision J44).
    """
    policy = LoginPolicy(settings.allowed_emails, settings.allowed_email_domains)
    try:
        policy(session.identity())
    except UpstreamError:
        return False
    return True
