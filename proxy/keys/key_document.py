"""The ``keys`` record: JWT signing keys as stored in Redis, private parts sealed.

One JSON document holds every key with its schedule (see ``schedule.py``)::

    {"v": 2, "keys": [{"kid": "…", "alg": "ES256", "created_at": 1796000000,
      "publish_at": 1796000000, "sign_from": 1796086400, "retire_at": null,
      "private": "<AES-GCM>"}]}

Version 1 documents (no schedule fields) are read as "published and signing
since creation, never retired", so a record written before rotation existed
keeps working. Parsing is separate from opening: the operator's CLI can
reschedule keys without their private parts, and a worker opens them once per
version of the record.
"""

from __future__ import annotations

import dataclasses
import json
import typing as t
from dataclasses import dataclass

from joserfc.jwk import ECKey

from proxy.keys.keyring import Keyring
from proxy.keys.pinned import with_thumbprint_kid
from proxy.oauth.access_tokens import ALGORITHM

#: The AES-GCM associated data of every sealed private key.
SEAL_CONTEXT = "signing-keys"
VERSION = 2


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One stored key and its schedule (epoch seconds, wall clock).

    ``publish_at``: from then on it is in the JWKS and verifies tokens;
    ``sign_from``: from then on it signs (the newest such key does);
    ``retire_at``: from then on it is gone from the JWKS and verifies nothing
    (None: not scheduled).
    """

    kid: str
    sealed: str
    created_at: int
    publish_at: int
    sign_from: int
    retire_at: int | None = None

    def retired(self, at: int | None) -> KeyEntry:
        return dataclasses.replace(self, retire_at=at)


class DocumentError(ValueError):
    """The record is not a signing keys document this code can read."""


def parse_document(raw: str) -> tuple[KeyEntry, ...]:
    """The entries of a stored document, in stored order (nothing opened)."""
    try:
        document = json.loads(raw)
        entries = document["keys"]
        return tuple(_entry(item) for item in entries)
    except (ValueError, KeyError, TypeError) as exc:
        raise DocumentError(f"unreadable signing keys record ({exc})") from None


def _entry(item: dict[str, t.Any]) -> KeyEntry:
    created_at = int(item.get("created_at") or 0)
    retire_at = item.get("retire_at")
    return KeyEntry(
        kid=str(item["kid"]),
        sealed=str(item["private"]),
        created_at=created_at,
        # Version 1: published and signing since creation (0 if unknown).
        publish_at=int(item.get("publish_at", 0)),
        sign_from=int(item.get("sign_from", 0)),
        retire_at=None if retire_at is None else int(retire_at),
    )


def dump_document(entries: t.Iterable[KeyEntry]) -> str:
    """The JSON stored for ``entries`` (the inverse of :func:`parse_document`)."""
    return json.dumps(
        {
            "v": VERSION,
            "keys": [
                {
                    "kid": entry.kid,
                    "alg": ALGORITHM,
                    "created_at": entry.created_at,
                    "publish_at": entry.publish_at,
                    "sign_from": entry.sign_from,
                    "retire_at": entry.retire_at,
                    "private": entry.sealed,
                }
                for entry in entries
            ],
        },
        separators=(",", ":"),
    )


def new_entry(keyring: Keyring, *, now: int, sign_from: int) -> KeyEntry:
    """A freshly generated P-256 key, published at ``now``, named by its
    RFC 7638 thumbprint, its private part sealed under the current secret."""
    key = with_thumbprint_kid(ECKey.generate_key("P-256", private=True))
    return KeyEntry(
        kid=str(key.kid),
        sealed=keyring.seal(key.as_pem(private=True), context=SEAL_CONTEXT),
        created_at=now,
        publish_at=now,
        sign_from=sign_from,
    )


@dataclass(frozen=True, slots=True)
class OpenedKeys:
    """The keys of a document, opened, and its entries sealed under the current
    secret; ``stale`` when a previous PROXY_SECRET_KEY opened any of them."""

    keys: tuple[ECKey, ...]
    entries: tuple[KeyEntry, ...]
    stale: bool

    @property
    def resealed(self) -> str | None:
        """The document to store in place of the stale one (None: not stale)."""
        return dump_document(self.entries) if self.stale else None


def open_entries(entries: tuple[KeyEntry, ...], keyring: Keyring) -> OpenedKeys:
    """Every private key opened, or :class:`~proxy.keys.keyring.SealError`.

    One key that does not open makes the whole document unusable: signing
    with the others would hide a wrong PROXY_SECRET_KEY until they retire.
    """
    keys = []
    fresh = []
    stale = False
    for entry in entries:
        opened = keyring.open_current(entry.sealed, context=SEAL_CONTEXT)
        keys.append(ECKey.import_key(opened.plaintext, parameters={"kid": entry.kid}))
        if opened.resealed is not None:
            stale = True
            entry = dataclasses.replace(entry, sealed=opened.resealed)
        fresh.append(entry)
    return OpenedKeys(tuple(keys), tuple(fresh), stale)
