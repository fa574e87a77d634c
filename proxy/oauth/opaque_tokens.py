"""Opaque authorization codes and refresh tokens: ``<grant_id>.<secret>``.

The grant id finds the record in one lookup; only the secret's SHA-256 is
stored, so a leaked database holds no usable token."""

from __future__ import annotations

import re

from proxy.keys.keyring import random_token

_OPAQUE = re.compile(r"([A-Za-z0-9_-]{16,64})\.([A-Za-z0-9_-]{32,128})")


def new_grant_id() -> str:
    return random_token(16)


def new_opaque(grant_id: str) -> tuple[str, str]:
    """A fresh `<grant_id>.<secret>` token and its secret part."""
    secret = random_token()
    return f"{grant_id}.{secret}", secret


def split_opaque(token: str) -> tuple[str, str] | None:
    """(grant_id, secret) of a well-formed opaque token, else None."""
    match = _OPAQUE.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None
