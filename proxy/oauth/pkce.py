"""RFC 7636 PKCE, S256 only (OAuth 2.1 §4.1.1; the proxy refuses `plain`)."""

from __future__ import annotations

import hashlib
import re

from proxy.keys.keyring import b64url
from proxy.keys.keyring import equal
from proxy.keys.keyring import random_token

SUPPORTED_METHODS = ("S256",)


# RFC 7636 §4.1: code_verifier = 43*128unreserved.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


# RFC 7636 §4.2: BASE64URL(SHA256(verifier)) is exactly 43 characters.
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")


def s256(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def is_valid_verifier(verifier: str) -> bool:
    return bool(_VERIFIER.fullmatch(verifier))


def is_valid_challenge(challenge: str) -> bool:
    return bool(_S256_CHALLENGE.fullmatch(challenge))


def verify(verifier: str, challenge: str) -> bool:
    """RFC 7636 §4.6: BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge."""
    if not is_valid_verifier(verifier):
        return False
    return equal(s256(verifier), challenge)


def new_pair() -> tuple[str, str]:
    """A verifier and its S256 challenge, for the proxy's own upstream leg."""
    verifier = random_token(48)
    return verifier, s256(verifier)
