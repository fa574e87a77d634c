"""JWT signing keys shared by every worker and instance, and the JWKS document.

A key comes from configuration (SIGNING_KEY / SIGNING_KEY_FILE, PEM) or is
generated once and kept in Redis (the ``keys`` record), its private part
sealed with AES-GCM. Workers cache the record and re-read it every five
minutes, so every worker of every instance signs and publishes the same keys.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import typing as t

from joserfc.jwk import ECKey
from joserfc.jwk import KeySet

from proxy.keys.keyring import Keyring
from proxy.oauth.access_tokens import ALGORITHM

if t.TYPE_CHECKING:
    from proxy.store import Store


log = logging.getLogger(__name__)


RELOAD_INTERVAL_SECONDS = 300


_SEAL_CONTEXT = "signing-keys"


class SigningKeys:
    """The active signing key and the public key set, cached per process."""

    def __init__(self, store: Store, keyring: Keyring, configured_pem: str | None):
        self._store = store
        self._keyring = keyring
        self._lock = threading.Lock()
        self._keys: list[ECKey] = []
        self._loaded_at = 0.0
        if configured_pem:
            key = ECKey.import_key(configured_pem)
            self._keys = [_with_kid(key)]
            self._loaded_at = float("inf")

    def active(self) -> ECKey:
        """The key new tokens are signed with."""
        return self._load()[0]

    def keyset(self) -> KeySet:
        """The keys tokens are verified with; never generates one.

        Before the first token is signed no key exists, and no presented
        token can be ours: verifying one must not write the ``keys`` record
        (a refused request changes nothing in the store).
        """
        return KeySet(list(self._load(create=False)))

    def jwks(self) -> dict[str, t.Any]:
        return {"keys": [_public_jwk(key) for key in self._load()]}

    def _load(self, *, create: bool = True) -> list[ECKey]:
        if self._keys and time.monotonic() - self._loaded_at < RELOAD_INTERVAL_SECONDS:
            return self._keys
        with self._lock:
            if (
                self._keys
                and time.monotonic() - self._loaded_at < RELOAD_INTERVAL_SECONDS
            ):
                return self._keys
            document = self._store.load_signing_keys()
            if document is None and not create:
                return []  # not cached: the first signer's key is read next time
            if document is None:
                self._store.create_signing_keys(self._new_document())
                document = self._store.load_signing_keys()
            if document is None:  # pragma: no cover - deleted between SET NX and GET
                raise RuntimeError("signing keys vanished from the store")
            self._keys = self._parse(document)
            self._loaded_at = time.monotonic()
            return self._keys

    def _new_document(self) -> str:
        key = _with_kid(ECKey.generate_key("P-256", private=True))
        log.info("generated a new signing key kid=%s", key.kid)
        return json.dumps(
            {
                "v": 1,
                "keys": [
                    {
                        "kid": key.kid,
                        "alg": ALGORITHM,
                        "created_at": int(time.time()),
                        "private": self._keyring.seal(
                            key.as_pem(private=True), context=_SEAL_CONTEXT
                        ),
                    }
                ],
            }
        )

    def _parse(self, document: str) -> list[ECKey]:
        entries = json.loads(document)["keys"]
        keys = []
        for entry in entries:
            pem = self._keyring.open(entry["private"], context=_SEAL_CONTEXT)
            keys.append(ECKey.import_key(pem, parameters={"kid": entry["kid"]}))
        return keys


def _with_kid(key: ECKey) -> ECKey:
    """Name a key by its RFC 7638 thumbprint so every instance agrees on the kid."""
    pem = key.as_pem(private=True)
    return ECKey.import_key(pem, parameters={"kid": key.thumbprint()})


def _public_jwk(key: ECKey) -> dict[str, t.Any]:
    return {
        **key.as_dict(private=False),
        "use": "sig",
        "alg": ALGORITHM,
        "kid": key.kid,
    }
