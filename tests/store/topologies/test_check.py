"""`python -m proxy check` on each topology, from the environment as deployed:
the store answers, every cluster primary's memory policy is read, and no
password reaches the output."""

from __future__ import annotations

import io
import typing as t

import pytest

from proxy.cli import check
from tests.upstream.standins import OIDCStandIn

from .servers import ACL_PASSWORD
from .servers import ACL_USER
from .servers import SENTINEL_MASTER
from .servers import TLSRedis

if t.TYPE_CHECKING:
    from .servers import ClusterRedis
    from .servers import SentinelRedis

SECRET = "ab" * 32


def _check(httpserver: t.Any, **redis_env: str) -> tuple[int, str, check.Report]:
    idp = OIDCStandIn(httpserver)
    environ = {
        "PUBLIC_URL": "http://127.0.0.1:9999",
        "OAUTH_ISSUER": idp.issuer,
        "OAUTH_CLIENT_ID": "proxy-client",
        "OAUTH_CLIENT_SECRET": "proxy-secret",
        "PROXY_SECRET_KEY": SECRET,
        **redis_env,
    }
    out = io.StringIO()
    status = check.main(environ, out)
    report = check.run(check.Settings.from_env(environ))
    return status, out.getvalue(), report


def test_check_reads_every_cluster_primarys_memory_policy(
    httpserver: t.Any, cluster_redis: ClusterRedis
) -> None:
    status, text, report = _check(
        httpserver, REDIS_MODE="cluster", REDIS_URL=cluster_redis.url
    )
    assert status == 0, text
    assert "redis" in report.codes(check.OK)
    memory = [f for f in report.findings if f.code.startswith("redis_memory")]
    assert len(memory) == 3  # one per primary, each named
    assert all(f.message.startswith("127.0.0.1:") for f in memory)


def test_check_finds_the_primary_through_sentinel(
    httpserver: t.Any, sentinel_redis: SentinelRedis
) -> None:
    host, port = sentinel_redis.sentinels[0]
    status, text, report = _check(
        httpserver,
        REDIS_MODE="sentinel",
        REDIS_SENTINELS=f"{host}:{port}",
        REDIS_SENTINEL_MASTER=SENTINEL_MASTER,
    )
    assert status == 0, text
    assert "redis" in report.codes(check.OK)
    assert "redis_memory" in report.codes(check.OK)


@pytest.mark.parametrize("in_url", [True, False])
def test_check_over_tls_with_an_acl_user_never_prints_the_password(
    httpserver: t.Any, tls_redis: TLSRedis, in_url: bool
) -> None:
    certs = {
        "REDIS_CA_FILE": tls_redis.ca_file,
        "REDIS_CLIENT_CERT": tls_redis.client_cert,
        "REDIS_CLIENT_KEY": tls_redis.client_key,
    }
    if in_url:
        url = tls_redis.url.replace("//", f"//{ACL_USER}:{ACL_PASSWORD}@")
        redis_env = {"REDIS_URL": url, **certs}
    else:
        redis_env = {
            "REDIS_URL": tls_redis.url,
            "REDIS_USERNAME": ACL_USER,
            "REDIS_PASSWORD": ACL_PASSWORD,
            **certs,
        }
    status, text, report = _check(httpserver, **redis_env)
    assert status == 0, text
    assert "redis" in report.codes(check.OK)
    assert ACL_PASSWORD not in text


def test_a_wrong_acl_password_is_reported_unreachable_without_the_password(
    httpserver: t.Any, tls_redis: TLSRedis
) -> None:
    status, text, report = _check(
        httpserver,
        REDIS_URL=tls_redis.url.replace("//", f"//{ACL_USER}:wrong-password@"),
        REDIS_CA_FILE=tls_redis.ca_file,
        REDIS_CLIENT_CERT=tls_redis.client_cert,
        REDIS_CLIENT_KEY=tls_redis.client_key,
    )
    assert status == 1
    assert report.codes(check.FAIL) == ["redis_unreachable"]
    assert "wrong-password" not in text
