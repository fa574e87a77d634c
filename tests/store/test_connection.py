"""proxy/store/connection.py: one place builds the client, with the same
timeouts and no retries on every topology, and never shows a password."""

from __future__ import annotations

import fakeredis
import redis
import redis.sentinel

from proxy.store import connection
from proxy.store.connection import RedisOptions
from proxy.store.connection import mask_url
from tests.redis_round_trips import idle_connection


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("rediss://proxy:hunter2@cache:6380/0") == (
        "rediss://proxy:***@cache:6380/0"
    )
    assert mask_url("redis://:hunter2@cache") == "redis://:***@cache"
    assert mask_url("redis://cache:6379") == "redis://cache:6379"
    assert mask_url(None) is None


def test_options_never_show_a_password() -> None:
    options = RedisOptions(
        url="redis://u:hunter2@cache",
        password="hunter3",
        sentinel_password="hunter4",
    )
    text = repr(options) + options.describe()
    assert "hunter" not in text


def test_no_url_is_the_embedded_store() -> None:
    assert isinstance(connection.connect(None), fakeredis.FakeRedis)
    assert isinstance(connection.connect(RedisOptions()), fakeredis.FakeRedis)


def test_the_embedded_stores_scripts_are_the_servers_not_one_connections() -> None:
    """As in Redis, a script loaded once runs on every pooled connection: a
    new connection (opened while another thread holds the idle one) meets no
    NOSCRIPT, so no request pays a reload for it."""
    client = connection.connect(None)
    sha = client.script_load("return 1")
    pool = client.connection_pool
    held = idle_connection(pool)  # another thread's, in a worker
    try:
        assert client.evalsha(sha, 0) == 1  # on a second connection
    finally:
        pool.release(held)
    assert client.script_exists(sha) == [True]


def test_a_standalone_client_never_retries() -> None:
    client = connection.connect("redis://127.0.0.1:1/0")
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == connection.SOCKET_TIMEOUT_SECONDS
    assert kwargs["retry"]._retries == 0  # get_retries() is redis-py 5.1+


def test_tls_files_and_credentials_reach_the_connection() -> None:
    options = RedisOptions(
        url="rediss://cache:6380/0",
        username="proxy",
        password="pw",
        tls=True,
        ca_file="/ca.pem",
        client_cert="/c.pem",
        client_key="/c.key",
    )
    client = connection.connect(options)
    kwargs = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class is redis.SSLConnection
    assert kwargs["ssl_ca_certs"] == "/ca.pem"
    assert (kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == ("/c.pem", "/c.key")
    assert (kwargs["username"], kwargs["password"]) == ("proxy", "pw")


def test_sentinels_primary_connections_never_retry() -> None:
    options = RedisOptions(
        mode=connection.SENTINEL,
        sentinels=(("127.0.0.1", 1),),
        sentinel_master="proxy",
        sentinel_password="spw",
    )
    client = connection.connect(options)
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    assert (
        pool.connection_kwargs["retry"]._retries == 0
    )  # get_retries() is redis-py 5.1+
    sentinel = pool.sentinel_manager.sentinels[0]
    assert sentinel.connection_pool.connection_kwargs["password"] == "spw"


def test_sentinel_tls_reaches_the_sentinels_and_the_primary() -> None:
    options = RedisOptions(
        mode=connection.SENTINEL,
        sentinels=(("127.0.0.1", 1),),
        sentinel_master="proxy",
        tls=True,
        sentinel_tls=True,
        ca_file="/ca.pem",
    )
    pool = connection.connect(options).connection_pool
    assert issubclass(pool.connection_class, redis.SSLConnection)
    assert pool.connection_kwargs["ssl_ca_certs"] == "/ca.pem"
    sentinel = pool.sentinel_manager.sentinels[0].connection_pool
    assert sentinel.connection_class is redis.SSLConnection
    assert sentinel.connection_kwargs["ssl_ca_certs"] == "/ca.pem"
