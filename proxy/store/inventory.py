"""What the store holds, for operators: clients, documents, key counts, memory.

Everything here walks the keyspace with SCAN (never KEYS, which blocks Redis
for as long as it takes) and reads values in pipelines of READ_BATCH. None of
it runs on a request path: ``python -m proxy admin`` is its only caller.
"""

from __future__ import annotations

import typing as t
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import redis.exceptions

from proxy.store.grant_index import READ_BATCH
from proxy.store.grant_index import subject_hash
from proxy.store.records import ClientRecord

if t.TYPE_CHECKING:
    from proxy.store.keys import Keys

#: The document kind of a URL client's metadata (``store/documents.py`` ids).
CLIENT_DOCUMENT_KIND = "client_metadata"
#: Key kinds whose second segment is worth telling apart in the counts.
_TWO_PART_KINDS = frozenset({"grants", "traces", "rate"})


@dataclass(frozen=True, slots=True)
class StoredClient:
    """A DCR registration and how long it has left (None: no expiry)."""

    record: ClientRecord
    ttl_seconds: int | None


@dataclass(frozen=True, slots=True)
class Memory:
    """Redis' own view of its memory (INFO memory)."""

    used_bytes: int
    max_bytes: int
    policy: str


class Inventory:
    """Operator reads and the few operator writes that are not grants."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    def registered_clients(self) -> list[StoredClient]:
        """Every DCR registration (``client:*``), whatever the ``clients`` index
        still holds: that index forgets a client once it has been used."""
        found = []
        for batch in _batches(self._scan(self._keys.client("*"))):
            pipe = self._redis.pipeline(transaction=False)
            for key in batch:
                pipe.get(key)
                pipe.ttl(key)
            replies = pipe.execute()
            for raw, ttl in zip(replies[::2], replies[1::2], strict=True):
                if raw:
                    record = ClientRecord.from_json(str(raw))
                    found.append(StoredClient(record, ttl if ttl >= 0 else None))
        return found

    def registered_client(self, client_id: str) -> StoredClient | None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(self._keys.client(client_id))
        pipe.ttl(self._keys.client(client_id))
        raw, ttl = pipe.execute()
        if not raw:
            return None
        return StoredClient(ClientRecord.from_json(str(raw)), ttl if ttl >= 0 else None)

    def client_documents(self) -> list[str]:
        """The cached metadata documents of URL clients, as stored (JSON)."""
        pattern = self._keys.document(CLIENT_DOCUMENT_KIND + ":*")
        found: list[str] = []
        for batch in _batches(self._scan(pattern)):
            pipe = self._redis.pipeline(transaction=False)
            for key in batch:
                pipe.get(key)
            found += [str(raw) for raw in pipe.execute() if raw]
        return found

    def delete_client(self, client_id: str) -> bool:
        """Delete a DCR registration, its place in the ``clients`` index and its
        disabled mark; False if there was no registration."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(self._keys.client(client_id))
        pipe.zrem(self._keys.client_index(), client_id)
        pipe.delete(self._keys.client_disabled(subject_hash(client_id)))
        deleted, *_ = pipe.execute()
        return bool(deleted)

    def key_counts(self) -> dict[str, int]:
        """Keys under the prefix by kind: ``grant``, ``grants:user``, ``rate:ip``..."""
        prefix = self._keys.prefix
        counts: Counter[str] = Counter()
        for key in self._scan(prefix + "*"):
            counts[kind_of(key[len(prefix) :])] += 1
        return dict(sorted(counts.items()))

    def memory(self) -> Memory | None:
        """Used and maximum memory and the eviction policy; None where INFO is
        refused (some managed services rename it)."""
        try:
            info = self._redis.info("memory")
        except redis.exceptions.ResponseError:
            return None
        return Memory(
            used_bytes=int(info.get("used_memory", 0)),
            max_bytes=int(info.get("maxmemory", 0)),
            policy=str(info.get("maxmemory_policy", "unknown")),
        )

    def _scan(self, pattern: str) -> Iterator[str]:
        for key in self._redis.scan_iter(match=pattern, count=READ_BATCH):
            yield str(key)


def kind_of(name: str) -> str:
    """A key's kind from its name after the prefix: the part before the first
    ``:`` or hash tag, two parts for the families that have them."""
    parts = name.replace("{", ":").split(":")
    if parts[0] in _TWO_PART_KINDS and len(parts) >= 2:
        return f"{parts[0]}:{parts[1]}"
    return parts[0]


def _batches(keys: t.Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= READ_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
