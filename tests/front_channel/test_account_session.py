"""The /account session cookie: sealed, short, scoped, and its CSRF token."""

from __future__ import annotations

import time

from werkzeug.wrappers import Response

from proxy.config.settings import Settings
from proxy.front_channel import account_login
from proxy.front_channel import account_session
from proxy.front_channel.account_session import ACCOUNT_SESSION_SECONDS
from proxy.front_channel.account_session import AccountSession
from proxy.keys.keyring import Keyring
from proxy.upstream.base import Identity

KEYRING = Keyring(bytes(range(32)))
NOW = 1_800_000_000


def _session(now: int = NOW) -> AccountSession:
    identity = Identity("alice", email="alice@example.com", email_verified=True)
    return AccountSession.start(identity, now)


def _set_cookie(response: Response) -> str:
    [header] = response.headers.getlist("Set-Cookie")
    return header


def _attributes(header: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}


def test_session_lasts_between_15_and_30_minutes() -> None:
    session = _session()
    assert session.expires_at - NOW == ACCOUNT_SESSION_SECONDS
    assert 900 <= ACCOUNT_SESSION_SECONDS <= 1800


def test_sealed_session_opens_until_it_expires() -> None:
    session = _session()
    value = account_session.seal_session(KEYRING, session)
    assert account_session.open_session(KEYRING, value, NOW) == session
    assert account_session.open_session(KEYRING, value, session.expires_at) is None


def test_session_cannot_be_read_or_altered() -> None:
    value = account_session.seal_session(KEYRING, _session())
    assert "alice" not in value
    # Not the last character: in unpadded base64 its low bits may be padding,
    # which decoders ignore, so changing it can leave the bytes as they were.
    for i in (0, len(value) // 2, len(value) - 2):
        altered = value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1 :]
        assert account_session.open_session(KEYRING, altered, NOW) is None
    other = Keyring(bytes(32))
    assert account_session.open_session(other, value, NOW) is None
    assert account_session.open_session(KEYRING, "", NOW) is None
    assert account_session.open_session(KEYRING, "x" * 5000, NOW) is None


def test_sign_in_cookie_cannot_stand_in_for_a_session() -> None:
    """Each cookie is sealed with its own context: one never opens as the other."""
    login_value = KEYRING.seal(
        b'["account.x","v","n",9999999999]', context="account-login"
    )
    assert account_session.open_session(KEYRING, login_value, NOW) is None


def test_csrf_token_is_bound_to_one_sign_in() -> None:
    first, second = _session(), _session()
    token = account_session.csrf_token(KEYRING, first)
    assert account_session.check_csrf(KEYRING, first, token)
    assert not account_session.check_csrf(KEYRING, second, token)
    assert not account_session.check_csrf(KEYRING, first, "")


def test_cookies_over_https_are_secure_and_prefixed(settings: Settings) -> None:
    https = settings.replace(public_url="https://proxy.example")
    response = Response()
    session = _session(int(time.time()))
    account_session.set_session_cookie(response, https, KEYRING, session)
    header = _set_cookie(response)
    assert header.startswith("__Secure-mcp_account=")
    assert {"secure", "httponly", "path", "samesite", "max-age"} <= _attributes(header)
    assert "Path=/account" in header
    assert "SameSite=Lax" in header
    assert "Domain" not in header

    response = Response()
    pending = account_login.PendingSignIn("account.s", "v", "n", NOW)
    account_login.set_pending_cookie(response, https, KEYRING, pending)
    header = _set_cookie(response)
    assert header.startswith("__Secure-mcp_account_login=")
    assert {"secure", "httponly"} <= _attributes(header)
    assert "Path=/oauth2/callback" in header
    assert "HttpOnly" in header


def test_cookies_on_http_loopback_are_not_secure(settings: Settings) -> None:
    response = Response()
    account_session.set_session_cookie(
        response, settings, KEYRING, _session(int(time.time()))
    )
    header = _set_cookie(response)
    assert header.startswith("mcp_account=")
    assert "secure" not in _attributes(header)
    assert "httponly" in _attributes(header)
