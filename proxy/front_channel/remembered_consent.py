"""Consent a browser already gave, per client and redirect URI, in a signed cookie."""

from __future__ import annotations

import time
import typing as t

from proxy.front_channel.browser_binding import cookie_name
from proxy.front_channel.browser_binding import set_cookie
from proxy.keys.keyring import Keyring
from proxy.keys.keyring import sha256_hex
from proxy.oauth import scopes

if t.TYPE_CHECKING:
    from flask import Request
    from werkzeug.wrappers import Response

    from proxy.config.settings import Settings


MAX_REMEMBERED_CONSENTS = 20


def resource_fingerprint(
    fingerprint: str, resource: str, *, several_servers: bool
) -> str:
    """What a remembered consent depends on: the client's fingerprint and,
    with several MCP servers, the server: approving one approves no other."""
    if several_servers:
        return f"{fingerprint}\n{resource}"
    return fingerprint


def _consent_entry(client_id: str, redirect_uri: str, fingerprint: str = "") -> str:
    """The entry's name. `fingerprint`: what a URL client's consent depends on.

    CIMD-16: a re-fetched document with other redirect_uris or keys has
    another fingerprint, so consent given to the earlier one is not found.
    """
    text = f"{client_id}\n{redirect_uri}"
    if fingerprint:
        text += f"\n{fingerprint}"
    return sha256_hex(text)[:32]


def remembered_scope(
    request: Request,
    settings: Settings,
    keyring: Keyring,
    client_id: str,
    redirect_uri: str,
    *,
    fingerprint: str = "",
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
        entries.get(_consent_entry(client_id, redirect_uri, fingerprint))
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
    *,
    fingerprint: str = "",
) -> None:
    if settings.consent_remember_seconds <= 0:
        return
    name = cookie_name(settings, "mcp_consent")
    payload = keyring.unsign(request.cookies.get(name, ""), purpose="consent-remember")
    entries = payload.get("c", {}) if payload else {}
    if not isinstance(entries, dict):
        entries = {}
    entry = _consent_entry(client_id, redirect_uri, fingerprint)
    entries.pop(entry, None)
    entries[entry] = scope
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
