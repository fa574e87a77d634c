"""The whole OAuth flow on each Redis topology, through an app create_app built
from settings alone (connection.connect() makes the client, as in production).

register → authorize → consent → callback → token → refresh → revoke, then
/readyz, on: TLS with a client certificate and an ACL user, a primary found
through Sentinel, and a three-primary Redis Cluster.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterator

import pytest

from proxy import create_app
from proxy.store.connection import RedisOptions
from tests.oauth_client import OAuthTestClient

from ..conftest import cluster_options
from ..conftest import sentinel_options
from .servers import ACL_PASSWORD
from .servers import ACL_USER
from .servers import TLSRedis

if t.TYPE_CHECKING:
    from proxy.config.settings import Settings


def tls_options(servers: TLSRedis) -> RedisOptions:
    return RedisOptions(
        url=servers.url,
        username=ACL_USER,
        password=ACL_PASSWORD,
        tls=True,
        ca_file=servers.ca_file,
        client_cert=servers.client_cert,
        client_key=servers.client_key,
    )


@pytest.fixture(params=["tls_acl", "sentinel", "cluster"])
def topology(request: pytest.FixtureRequest) -> RedisOptions:
    if request.param == "tls_acl":
        return tls_options(request.getfixturevalue("tls_redis"))
    if request.param == "sentinel":
        return sentinel_options(request.getfixturevalue("sentinel_redis"))
    return cluster_options(request.getfixturevalue("cluster_redis"))


@pytest.fixture
def app(settings: Settings, topology: RedisOptions) -> Iterator[t.Any]:
    """The app as deployed: no client handed in, settings name the topology."""
    app = create_app(settings.replace(redis=topology, redis_url=topology.url))
    yield app
    app.extensions["proxy"].store.redis.close()


def test_the_whole_flow_works_on_the_topology(
    oauth: OAuthTestClient, app: t.Any
) -> None:
    client_id, body = oauth.tokens()
    refreshed = oauth.refresh(client_id, body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    token = refreshed.get_json()["refresh_token"]
    assert token != body["refresh_token"]
    revoked = oauth.client.post(
        "/oauth2/revoke", data={"token": token, "client_id": client_id}
    )
    assert revoked.status_code == 200
    after = oauth.refresh(client_id, token)
    assert after.status_code == 400
    assert after.get_json()["error"] == "invalid_grant"


def test_readiness_probes_reads_and_writes_on_the_topology(client: t.Any) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["store"] == "up"


def test_the_store_really_is_the_topology(app: t.Any, topology: RedisOptions) -> None:
    """No silent fallback to the embedded store: the client is redis-py's own
    for the mode, and a TLS connection is a TLS connection."""
    client = app.extensions["proxy"].store.redis
    if topology.mode == "cluster":
        assert type(client).__name__ == "RedisCluster"
        assert len(client.get_primaries()) == 3
    elif topology.mode == "sentinel":
        assert type(client.connection_pool).__name__ == "SentinelConnectionPool"
    else:
        assert client.connection_pool.connection_class.__name__ == "SSLConnection"
        assert client.acl_whoami() == ACL_USER
