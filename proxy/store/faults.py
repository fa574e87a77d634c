"""Which Redis errors mean "the store cannot serve right now" (retry: 503).

An outage is not only a closed socket. A Redis that answers but refuses
writes is as unusable to us: at ``maxmemory`` under ``noeviction`` every
write is ``OOM command not allowed``; a replica promoted away from, or a
failover in progress, answers ``READONLY``; a failed RDB save with
``stop-writes-on-bgsave-error`` answers ``MISCONF``. Each is transient from a
client's point of view, so each must be 503 ``temporarily_unavailable`` with
Retry-After, never a 500 that reads as a bug. redis-py maps most of these to
their own classes, but not all (``MISCONF``), and not on every server
version (an OOM raised inside a Lua script by Redis 6 comes back as a plain
``ERR Error running script ... OOM ...``), so the message is read too.

Sentinel and Cluster add their own: no primary known to the sentinels
(``MasterNotFoundError``), a demoted primary (``READONLY``, which redis-py's
Sentinel client turns into a ConnectionError), a primary that lost its
replicas under ``min-replicas-to-write`` (``NOREPLICAS``: the guard that keeps
a demoted primary from accepting writes a failover would drop), and a cluster
whose slot map has a hole (``CLUSTERDOWN``, or redis-py's
``RedisClusterException``, which is not even a ``RedisError``).

A ResponseError that is none of these (a bad command, a script bug) is ours
and stays a 500.
"""

from __future__ import annotations

import redis.exceptions
import redis.sentinel

#: What a store call may raise: redis-py's errors, and its cluster client's
#: own exception class, which does not derive from RedisError.
STORE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.RedisError,
    redis.exceptions.RedisClusterException,
)

#: Redis error codes (the reply's first word) that mark a refusal for a while.
_CODES = {
    "OOM": "out_of_memory",
    "READONLY": "read_only",
    "MISCONF": "writes_disabled",
    "LOADING": "loading",
    "MASTERDOWN": "master_down",
    "TRYAGAIN": "try_again",
    "CLUSTERDOWN": "cluster_down",
    "BUSY": "busy",
    "NOREPLICAS": "no_replicas",
}
#: Inside "ERR Error running script ..." (Redis 6): what a command in it raised.
_IN_SCRIPT = (
    ("OOM COMMAND NOT ALLOWED", "out_of_memory"),
    ("COMMAND NOT ALLOWED WHEN USED MEMORY", "out_of_memory"),
    ("READONLY YOU CAN'T WRITE", "read_only"),
)

#: Exception classes, most specific first (subclasses before their bases).
_CLASSES: tuple[tuple[type[Exception], str], ...] = (
    (redis.exceptions.OutOfMemoryError, "out_of_memory"),
    (redis.exceptions.ReadOnlyError, "read_only"),
    (redis.exceptions.BusyLoadingError, "loading"),
    (redis.exceptions.MasterDownError, "master_down"),
    (redis.exceptions.TryAgainError, "try_again"),
    (redis.exceptions.ClusterDownError, "cluster_down"),
    (redis.exceptions.RedisClusterException, "cluster_down"),
    (redis.sentinel.MasterNotFoundError, "no_primary"),
    (redis.exceptions.TimeoutError, "timeout"),
    (redis.exceptions.ConnectionError, "unreachable"),
)


def unavailable_cause(exc: BaseException) -> str | None:
    """A short, secret-free name for why the store cannot serve, or None.

    None means the error is not an outage (a bug of ours, or not a Redis
    error at all) and should surface as one.
    """
    for cls, cause in _CLASSES:
        if isinstance(exc, cls):
            return cause
    if isinstance(exc, redis.exceptions.ResponseError):
        # A pipeline prefixes "Command # n (<the command and its arguments>) of
        # pipeline caused error: "; the arguments may be a client's input, so
        # only what follows is read.
        text = str(exc).rsplit("caused error: ", 1)[-1].strip().upper()
        code = text.split(" ", 1)[0]
        if code in _CODES:
            return _CODES[code]
        # redis-py strips the "ERR " of "ERR Error running script ...".
        if code == "ERR" or text.startswith("ERROR RUNNING SCRIPT"):
            return next((cause for part, cause in _IN_SCRIPT if part in text), None)
    return None
