"""The one place a production Redis client is made (app, CLIs, checks).

Every process that talks to the shared store (gunicorn workers, ``python -m
proxy trace``, ``check``, the admin and key commands) connects through
:func:`connect`, so the timeouts and the no-retry policy below hold for all
of them. Without a URL the store is embedded (fakeredis): one process only.
"""

from __future__ import annotations

import logging

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

#: A Redis that does not answer within this long is treated as down (503).
SOCKET_TIMEOUT_SECONDS = 2.0


def connect(url: str | None) -> redis.Redis:
    """A client for `url`, or the embedded in-process store when it is None."""
    if url:
        return redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            health_check_interval=30,
            # No retries: redis-py would re-send a script whose reply timed
            # out, running a one-time operation twice; and its default backoff
            # holds a worker for seconds before the 503 during an outage. A
            # failed request answers 503 and the client's retry reconnects.
            retry=Retry(NoBackoff(), 0),
        )
    import fakeredis

    log.warning(
        "REDIS_URL is not set: using an embedded in-process store. State lives in "
        "this one process only; run a single worker, and set REDIS_URL in production."
    )
    return fakeredis.FakeRedis(decode_responses=True)
