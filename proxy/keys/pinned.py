"""Signing keys pinned by the operator (SIGNING_KEYS): PEM, a JWK or a JWKS.

Pinned keys live in configuration, never only in Redis, so losing Redis cannot
lose them. Several keys allow rotation: the first signs, every one verifies
(a retired key may be public only). Parsing happens once, at start-up; every
problem is a one-line :class:`KeyMaterialError` that never quotes the key.
"""

from __future__ import annotations

import json
import re
import typing as t

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from proxy.oauth.access_tokens import ALGORITHM

#: The one curve ES256 signs with (RFC 7518 §3.4).
CURVE = "P-256"

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----", re.DOTALL)


class KeyMaterialError(ValueError):
    """Pinned key material is unusable; the message says why, never the key."""


def parse_signing_keys(text: str) -> tuple[ECKey, ...]:
    """The keys in ``text``, signing key first, each named by its ``kid``.

    ``text`` is one or more PEM blocks, a JWK (a JSON object with ``kty``) or a
    JWKS (``{"keys": [...]}``).
    """
    text = text.strip()
    if not text:
        raise KeyMaterialError("no key material")
    if text.startswith("{"):
        keys = _from_json(text)
    elif "-----BEGIN" in text:
        keys = _from_pem(text)
    else:
        raise KeyMaterialError(
            "not PEM, a JWK or a JWKS (expected '-----BEGIN' or a JSON object)"
        )
    if not keys:
        raise KeyMaterialError("holds no keys")
    if not keys[0].is_private:
        raise KeyMaterialError(
            "the first key signs, so it needs its private part "
            "(later keys may be public: they only verify)"
        )
    kids = [key.kid for key in keys]
    duplicate = next((kid for kid in kids if kids.count(kid) > 1), None)
    if duplicate is not None:
        raise KeyMaterialError(f"kid {duplicate!r} appears twice")
    thumbprints = [key.thumbprint() for key in keys]
    if len(set(thumbprints)) != len(thumbprints):
        raise KeyMaterialError("the same key appears twice")
    return tuple(keys)


def with_thumbprint_kid(key: ECKey) -> ECKey:
    """Name a key by its RFC 7638 thumbprint, so every instance agrees on the kid."""
    return _reimport(key, key.thumbprint())


def _from_pem(text: str) -> list[ECKey]:
    blocks = [match.group(0) for match in _PEM_BLOCK.finditer(text)]
    if not blocks:
        raise KeyMaterialError("PEM has a BEGIN line without its matching END line")
    keys = []
    for number, block in enumerate(blocks, 1):
        if "ENCRYPTED" in block.split("\n", 1)[0]:
            raise KeyMaterialError(
                f"PEM key #{number} is encrypted; give it without a passphrase"
            )
        keys.append(with_thumbprint_kid(_import(block, f"PEM key #{number}")))
    return keys


def _from_json(text: str) -> list[ECKey]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise KeyMaterialError(
            f"is not valid JSON (line {getattr(exc, 'lineno', '?')})"
        ) from None
    if not isinstance(document, dict):
        raise KeyMaterialError("JSON must be a JWK or a JWKS object")
    if "keys" in document:
        entries = document["keys"]
        if not isinstance(entries, list):
            raise KeyMaterialError("JWKS 'keys' must be a list")
        return [
            _from_jwk(entry, f"JWKS key #{n}") for n, entry in enumerate(entries, 1)
        ]
    return [_from_jwk(document, "JWK")]


def _from_jwk(entry: object, where: str) -> ECKey:
    if not isinstance(entry, dict) or "kty" not in entry:
        raise KeyMaterialError(f"{where} is not a JWK object with 'kty'")
    if entry["kty"] != "EC":
        raise KeyMaterialError(
            f"{where} has kty {entry['kty']!r}: only EC P-256 keys sign {ALGORITHM}"
        )
    if entry.get("alg", ALGORITHM) != ALGORITHM:
        raise KeyMaterialError(f"{where} has alg {entry['alg']!r}, not {ALGORITHM}")
    if entry.get("use", "sig") != "sig":
        raise KeyMaterialError(f"{where} has use {entry['use']!r}, not 'sig'")
    kid = entry.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise KeyMaterialError(f"{where} has a kid that is not a non-empty string")
    key = _import(entry, where)
    # An operator's kid is kept (other systems may know the key by it).
    return _reimport(key, kid) if kid else with_thumbprint_kid(key)


def _import(material: str | dict[str, t.Any], where: str) -> ECKey:
    try:
        key = ECKey.import_key(material)
    except (JoseError, ValueError, TypeError, KeyError):
        raise KeyMaterialError(f"{where} is not a readable EC {CURVE} key") from None
    # Older joserfc imports an RSA PEM as an "ECKey" without complaint; the
    # type of the key underneath is the check every version agrees on.
    if not isinstance(
        key.raw_value, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)
    ):
        raise KeyMaterialError(
            f"{where} is not an EC key: only EC {CURVE} signs {ALGORITHM}"
        )
    if key.curve_name != CURVE:
        raise KeyMaterialError(
            f"{where} is on curve {key.curve_name}: only {CURVE} signs {ALGORITHM}"
        )
    return key


def _reimport(key: ECKey, kid: str) -> ECKey:
    if key.is_private:
        return ECKey.import_key(key.as_pem(private=True), parameters={"kid": kid})
    return ECKey.import_key(key.as_pem(private=False), parameters={"kid": kid})
