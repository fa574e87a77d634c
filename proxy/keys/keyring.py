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
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Opened:
    """A sealed value's plaintext, and the same value sealed under the current key
    when it was opened with a previous one (``resealed``; None when current)."""

    plaintext: bytes
    resealed: str | None = None


class Keyring:
    """Keys derived from the one PROXY_SECRET_KEY, one per purpose.

    Separate derived keys mean a cookie signature can never be replayed as a
    ciphertext key, and vice versa.

    ``previous`` (PROXY_SECRET_KEY_PREVIOUS) lets the secret change: values
    sealed, signed or MACed under a previous secret still open and verify,
    while everything new uses the current one. :meth:`open_current` says which
    key opened a value, so its caller can write it back resealed (J33).
    """

    def __init__(self, secret_key: bytes, previous: t.Sequence[bytes] = ()) -> None:
        self._secret = secret_key
        self._derived: dict[str, bytes] = {}
        self._aead = AESGCM(self.derive("aes-gcm/storage"))
        self._previous = tuple(Keyring(key) for key in previous if key != secret_key)

    @property
    def has_previous(self) -> bool:
        """True when PROXY_SECRET_KEY_PREVIOUS names at least one other key."""
        return bool(self._previous)

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
        """The plaintext, opened with the current key or any previous one."""
        return self.open_current(sealed, context=context).plaintext

    def open_current(self, sealed: str, *, context: str) -> Opened:
        """Open ``sealed``; if only a previous key opens it, reseal it as well.

        Raises :class:`SealError` when no key opens it: tampered, or sealed
        under a secret that is neither current nor listed as previous.
        """
        try:
            return Opened(self._open_own(sealed, context=context))
        except SealError:
            if not self._previous:
                raise
        for older in self._previous:
            try:
                plaintext = older._open_own(sealed, context=context)
            except SealError:
                continue
            return Opened(plaintext, self.seal(plaintext, context=context))
        raise SealError("sealed value does not authenticate")

    def _open_own(self, sealed: str, *, context: str) -> bytes:
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
        """Open what :meth:`seal_with` sealed, under the current or a previous key.

        Never resealed: it lives only for the refresh grace window (two
        minutes at most) and the next rotation replaces it.
        """
        for keyring in (self, *self._previous):
            key = hmac.new(keyring._secret, secret.encode(), hashlib.sha256).digest()
            try:
                raw = b64url_decode(sealed)
                return AESGCM(key).decrypt(raw[:12], raw[12:], context.encode())
            except (InvalidTag, ValueError):
                continue
        raise SealError("sealed value does not authenticate")

    def sign(self, payload: dict[str, t.Any], *, purpose: str, max_age: int) -> str:
        """A compact signed, expiring blob (HMAC-SHA256) for forms and cookies."""
        body = dict(payload, exp=int(time.time()) + max_age)
        data = b64url(json.dumps(body, separators=(",", ":")).encode())
        mac = hmac.new(self.derive("sign/" + purpose), data.encode(), hashlib.sha256)
        return f"{data}.{b64url(mac.digest())}"

    def unsign(self, token: str, *, purpose: str) -> dict[str, t.Any] | None:
        """The payload of a valid, unexpired signed blob, else None.

        A blob signed under a previous secret is still valid (consent forms,
        remembered consent and trace cookies outlive a change of secret).
        """
        for keyring in (self, *self._previous):
            body = keyring._unsign_own(token, purpose=purpose)
            if body is not None:
                return body
        return None

    def _unsign_own(self, token: str, *, purpose: str) -> dict[str, t.Any] | None:
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

    def mac_matches(self, value: str, mac: str, *, purpose: str) -> bool:
        """Constant-time check of ``mac`` against the current and previous keys."""
        found = False
        for keyring in (self, *self._previous):
            found |= equal(keyring.mac(value, purpose=purpose), mac)
        return found
