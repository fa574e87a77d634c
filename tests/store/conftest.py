"""The store's tests run on every topology: fakeredis, one redis-server, a
primary found through Sentinel, and a three-primary Redis Cluster.

The servers start once per session (tests/store/topologies/servers.py); each
test gets a client built by ``connection.connect()``, as the app's is, and
the data is flushed after it. A cluster client fails any script or
transaction whose keys span slots, so every store test doubles as a proof of
the hash-tag rule in docs/storage-schema.md. The cluster runs are skipped
(with the reason) on a redis-py whose cluster pipeline refuses EVALSHA, such
as 5.0.0 in CI's lowest-versions run.
"""

from __future__ import annotations

import os
import shutil
import typing as t
from collections.abc import Iterator

import pytest
import redis

from proxy.store import connection
from proxy.store.connection import RedisOptions

from .topologies.servers import SENTINEL_MASTER
from .topologies.servers import ClusterRedis
from .topologies.servers import SentinelRedis
from .topologies.servers import TLSRedis
from .topologies.servers import start_cluster_redis
from .topologies.servers import start_sentinel_redis
from .topologies.servers import start_tls_redis
from .topologies.servers import tls_supported


def _require_redis_tools() -> None:
    if shutil.which("redis-server") and shutil.which("redis-cli"):
        return
    reason = "redis-server and redis-cli are not installed (redis-server, redis-tools)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; they are required when CI is set", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sentinel_redis() -> Iterator[SentinelRedis]:
    """A primary, a replica and a sentinel, shared by the session."""
    _require_redis_tools()
    servers = start_sentinel_redis()
    yield servers
    servers.close()


@pytest.fixture(scope="session")
def tls_redis() -> Iterator[TLSRedis]:
    """redis-server on TLS only (client certificate required), ACL user only."""
    _require_redis_tools()
    if not tls_supported():
        pytest.skip("this redis-server was built without TLS")
    servers = start_tls_redis()
    yield servers
    servers.close()


@pytest.fixture(scope="session")
def cluster_redis() -> Iterator[ClusterRedis]:
    """Three cluster primaries covering every slot, shared by the session."""
    if not connection.CLUSTER_PIPELINES_RUN_SCRIPTS:
        # The oldest redis-py pyproject allows (CI's lowest-versions run).
        pytest.skip(connection.CLUSTER_UNSUPPORTED)
    _require_redis_tools()
    servers = start_cluster_redis()
    yield servers
    servers.close()


def sentinel_options(servers: SentinelRedis) -> RedisOptions:
    return RedisOptions(
        mode=connection.SENTINEL,
        sentinels=servers.sentinels,
        sentinel_master=SENTINEL_MASTER,
    )


def cluster_options(servers: ClusterRedis) -> RedisOptions:
    return RedisOptions(mode=connection.CLUSTER, url=servers.url)


@pytest.fixture
def sentinel_client(sentinel_redis: SentinelRedis) -> Iterator[redis.Redis]:
    client = connection.connect(sentinel_options(sentinel_redis))
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def cluster_client(cluster_redis: ClusterRedis) -> Iterator[redis.Redis]:
    client = connection.connect(cluster_options(cluster_redis))
    yield client
    client.flushdb()  # every primary
    client.close()


@pytest.fixture(params=["fake", "real", "sentinel", "cluster"])
def redis_client(request: pytest.FixtureRequest) -> redis.Redis:
    """Every topology the store supports (tests/conftest.py has fake and real)."""
    name = {
        "fake": "fake_redis",
        "real": "real_redis",
        "sentinel": "sentinel_client",
        "cluster": "cluster_client",
    }[request.param]
    return t.cast(redis.Redis, request.getfixturevalue(name))
