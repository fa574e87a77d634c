"""Operator changes to the signing keys: rotate, retire, and what is stored.

Used by ``python -m proxy keys`` against the shared store. Each change reads
the ``keys`` record, plans the new schedule (``schedule.py``, pure) and writes
it back with one compare-and-set (``Store.replace_signing_keys``): the change
lands whole or not at all, never over a change it did not see. Workers need
no restart: they derive the published keys and the signer from the record and
the clock (``signing_keys.py``).
"""

from __future__ import annotations

import time
import typing as t
from dataclasses import dataclass

from proxy.keys import schedule
from proxy.keys.key_document import SEAL_CONTEXT
from proxy.keys.key_document import DocumentError
from proxy.keys.key_document import KeyEntry
from proxy.keys.key_document import OpenedKeys
from proxy.keys.key_document import dump_document
from proxy.keys.key_document import new_entry
from proxy.keys.key_document import open_entries
from proxy.keys.key_document import parse_document
from proxy.keys.keyring import SealError
from proxy.keys.schedule import ScheduleError

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from proxy.keys.keyring import Keyring
    from proxy.store import Store

#: KEY_ROTATION_OVERLAP_SECONDS default: how long the next key is published
#: before it signs. Workers see it within 30 s (their re-read schedule), but
#: resource servers cache our JWKS on their own terms: common libraries keep
#: it 5-10 minutes, Microsoft.IdentityModel refreshes metadata every 12 h and
#: some only at a restart. A day covers them all; a rotation is planned work,
#: so waiting costs nothing, and `--overlap` shortens it when it must.
DEFAULT_OVERLAP_SECONDS = 86400
#: Below this the next key may sign before a worker's scheduled re-read has
#: seen it (RECHECK_SECONDS, 30 s, plus the JWKS' 1 s): only the rate-limited
#: unknown-kid re-read would save a token then. The CLI warns.
SAFE_MIN_OVERLAP_SECONDS = 60
#: Compare-and-set attempts when another writer changes the record meanwhile.
_WRITE_ATTEMPTS = 3


class KeysRefusedError(Exception):
    """The operator's command cannot be carried out; the message says why."""


@dataclass(frozen=True, slots=True)
class Rotation:
    """What ``keys rotate`` scheduled (epoch seconds)."""

    kid: str
    previous_kid: str
    publish_at: int
    sign_from: int
    previous_retire_at: int


@dataclass(frozen=True, slots=True)
class KeyRow:
    """One stored key as ``keys list`` shows it."""

    kid: str
    state: str
    publish_at: int
    sign_from: int
    retire_at: int | None
    #: ``current``, ``previous`` (a PROXY_SECRET_KEY_PREVIOUS opens it) or
    #: ``none`` (no key held opens it).
    sealed_with: str


class KeyAdmin:
    """Rotate, retire and list the signing keys in the shared store."""

    def __init__(
        self,
        store: Store,
        keyring: Keyring,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._clock = clock

    def rows(self) -> list[KeyRow]:
        """Every stored key, its state now, and which secret opens it."""
        raw = self._store.load_signing_keys()
        if raw is None:
            return []
        entries = _parse(raw)
        now = int(self._clock())
        return [
            KeyRow(
                kid=entry.kid,
                state=schedule.state(entry, entries, now),
                publish_at=entry.publish_at,
                sign_from=entry.sign_from,
                retire_at=entry.retire_at,
                sealed_with=self._sealed_with(entry),
            )
            for entry in entries
        ]

    def rotate(self, *, overlap: int, max_token_lifetime: int) -> Rotation:
        """Publish a new key now; it signs after ``overlap`` seconds, and the
        key signing now retires ``max_token_lifetime`` (plus skew) after that."""
        for _ in range(_WRITE_ATTEMPTS):
            raw, opened = self._load()
            now = int(self._clock())
            current = schedule.signer(opened.entries, now)
            successor = new_entry(self._keyring, now=now, sign_from=now + overlap)
            entries = _planned(
                schedule.plan_rotation,
                opened.entries,
                successor,
                now=now,
                max_token_lifetime=max_token_lifetime,
            )
            if self._store.replace_signing_keys(raw, dump_document(entries)):
                previous = t.cast(KeyEntry, current)
                retire_at = next(e.retire_at for e in entries if e.kid == previous.kid)
                return Rotation(
                    kid=successor.kid,
                    previous_kid=previous.kid,
                    publish_at=successor.publish_at,
                    sign_from=successor.sign_from,
                    previous_retire_at=t.cast(int, retire_at),
                )
        raise KeysRefusedError("the keys record kept changing; run the command again")

    def retire(self, kid: str) -> KeyEntry:
        """Take ``kid`` out of the JWKS now: tokens it signed stop verifying."""
        for _ in range(_WRITE_ATTEMPTS):
            raw, opened = self._load()
            now = int(self._clock())
            entries = _planned(schedule.plan_retirement, opened.entries, kid, now=now)
            if self._store.replace_signing_keys(raw, dump_document(entries)):
                return next(e for e in opened.entries if e.kid == kid)
        raise KeysRefusedError("the keys record kept changing; run the command again")

    def _load(self) -> tuple[str, OpenedKeys]:
        """The record and its keys opened: a change is written only by someone
        holding the secret the workers use (and reseals what an old one sealed)."""
        raw = self._store.load_signing_keys()
        if raw is None:
            raise KeysRefusedError(
                "no signing keys are stored yet: the proxy creates the first key "
                "when it first signs a token; rotate after that"
            )
        try:
            return raw, open_entries(_parse(raw), self._keyring)
        except SealError:
            raise KeysRefusedError(
                "the keys record does not open with PROXY_SECRET_KEY or "
                "PROXY_SECRET_KEY_PREVIOUS: run this with the proxy's own secrets"
            ) from None

    def _sealed_with(self, entry: KeyEntry) -> str:
        try:
            opened = self._keyring.open_current(entry.sealed, context=SEAL_CONTEXT)
        except SealError:
            return "none"
        return "current" if opened.resealed is None else "previous"


def _parse(raw: str) -> tuple[KeyEntry, ...]:
    try:
        return parse_document(raw)
    except DocumentError as exc:
        raise KeysRefusedError(str(exc)) from None


def _planned(
    plan: Callable[..., tuple[KeyEntry, ...]], *args: t.Any, **kwargs: t.Any
) -> tuple[KeyEntry, ...]:
    try:
        return plan(*args, **kwargs)
    except ScheduleError as exc:
        raise KeysRefusedError(str(exc)) from None
