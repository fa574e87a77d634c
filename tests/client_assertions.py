"""The malformed and test-only side of private_key_jwt assertions.

Keys and well-formed assertions come from support/client_assertions.py
(shared with the benchmark) and are re-exported here; this module adds what
only tests send: hand-built headers, HMAC and unsigned tokens, and an
in-memory DocumentSource.
"""

from __future__ import annotations

import base64
import json
import typing as t

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jwt
from joserfc.jwk import OctKey

from support.client_assertions import ALGORITHM_KEYS
from support.client_assertions import assertion_form
from support.client_assertions import claims_for
from support.client_assertions import jwks
from support.client_assertions import private_key
from support.client_assertions import public_jwk
from support.client_assertions import sign

__all__ = [
    "ALGORITHM_KEYS",
    "MemoryDocuments",
    "assertion_form",
    "claims_for",
    "hmac_signed",
    "jwks",
    "private_key",
    "public_jwk",
    "rs256_with_header",
    "sign",
    "unsigned",
]


def rs256_with_header(header: dict[str, t.Any], claims: dict[str, t.Any]) -> str:
    """RS256 by hand, for headers joserfc refuses to produce (e.g. `crit`)."""
    key = private_key("RS256")
    signing_input = f"{_b64_json(header)}.{_b64_json(claims)}".encode()
    signature = key.get_op_key("sign").sign(
        signing_input, padding.PKCS1v15(), hashes.SHA256()
    )
    encoded = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return f"{signing_input.decode()}.{encoded}"


def _b64_json(value: dict[str, t.Any]) -> str:
    raw = json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hmac_signed(claims: dict[str, t.Any], secret: bytes) -> str:
    """HS256 over the claims, keyed with `secret` (e.g. the public key's bytes)."""
    key = OctKey.import_key(secret)
    return jwt.encode({"alg": "HS256"}, claims, key, algorithms=["HS256"])


def unsigned(claims: dict[str, t.Any]) -> str:
    """alg none: a JWT with an empty signature."""
    return f"{_b64_json({'alg': 'none'})}.{_b64_json(claims)}."


class MemoryDocuments:
    """An in-memory DocumentSource: URL -> document, counting fetches."""

    def __init__(self, documents: dict[str, t.Any] | None = None) -> None:
        self.documents = dict(documents or {})
        self.fetches: list[tuple[str, str, bool]] = []

    def fetch_json(
        self, url: str, *, kind: t.Any, force: bool = False
    ) -> dict[str, t.Any]:
        from proxy.clients.document_source import DocumentError

        self.fetches.append((url, kind, force))
        document = self.documents.get(url)
        if document is None:
            raise DocumentError(f"{url} answered 404")
        return t.cast(dict[str, t.Any], document)
