"""Clients an operator disabled: the mark, and reading it with the client.

A disabled client must be refused wherever it is loaded (authorize, consent,
token, revoke, introspect), yet the token endpoint may not pay a round trip
for the check. So the mark is read in the pipeline that already loads the
client (``Store.load_client``, the token endpoint's first read, a URL client's
cached document) and handed over here with :meth:`DisabledClients.prime`; only
a static client, which is loaded without Redis, costs one ``GET`` of its own
outside the token endpoint (decision J36 in docs/decisions.md).
"""

from __future__ import annotations

import json
import time
import typing as t
from contextvars import ContextVar
from dataclasses import dataclass

from proxy.store.grant_index import subject_hash

if t.TYPE_CHECKING:
    import redis

    from proxy.store.keys import Keys

#: How long a mark read in another pipeline may stand in for a read: the same
#: bound as a primed document (``store/documents.py``).
PRIMED_SECONDS = 1.0

#: The mark last read in another pipeline in this request context: (client
#: id, when, disabled). One entry: a request serves one client.
_primed: ContextVar[tuple[str, float, bool] | None] = ContextVar(
    "primed_disabled_client", default=None
)


def forget_primed() -> None:
    """What a request primed and did not use is not the next request's."""
    _primed.set(None)


@dataclass(frozen=True, slots=True)
class DisabledClient:
    """Who disabled what, and when (epoch seconds)."""

    client_id: str
    disabled_at: int


class DisabledClients:
    """The ``disabled:{client_hash}`` marks."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    def key_of(self, client_id: str) -> str:
        return self._keys.client_disabled(subject_hash(client_id))

    def prime(self, client_id: str, raw: t.Any) -> None:
        """Hand over the mark another pipeline read for `client_id`."""
        _primed.set((client_id, time.monotonic(), raw is not None))

    def is_primed(self, client_id: str) -> bool:
        """Was this client's mark read in this context less than a second ago?"""
        primed = _primed.get()
        return (
            primed is not None
            and primed[0] == client_id
            and time.monotonic() - primed[1] <= PRIMED_SECONDS
        )

    def is_disabled(self, client_id: str) -> bool:
        """The primed mark if fresh (used once, like a primed document), else
        one ``GET``."""
        primed = _primed.get()
        if primed is not None and self.is_primed(client_id):
            _primed.set(None)
            return primed[2]
        return self._redis.get(self.key_of(client_id)) is not None

    def disable(self, client_id: str, *, now: int, ttl: int | None) -> bool:
        """Mark the client disabled (`ttl` None: until enabled); False if it was."""
        value = json.dumps({"v": 1, "client_id": client_id, "at": now})
        return bool(
            self._redis.set(self.key_of(client_id), value, nx=True, ex=ttl or None)
        )

    def enable(self, client_id: str) -> bool:
        """Remove the mark; False if the client was not disabled."""
        return bool(self._redis.delete(self.key_of(client_id)))

    def load(self, client_id: str) -> DisabledClient | None:
        raw = self._redis.get(self.key_of(client_id))
        return _parse(raw) if raw else None

    def every(self) -> list[DisabledClient]:
        """Every mark, by SCAN (never KEYS): for operators, not requests."""
        pattern = self._keys.client_disabled("*")
        keys = list(self._redis.scan_iter(match=pattern, count=500))
        if not keys:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        return [_parse(raw) for raw in pipe.execute() if raw]


def _parse(raw: t.Any) -> DisabledClient:
    data = json.loads(raw)
    return DisabledClient(client_id=str(data["client_id"]), disabled_at=int(data["at"]))
