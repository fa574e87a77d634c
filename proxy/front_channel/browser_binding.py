"""The browser-binding cookie and the consent form's CSRF token.

A random browser id in a `__Host-` cookie ties the consent form, the stored
transaction and the upstream callback to one browser (MCP-SBP confused-deputy
controls). `Secure` and the `__Host-` prefix are dropped only when PUBLIC_URL is
http on loopback, where browsers and HTTP clients would not send them back."""

from __future__ import annotations

import hashlib
import typing as t

from proxy.keys.keyring import Keyring
from proxy.keys.keyring import random_token
from proxy.keys.keyring import sha256_hex

if t.TYPE_CHECKING:
    from flask import Request
    from werkzeug.wrappers import Response

    from proxy.config.settings import Settings


BROWSER_COOKIE_MAX_AGE_SECONDS = 86400
#: The trace cookie outlives a consent form (10 min) plus a transaction (10 min).
TRACE_COOKIE_MAX_AGE_SECONDS = 1800


def cookie_name(settings: Settings, name: str) -> str:
    return name if settings.insecure_loopback else f"__Host-{name}"


def browser_id(request: Request, settings: Settings) -> str | None:
    value = request.cookies.get(cookie_name(settings, "mcp_browser"))
    return value if value and 20 <= len(value) <= 100 else None


def new_browser_id() -> str:
    return random_token()


def browser_hash(value: str) -> str:
    return sha256_hex("browser:" + value)


def set_cookie(
    response: Response, settings: Settings, name: str, value: str, max_age: int
) -> None:
    response.set_cookie(
        cookie_name(settings, name),
        value,
        max_age=max_age,
        path="/",
        secure=not settings.insecure_loopback,
        httponly=True,
        samesite="Lax",
    )


def set_browser_cookie(response: Response, settings: Settings, value: str) -> None:
    set_cookie(response, settings, "mcp_browser", value, BROWSER_COOKIE_MAX_AGE_SECONDS)


def set_trace_cookie(
    response: Response, settings: Settings, keyring: Keyring, trace_id: str
) -> None:
    """This browser's latest flow trace, signed: a callback that lost its
    ``state`` (an IdP's deny page may drop it) is still traced to the attempt."""
    value = keyring.sign(
        {"t": trace_id}, purpose="trace", max_age=TRACE_COOKIE_MAX_AGE_SECONDS
    )
    set_cookie(response, settings, "mcp_trace", value, TRACE_COOKIE_MAX_AGE_SECONDS)


def trace_from_cookie(
    request: Request, settings: Settings, keyring: Keyring
) -> str | None:
    """The trace id of this browser's latest authorization attempt, if signed by us."""
    value = request.cookies.get(cookie_name(settings, "mcp_trace"))
    if not value or len(value) > 200:
        return None
    payload = keyring.unsign(value, purpose="trace")
    trace_id = payload.get("t") if payload else None
    return trace_id if isinstance(trace_id, str) else None


def csrf_token(keyring: Keyring, browser: str, request_blob: str) -> str:
    """Bound to this browser and this exact consent form (CONSENT-3)."""
    digest = hashlib.sha256(request_blob.encode()).hexdigest()
    return keyring.mac(f"{browser}|{digest}", purpose="csrf")


def check_csrf(keyring: Keyring, browser: str, request_blob: str, token: str) -> bool:
    """A form rendered before PROXY_SECRET_KEY changed still passes (previous keys)."""
    digest = hashlib.sha256(request_blob.encode()).hexdigest()
    return keyring.mac_matches(f"{browser}|{digest}", token, purpose="csrf")
