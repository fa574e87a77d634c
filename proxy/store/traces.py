"""Flow traces in Redis: one capped list per authorization attempt, three indexes.

The policy (which events, when to flush, what a step holds) lives in
``proxy/observability/trace.py``; this is only the Redis side of it. Writes
come in batches, one pipeline per flush, so a request that emits steps pays
no round trip of its own on the token and gateway paths.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

import redis.exceptions

from proxy.keys.keyring import sha256_hex
from proxy.store import scripts
from proxy.store.keys import TRACE_INDEX_MAX
from proxy.store.keys import TRACE_MAX_STEPS
from proxy.store.keys import TRACE_RECENT_MAX

if t.TYPE_CHECKING:
    from collections.abc import Sequence

    import redis

    from proxy.store.keys import Keys


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One step of one trace, already JSON (one line: the flush joins steps
    with newlines), and who it names (for the indexes)."""

    trace_id: str
    step: str
    client_id: str | None = None
    sub: str | None = None


def subject_hash(value: str) -> str:
    """What an index key carries instead of a client id or a ``sub``."""
    return sha256_hex(value)[:32]


class TraceRecords:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._append = client.register_script(scripts.APPEND_TRACES)
        self._index = client.register_script(scripts.INDEX_TRACE)

    def write(self, entries: Sequence[TraceEntry], *, ttl: int, now_ms: int) -> None:
        """Append every entry and index its trace: one round trip (two after a
        Redis restart, when the scripts must be loaded again), with a script
        per trace bucket and one per index."""
        recent = self._keys.trace_recent()
        steps: dict[str, list[str]] = {}
        # Each index once per flush, with every trace id it gains (ordered sets).
        indexes: dict[str, dict[str, None]] = {recent: {}}
        index_keys: dict[tuple[str, str], str] = {}
        for entry in entries:
            steps.setdefault(entry.trace_id, []).append(entry.step)
            indexes[recent][entry.trace_id] = None
            for kind, subject in (("client", entry.client_id), ("user", entry.sub)):
                if subject:
                    key = index_keys.get((kind, subject))
                    if key is None:
                        key = self._keys.trace_index(kind, subject_hash(subject))
                        index_keys[kind, subject] = key
                    indexes.setdefault(key, {})[entry.trace_id] = None
        # One argument per trace and per index (joined lines, joined ids):
        # packing a pipeline costs redis-py a few microseconds per argument.
        buckets: dict[str, tuple[list[str], list[t.Any]]] = {}
        for trace_id, lines in steps.items():
            keys, args = buckets.setdefault(trace_id[:1], ([], [ttl, TRACE_MAX_STEPS]))
            keys.append(self._keys.trace(trace_id))
            args.append("\n".join(lines[-TRACE_MAX_STEPS:]))  # what LTRIM keeps
        calls: list[tuple[t.Any, list[str], list[t.Any]]] = [
            (self._append, keys, args) for keys, args in buckets.values()
        ]
        for key, trace_ids in indexes.items():
            if trace_ids:
                cap = TRACE_RECENT_MAX if key == recent else TRACE_INDEX_MAX
                calls.append(
                    (self._index, [key], [ttl, cap, now_ms, " ".join(trace_ids)])
                )
        for attempt in range(2):
            pipe = self._redis.pipeline(transaction=False)
            for script, keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            replies = pipe.execute(raise_on_error=False)
            missing = [
                call
                for call, reply in zip(calls, replies, strict=True)
                if isinstance(reply, redis.exceptions.NoScriptError)
            ]
            failed = [r for r in replies if isinstance(r, Exception)]
            if not missing or attempt:
                if failed:
                    raise failed[0]
                return
            for script in (self._append, self._index):
                self._redis.script_load(script.script)
            calls = missing

    def steps(self, trace_ids: Sequence[str]) -> dict[str, list[str]]:
        """Each trace's steps (JSON), oldest first, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for trace_id in trace_ids:
            pipe.lrange(self._keys.unbucketed_trace(trace_id), 0, -1)
            pipe.lrange(self._keys.trace(trace_id), 0, -1)
        replies = iter(pipe.execute())
        found = {}
        for trace_id, older, newer in zip(trace_ids, replies, replies, strict=False):
            lines = [_text(line) for line in (*older, *newer)]
            if lines:
                found[trace_id] = lines
        return found

    def newest(self, kind: str | None, subject: str | None, limit: int) -> list[str]:
        """The newest `limit` trace ids of a client or user, or of all (kind None)."""
        if kind is None or subject is None:
            key = self._keys.trace_recent()
        else:
            key = self._keys.trace_index(kind, subject_hash(subject))
        ids = self._redis.zrevrange(key, 0, max(0, limit - 1))
        return [_text(i) for i in ids]


def _text(value: t.Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
