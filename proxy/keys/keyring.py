"""Random tokens, digests, constant-time comparison, AES-GCM sealing, HMAC signing.

Every secret the proxy hands out has 256 bits of randomness (GEN-11). Stored
forms are SHA-256 digests (codes, refresh tokens, client secrets) or AES-GCM
ciphertexts (upstream tokens, signing keys), never the secret itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
import typing as t

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TOKEN_BYTES = 32


def random_token(nbytes: int = TOKEN_BYTES) -> str:
    """An unguessable URL-safe token (2^-256 guess probability)."""
    return secrets.token_urlsafe(nbytes)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def equal(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time equality for secrets and their digests."""
    a_bytes = a.encode() if isinstance(a, str) else a
    b_bytes = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)


class SealError(ValueError):
    """A sealed value failed authentication: tampered, truncated or another key."""


class Keyring:
    """Keys derived from the one PROXY_SECRET_KEY, one per purpose.

    Separate derived keys mean a cookie signature can never be replayed as a
    ciphertext key, and vice versa.
    """

    def __init__(self, secret_key: bytes) -> None:
        self._secret = secret_key
        self._derived: dict[str, bytes] = {}
        self._aead = AESGCM(self.derive("aes-gcm/storage"))

    def derive(self, purpose: str) -> bytes:
        """The key for one purpose (HMAC of the secret), computed once."""
        key = self._derived.get(purpose)
        if key is None:
            key = hmac.new(self._secret, purpose.encode(), hashlib.sha256).digest()
            self._derived[purpose] = key
        return key

    def seal(self, plaintext: bytes, *, context: str) -> str:
        """AES-GCM encrypt; `context` (e.g. the record key) is authenticated data."""
        nonce = os.urandom(12)
        ciphertext = self._aead.encrypt(nonce, plaintext, context.encode())
        return b64url(nonce + ciphertext)

    def open(self, sealed: str, *, context: str) -> bytes:
        try:
            raw = b64url_decode(sealed)
            return self._aead.decrypt(raw[:12], raw[12:], context.encode())
        except (InvalidTag, ValueError) as exc:
            raise SealError("sealed value does not authenticate") from exc

    def seal_with(self, secret: str, plaintext: bytes, *, context: str) -> str:
        """Encrypt under a key derived from a secret only its holder knows.

        Used for the refresh grace window: the new token pair is stored so that
        only someone presenting the previous refresh token can read it back.
        """
        key = hmac.new(self._secret, secret.encode(), hashlib.sha256).digest()
        nonce = os.urandom(12)
        return b64url(nonce + AESGCM(key).encrypt(nonce, plaintext, context.encode()))

    def open_with(self, secret: str, sealed: str, *, context: str) -> bytes:
        key = hmac.new(self._secret, secret.encode(), hashlib.sha256).digest()
        try:
            raw = b64url_decode(sealed)
            return AESGCM(key).decrypt(raw[:12], raw[12:], context.encode())
        except (InvalidTag, ValueError) as exc:
            raise SealError("sealed value does not authenticate") from exc

    def sign(self, payload: dict[str, t.Any], *, purpose: str, max_age: int) -> str:
        """A compact signed, expiring blob (HMAC-SHA256) for forms and cookies."""
        body = dict(payload, exp=int(time.time()) + max_age)
        data = b64url(json.dumps(body, separators=(",", ":")).encode())
        mac = hmac.new(self.derive("sign/" + purpose), data.encode(), hashlib.sha256)
        return f"{data}.{b64url(mac.digest())}"

    def unsign(self, token: str, *, purpose: str) -> dict[str, t.Any] | None:
        """The payload of a valid, unexpired signed blob, else None."""
        data, _, mac = token.partition(".")
        expected = hmac.new(
            self.derive("sign/" + purpose), data.encode(), hashlib.sha256
        )
        if not mac or not equal(b64url(expected.digest()), mac):
            return None
        try:
            body = json.loads(b64url_decode(data))
        except ValueError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("exp"), int):
            return None
        if body["exp"] < time.time():
            return None
        return body

    def mac(self, value: str, *, purpose: str) -> str:
        digest = hmac.new(self.derive("mac/" + purpose), value.encode(), hashlib.sha256)
        return b64url(digest.digest())
