"""One pipeline that survives a Redis that forgot its scripts.

The store sends ``EVALSHA`` by hand inside pipelines: a redis-py ``Script``
object there costs a ``SCRIPT EXISTS`` round trip on every call, and a Redis
Cluster pipeline does not load scripts at all. After a Redis restart (or
``SCRIPT FLUSH``) the first such pipeline meets ``NOSCRIPT``: the scripts are
loaded and the pipeline is sent once more. Only pipelines whose commands may
run twice use this (a SET of the same value, a lease renewal, a rate charge
that the first attempt refused).
"""

from __future__ import annotations

import typing as t

import redis.exceptions

if t.TYPE_CHECKING:
    from collections.abc import Callable
    from collections.abc import Sequence

    import redis


def execute_with_scripts(
    client: redis.Redis,
    queue: Callable[[t.Any], None],
    sources: Sequence[str],
) -> list[t.Any]:
    """Queue commands on a fresh non-transactional pipeline and send it; on
    NOSCRIPT, load `sources` and send it again (once)."""
    for attempt in range(2):
        pipe = client.pipeline(transaction=False)
        queue(pipe)
        try:
            return list(pipe.execute())
        except redis.exceptions.NoScriptError:
            if attempt:
                raise
            for source in sources:
                client.script_load(source)
    raise AssertionError("unreachable")  # pragma: no cover
