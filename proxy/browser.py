"""The browser's side of the flow: binding cookie, CSRF token, remembered consent.

A random browser id in a `__Host-` cookie ties the consent form, the stored
transaction and the upstream callback to one browser (MCP-SBP confused-deputy
controls). `Secure` and the `__Host-` prefix are dropped only when PUBLIC_URL is
http on loopback, where browsers and HTTP clients would not send them back.
"""

from __future__ import annotations

import hashlib
import time
import typing as t

from . import scopes
from .crypto import Keyring
from .crypto import equal
from .crypto import random_token
from .crypto import sha256_hex

if t.TYPE_CHECKING:
    from flask import Request
    from flask import Response

    from .settings import Settings

BROWSER_COOKIE_MAX_AGE_SECONDS = 86400
MAX_REMEMBERED_CONSENTS = 20


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


def csrf_token(keyring: Keyring, browser: str, request_blob: str) -> str:
    """Bound to this browser and this exact consent form (CONSENT-3)."""
    digest = hashlib.sha256(request_blob.encode()).hexdigest()
    return keyring.mac(f"{browser}|{digest}", purpose="csrf")


def check_csrf(keyring: Keyring, browser: str, request_blob: str, token: str) -> bool:
    return equal(csrf_token(keyring, browser, request_blob), token)


def _consent_entry(client_id: str, redirect_uri: str) -> str:
    return sha256_hex(f"{client_id}\n{redirect_uri}")[:32]


def remembered_scope(
    request: Request,
    settings: Settings,
    keyring: Keyring,
    client_id: str,
    redirect_uri: str,
) -> list[str]:
    """Scopes this browser already approved for (client, redirect_uri) (CONSENT-8)."""
    raw = request.cookies.get(cookie_name(settings, "mcp_consent"))
    if not raw or settings.consent_remember_seconds <= 0:
        return []
    payload = keyring.unsign(raw, purpose="consent-remember")
    if not payload:
        return []
    entries = payload.get("c", {})
    scope = (
        entries.get(_consent_entry(client_id, redirect_uri))
        if isinstance(entries, dict)
        else None
    )
    return scopes.parse(scope) if isinstance(scope, str) else []


def remember_consent(
    request: Request,
    response: Response,
    settings: Settings,
    keyring: Keyring,
    client_id: str,
    redirect_uri: str,
    scope: str,
) -> None:
    if settings.consent_remember_seconds <= 0:
        return
    name = cookie_name(settings, "mcp_consent")
    payload = keyring.unsign(request.cookies.get(name, ""), purpose="consent-remember")
    entries = payload.get("c", {}) if payload else {}
    if not isinstance(entries, dict):
        entries = {}
    entries.pop(_consent_entry(client_id, redirect_uri), None)
    entries[_consent_entry(client_id, redirect_uri)] = scope
    while len(entries) > MAX_REMEMBERED_CONSENTS:
        entries.pop(next(iter(entries)))
    value = keyring.sign(
        {"c": entries, "t": int(time.time())},
        purpose="consent-remember",
        max_age=settings.consent_remember_seconds,
    )
    set_cookie(
        response, settings, "mcp_consent", value, settings.consent_remember_seconds
    )
