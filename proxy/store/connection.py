"""The one place a production Redis client is made (app, CLIs, checks).

Every process that talks to the shared store (gunicorn workers, ``python -m
proxy trace``, ``check``, the admin and key commands) connects through
:func:`connect`, so the timeouts and the no-retry policy below hold for all
of them, in every topology: one server (``redis://`` or ``rediss://``), a
primary found through Sentinel, or a Redis Cluster. Each is redis-py's own
client (``Redis``, ``Sentinel.master_for``, ``RedisCluster``); the store
speaks to all three through the same commands. Without a URL the store is
embedded (fakeredis): one process only.

:class:`RedisOptions` is what the configuration hands over (built from the
environment by ``proxy/config/settings.py``): the store imports no config.
"""

from __future__ import annotations

import inspect
import logging
import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

import redis
import redis.cluster
import redis.connection
import redis.exceptions
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

#: A Redis that does not answer within this long is treated as down (503).
SOCKET_TIMEOUT_SECONDS = 2.0
#: How often an idle pooled connection is PINGed before use.
HEALTH_CHECK_INTERVAL_SECONDS = 30

STANDALONE, SENTINEL, CLUSTER = "standalone", "sentinel", "cluster"
MODES = (STANDALONE, SENTINEL, CLUSTER)

#: The store pipelines EVALSHA with reads (one round trip per request);
#: redis-py's cluster pipeline refused EVALSHA until redis/redis-py#4206.
CLUSTER_PIPELINES_RUN_SCRIPTS = "EVALSHA" not in getattr(
    redis.cluster, "PIPELINE_BLOCKED_COMMANDS", ()
)
CLUSTER_UNSUPPORTED = (
    f"REDIS_MODE=cluster needs a redis-py whose cluster pipelines run EVALSHA "
    f"(redis/redis-py#4206); this is redis-py {redis.__version__}: upgrade redis"
)


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """Where Redis is and how to reach it; passwords never appear in its repr.

    ``url`` is the server (standalone) or any one node (cluster); with
    Sentinel it is unused and ``sentinels`` / ``sentinel_master`` say where
    to ask for the primary. ``tls`` is implied by a ``rediss://`` URL and set
    explicitly for Sentinel's primary; ``sentinel_tls`` is for the sentinels.
    The CA file and client certificate serve every TLS connection.
    """

    url: str | None = None
    mode: str = STANDALONE
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    db: int = 0
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    sentinel_tls: bool = False
    #: REDIS_WAIT_REPLICAS: replicas that must acknowledge a code redemption
    #: or a refresh-token rotation before the client is answered (0: none).
    replica_acks: int = 0

    def __repr__(self) -> str:
        return (
            f"RedisOptions(mode={self.mode!r}, url={mask_url(self.url)!r}, "
            f"username={self.username!r}, password={_mask(self.password)}, "
            f"tls={self.tls}, sentinels={self.sentinels!r}, "
            f"sentinel_master={self.sentinel_master!r}, "
            f"sentinel_password={_mask(self.sentinel_password)})"
        )

    @property
    def configured(self) -> bool:
        """False: no shared Redis at all (the embedded store)."""
        return bool(self.url) or self.mode == SENTINEL

    def describe(self) -> str:
        """Where Redis is, for logs and ``check``: no password, ever."""
        if self.mode == SENTINEL:
            hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"sentinel master {self.sentinel_master!r} via {hosts}"
        if self.mode == CLUSTER:
            return f"cluster via {mask_url(self.url)}"
        return mask_url(self.url) or "embedded"


def _mask(secret: str | None) -> str:
    return "None" if secret is None else "'***'"


def mask_url(url: str | None) -> str | None:
    """``url`` with its password replaced by ``***`` (user names are kept)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def connect(target: RedisOptions | str | None) -> redis.Redis:
    """A client for `target`, or the embedded in-process store when it is None.

    A plain URL is a standalone server (or a ``rediss://`` one). The client
    is ``redis.Redis`` (standalone, Sentinel's primary), ``fakeredis`` or a
    ``RedisCluster``, typed as ``redis.Redis`` for all: the store uses only
    the commands, pipelines and scripts they share (docs/storage-schema.md,
    "Redis Cluster").
    """
    options = RedisOptions(url=target) if isinstance(target, str) else target
    if options is None or not options.configured:
        return _embedded()
    if options.mode == SENTINEL:
        return _sentinel_primary(options)
    if options.mode == CLUSTER:
        return t.cast("redis.Redis", _cluster(options))
    assert options.url is not None  # noqa: S101 - `configured` checked it
    return redis.Redis.from_url(options.url, **_client_kwargs(options))


def _common_kwargs() -> dict[str, t.Any]:
    """What every connection gets, whatever the topology."""
    return {
        "decode_responses": True,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": SOCKET_TIMEOUT_SECONDS,
        "health_check_interval": HEALTH_CHECK_INTERVAL_SECONDS,
        # No retries: redis-py would re-send a script whose reply timed
        # out, running a one-time operation twice; and its default backoff
        # holds a worker for seconds before the 503 during an outage. A
        # failed request answers 503 and the client's retry reconnects.
        "retry": Retry(NoBackoff(), 0),
    }


def _tls_kwargs(options: RedisOptions) -> dict[str, t.Any]:
    """Certificate files for a TLS connection (the scheme or `ssl` turns TLS on)."""
    kwargs: dict[str, t.Any] = {}
    if options.ca_file:
        kwargs["ssl_ca_certs"] = options.ca_file
    if options.client_cert:
        kwargs["ssl_certfile"] = options.client_cert
        kwargs["ssl_keyfile"] = options.client_key
    return kwargs


def _credentials(username: str | None, password: str | None) -> dict[str, t.Any]:
    kwargs: dict[str, t.Any] = {}
    if username:
        kwargs["username"] = username
    if password:
        kwargs["password"] = password
    return kwargs


def _client_kwargs(options: RedisOptions) -> dict[str, t.Any]:
    """Standalone and cluster: the URL carries host, scheme (TLS) and maybe the
    user; the options add the certificate files and separately given creds."""
    kwargs = _common_kwargs()
    if _is_tls_url(options.url):
        kwargs.update(_tls_kwargs(options))
    kwargs.update(_credentials(options.username, options.password))
    return kwargs


def _is_tls_url(url: str | None) -> bool:
    return bool(url) and urlsplit(url or "").scheme == "rediss"


class _PrimaryConnection(redis.sentinel.SentinelManagedConnection):
    """A connection to Sentinel's primary that lets go of a cut-off one.

    redis-py drops a connection whose server answers READONLY (demoted), so
    the next one asks the sentinels again. A demoted primary that still
    believes it is one answers NOREPLICAS instead, under
    ``min-replicas-to-write``, until Sentinel turns it into a replica (up to
    10 s): that too drops the connection, so a request after the sentinels
    named the new primary reaches it. Either way this request is a 503.
    """

    def read_response(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            return super().read_response(*args, **kwargs)
        except redis.exceptions.ResponseError as exc:
            if not str(exc).startswith("NOREPLICAS"):
                raise
            self.disconnect()  # type: ignore[no-untyped-call]
            raise redis.exceptions.ConnectionError(
                "the primary has no replica in sync (NOREPLICAS)"
            ) from exc


class _PrimarySSLConnection(_PrimaryConnection, redis.connection.SSLConnection):
    """The same, over TLS (redis-py's SentinelManagedSSLConnection, plus NOREPLICAS)."""


def _sentinel_primary(options: RedisOptions) -> redis.Redis:
    """The current primary of ``sentinel_master``, re-asked of the sentinels
    whenever a connection is made: after a failover, the first request on a
    stale connection gets a 503 (READONLY or NOREPLICAS become a
    ConnectionError) and a later one connects to the new primary."""
    sentinel_kwargs: dict[str, t.Any] = {
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": SOCKET_TIMEOUT_SECONDS,
        "retry": Retry(NoBackoff(), 0),
        **_credentials(options.sentinel_username, options.sentinel_password),
    }
    if options.sentinel_tls:
        sentinel_kwargs.update(ssl=True, **_tls_kwargs(options))
    primary: dict[str, t.Any] = {
        **_common_kwargs(),
        "db": options.db,
        **_credentials(options.username, options.password),
    }
    primary["connection_class"] = _PrimaryConnection
    if options.tls:
        primary.update(connection_class=_PrimarySSLConnection, **_tls_kwargs(options))
    sentinel = redis.sentinel.Sentinel(
        list(options.sentinels), sentinel_kwargs=sentinel_kwargs
    )
    assert options.sentinel_master is not None  # noqa: S101 - checked by config
    client = sentinel.master_for(options.sentinel_master, **primary)
    return t.cast("redis.Redis", client)


def _cluster(options: RedisOptions) -> redis.cluster.RedisCluster:
    """A cluster client seeded from one node; it learns the rest itself.

    Redirections (MOVED, ASK) are followed: Redis did not run the command.
    A failed connection or timeout is not retried (see `_common_kwargs`).
    """
    if not CLUSTER_PIPELINES_RUN_SCRIPTS:
        raise ValueError(CLUSTER_UNSUPPORTED)
    kwargs = _client_kwargs(options)
    if "retry" not in inspect.signature(redis.cluster.RedisCluster).parameters:
        # redis-py < 6: the cluster's own retry loop has its own setting.
        kwargs["cluster_error_retry_attempts"] = 0
    assert options.url is not None  # noqa: S101 - `configured` checked it
    return redis.cluster.RedisCluster.from_url(options.url, **kwargs)


def _embedded() -> redis.Redis:
    import fakeredis

    log.warning(
        "REDIS_URL is not set: using an embedded in-process store. State lives in "
        "this one process only; run a single worker, and set REDIS_URL in production."
    )
    return fakeredis.FakeRedis(decode_responses=True)
