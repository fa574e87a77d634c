"""Leases on the gateway's stream slots per grant, shared by every worker and instance.

A count that a stream's end decrements would leak whenever a worker dies
without running its clean-up (killed, out of memory, the host gone). So each
open stream holds a lease that its worker renews while it is open; a lease
that is not renewed ends by itself, and so does its slot.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterable

import redis.exceptions

from proxy.store import scripts
from proxy.store.pipelines import execute_with_scripts

if t.TYPE_CHECKING:
    import redis

    from proxy.store.keys import Keys


class StreamLeases:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._acquire = client.register_script(scripts.ACQUIRE_STREAM)
        self._renew = client.register_script(scripts.RENEW_STREAMS)

    def queue_acquire(
        self,
        pipe: t.Any,
        grant_id: str,
        lease_id: str,
        *,
        slots: int,
        ms: int,
        ending: t.Sequence[str] = (),
    ) -> None:
        """:meth:`acquire` queued on another pipeline (its reply: 1 or 0),
        ending first the grant's leases in `ending` (streams that ended).

        EVALSHA by hand: a redis-py Script in a pipeline sends SCRIPT EXISTS
        first, one more round trip. The caller loads ``ACQUIRE_STREAM`` and
        retries if Redis lost it (``Limiter.charge_grant``).
        """
        key = self._keys.streams(grant_id)
        pipe.evalsha(self._acquire.sha, 1, key, lease_id, ms, slots, *ending)

    def acquire(self, grant_id: str, lease_id: str, *, slots: int, ms: int) -> bool:
        """Take one of the grant's ``slots`` for ``ms``; False when all are held."""
        args: list[str | int] = [lease_id, ms, slots]
        return bool(self._acquire(keys=[self._keys.streams(grant_id)], args=args))

    def renew(self, leases: Iterable[tuple[str, str]], *, ms: int) -> None:
        """Extend (grant id, lease id) leases by ``ms``, one round trip for all."""
        by_grant: dict[str, list[str]] = {}
        for grant_id, lease_id in leases:
            by_grant.setdefault(grant_id, []).append(lease_id)
        if not by_grant:
            return

        def queue(pipe: t.Any) -> None:
            # Each call names one grant's key: any cluster node may run it.
            for grant_id, lease_ids in by_grant.items():
                key = self._keys.streams(grant_id)
                pipe.evalsha(self._renew.sha, 1, key, ms, *lease_ids)

        execute_with_scripts(self._redis, queue, (scripts.RENEW_STREAMS,))

    def release(self, leases: Iterable[tuple[str, str]]) -> None:
        """End (grant id, lease id) leases: one round trip for all of them."""
        pipe = self._redis.pipeline(transaction=False)
        for grant_id, lease_id in leases:
            pipe.zrem(self._keys.streams(grant_id), lease_id)
        pipe.execute()

    def held(self, grant_id: str) -> int:
        """Leases on the grant's slots, ended ones included until trimmed (tests)."""
        return int(self._redis.zcard(self._keys.streams(grant_id)))
