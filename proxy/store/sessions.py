"""Which owner opened each MCP session id the gateway relayed (MCP 2025-11-25).

A session id is the backend's; the gateway records who opened it, so that a
token of anyone else presenting it is answered as for an unknown session.
Session ids and owners are kept as SHA-256 prefixes: a key name never holds
a raw id a client could replay.
"""

from __future__ import annotations

import hashlib
import typing as t

from proxy.store import scripts

if t.TYPE_CHECKING:
    import redis

    from proxy.store.keys import Keys


def session_hash(session_id: str) -> str:
    raw = session_id.encode("utf-8", "surrogateescape")
    return hashlib.sha256(raw).hexdigest()[:32]


class SessionOwners:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._release = client.register_script(scripts.RELEASE_LOCK)

    def queue_owner(self, pipe: t.Any, session_id: str, *, ttl_seconds: int) -> None:
        """Queue GETEX on ``pipe``: the owner's hash (or None), its TTL slid.

        Rides in the pipeline that already checks the grant, so a request
        that presents a session id costs no round trip more.
        """
        pipe.getex(self._keys.mcp_session(session_hash(session_id)), ex=ttl_seconds)

    def bind(self, session_id: str, owner: str, *, ttl_seconds: int) -> bool:
        """Record ``owner`` for a new session id; False if someone holds it."""
        key = self._keys.mcp_session(session_hash(session_id))
        if self._redis.set(key, owner, nx=True, ex=ttl_seconds):
            return True
        return self._redis.get(key) in (owner, owner.encode())

    def unbind(self, session_id: str, owner: str) -> None:
        """Forget the session id, only if ``owner`` holds it."""
        key = self._keys.mcp_session(session_hash(session_id))
        self._release(keys=[key], args=[owner])

    def owner(self, session_id: str) -> str | None:
        """The owner's hash (tests and the admin CLI)."""
        value = self._redis.get(self._keys.mcp_session(session_hash(session_id)))
        if isinstance(value, bytes):
            return value.decode()
        return None if value is None else str(value)
