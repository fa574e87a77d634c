"""Cached client documents in Redis, shared by every worker and instance.

The policy (freshness, negative cache, stale-if-error, single flight) lives
in ``proxy/clients/documents.py``; this is only the Redis side of it. The
four keys of one document share the hash tag ``{document_id}``.
"""

from __future__ import annotations

import hashlib
import time
import typing as t
from contextvars import ContextVar

from proxy.store import scripts

if t.TYPE_CHECKING:
    import redis

    from proxy.store.keys import Keys


#: How long a document read in another pipeline may stand in for a read.
PRIMED_SECONDS = 1.0

#: Documents the token endpoint read in its first pipeline: doc_id -> (at,
#: record, failure). Per request context; each is used by one read at most.
_primed: ContextVar[dict[str, tuple[float, str | None, str | None]] | None] = (
    ContextVar("primed_documents", default=None)
)


def forget_primed() -> None:
    """What a request primed and did not use is not the next request's."""
    _primed.set(None)


def document_id(kind: str, url: str) -> str:
    """``<kind>:<hash>``: URLs can be long, so keys carry a hash of them."""
    return f"{kind}:{hashlib.sha256(url.encode()).hexdigest()[:32]}"


class DocumentRecords:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._release = client.register_script(scripts.RELEASE_LOCK)
        self._write = client.register_script(scripts.WRITE_DOCUMENT)

    def keys_of(self, doc_id: str) -> tuple[str, str]:
        """The record and failure keys, for a caller reading them in its own
        pipeline (then :meth:`prime`)."""
        return self._keys.document(doc_id), self._keys.document_failure(doc_id)

    def prime(self, doc_id: str, record: t.Any, failure: t.Any) -> None:
        """Hand over what another pipeline read, so the next :meth:`read` of
        this document in this request costs no round trip of its own."""
        primed = _primed.get()
        if primed is None:
            primed = {}
            _primed.set(primed)
        primed[doc_id] = (time.monotonic(), _text(record), _text(failure))

    def read(self, doc_id: str) -> tuple[str | None, str | None]:
        """The cached record and the last failure, in one round trip (none
        when this request's first pipeline already read them)."""
        primed = _primed.get()
        if primed is not None and doc_id in primed:
            at, record, failure = primed.pop(doc_id)
            if time.monotonic() - at <= PRIMED_SECONDS:
                return record, failure
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(self._keys.document(doc_id))
        pipe.get(self._keys.document_failure(doc_id))
        record, failure = pipe.execute()
        return _text(record), _text(failure)

    def write(self, doc_id: str, record: str, ttl: int) -> None:
        """Store a validated document and forget the last failure, together."""
        keys = [self._keys.document(doc_id), self._keys.document_failure(doc_id)]
        self._write(keys=keys, args=[record, ttl])

    def write_failure(self, doc_id: str, failure: str, ttl: int) -> None:
        self._redis.set(self._keys.document_failure(doc_id), failure, ex=ttl)

    def lock(self, doc_id: str, token: str, ms: int) -> bool:
        """Become the one fetcher of this document for `ms` (SET NX PX)."""
        key = self._keys.document_lock(doc_id)
        return bool(self._redis.set(key, token, nx=True, px=ms))

    def unlock(self, doc_id: str, token: str) -> bool:
        return bool(
            self._release(keys=[self._keys.document_lock(doc_id)], args=[token])
        )

    def allow_forced(self, doc_id: str, seconds: int) -> bool:
        """May a fresh copy be bypassed now? Once per `seconds` (SET NX EX)."""
        key = self._keys.document_forced(doc_id)
        return bool(self._redis.set(key, "1", nx=True, ex=seconds))


def _text(value: t.Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
