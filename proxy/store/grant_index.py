"""Grants by user and by client: the indexes behind the account page and admin CLI.

A grant is one key named by its random id, so "which grants does this user
hold?" has no answer without an index. Two sorted sets answer it, one per
user and one per client (``Keys.user_grants``, ``Keys.client_grants``), each
written by INDEX_GRANT in the callback's own round trip (see
``Store.create_grant``).

Nothing removes a member when its grant ends (revocation, reuse, expiry):
those paths know only the grant id and must stay one round trip. Readers
prune instead: a member whose grant key is gone is removed when it is read,
and INDEX_GRANT trims members past their absolute expiry on every add.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterator

from proxy.keys.keyring import sha256_hex
from proxy.store import scripts
from proxy.store.records import Grant
from proxy.store.records import GrantSummary

if t.TYPE_CHECKING:
    import redis

    from proxy.store.keys import Keys

#: Grants read per round trip when an index (or every grant) is listed.
READ_BATCH = 500


def subject_hash(value: str) -> str:
    """The 32 hex digits that stand for a ``sub`` or client id in a key name."""
    return sha256_hex(value)[:32]


class GrantIndex:
    """The by-user and by-client indexes of grants, and their lazy pruning."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self.script = client.register_script(scripts.INDEX_GRANT)

    def keys_of(self, grant: Grant) -> tuple[str, str]:
        """The user's and the client's index keys for `grant`."""
        return (
            self._keys.user_grants(subject_hash(grant.sub)),
            self._keys.client_grants(subject_hash(grant.client_id)),
        )

    def queue_add(self, pipe: t.Any, grant: Grant) -> None:
        """Queue INDEX_GRANT for both indexes (EVALSHA: the caller handles NOSCRIPT).

        One key per script call: the two indexes and the grant live in
        different Redis Cluster slots, so no script may touch two of them.
        """
        for key in self.keys_of(grant):
            pipe.evalsha(
                self.script.sha,
                1,
                key,
                grant.grant_id,
                grant.expires_at,
                grant.created_at,
            )

    def of_user(self, sub: str) -> list[Grant]:
        return self._read(self._keys.user_grants(subject_hash(sub)))

    def of_client(self, client_id: str) -> list[Grant]:
        return self._read(self._keys.client_grants(subject_hash(client_id)))

    def _read(self, key: str) -> list[Grant]:
        """The live grants an index names, newest first; prune the dead members."""
        members = [str(m) for m in self._redis.zrange(key, 0, -1)]
        grants: list[Grant] = []
        gone: list[str] = []
        for batch in _batches(members):
            for grant_id, grant in zip(batch, self._load(batch), strict=True):
                if grant is None:
                    gone.append(grant_id)
                else:
                    grants.append(grant)
        if gone:
            self._redis.zrem(key, *gone)
        return sorted(grants, key=lambda g: (-g.created_at, g.grant_id))

    def forget(self, grant: Grant) -> None:
        """Remove a grant from both indexes (after deleting it: no dead member)."""
        pipe = self._redis.pipeline(transaction=False)
        for key in self.keys_of(grant):
            pipe.zrem(key, grant.grant_id)
        pipe.execute()

    def every_grant(self) -> Iterator[Grant]:
        """Every live grant, by SCAN (never KEYS): for operators, not requests."""
        pattern = self._keys.grant("*")
        batch: list[str] = []
        for key in self._redis.scan_iter(match=pattern, count=READ_BATCH):
            batch.append(_grant_id_of(str(key)))
            if len(batch) >= READ_BATCH:
                yield from (g for g in self._load(batch) if g is not None)
                batch = []
        if batch:
            yield from (g for g in self._load(batch) if g is not None)

    def _load(self, grant_ids: list[str]) -> list[Grant | None]:
        """The grants, one pipeline of GETs (not MGET: the keys span slots)."""
        pipe = self._redis.pipeline(transaction=False)
        for grant_id in grant_ids:
            pipe.get(self._keys.grant(grant_id))
        return [
            Grant.from_json(grant_id, str(raw)) if raw else None
            for grant_id, raw in zip(grant_ids, pipe.execute(), strict=True)
        ]


def summaries(grants: t.Iterable[Grant]) -> list[GrantSummary]:
    return [grant.summary() for grant in grants]


def _batches(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), READ_BATCH):
        yield items[start : start + READ_BATCH]


def _grant_id_of(key: str) -> str:
    """The id inside a grant key's hash tag (``...grant:{<id>}``)."""
    return key[key.rindex("{") + 1 : -1]
