"""Heroku's .profile: a Key-Value Store URL gets `ssl_cert_reqs=none`, only when
asked, and the proxy's own Redis client then connects to a TLS Redis whose
certificate nobody trusts (as Heroku's is), which it refuses without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trustme

from proxy.store.connection import connect
from support.processes import free_port
from tests.deploy.conftest import ROOT


def profiled_redis_url(**env: str) -> str:
    """REDIS_URL after bash sources .profile, as a Heroku dyno does at start."""
    done = subprocess.run(
        ["bash", "-c", 'source "$1" && printf %s "${REDIS_URL-<unset>}"', "-"]
        + [str(ROOT / ".profile")],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return done.stdout


@pytest.mark.parametrize(
    ("flag", "url", "expected"),
    [
        ("true", "rediss://h:6379", "rediss://h:6379?ssl_cert_reqs=none"),
        ("true", "rediss://u:p@h:6379/0", "rediss://u:p@h:6379/0?ssl_cert_reqs=none"),
        # Options of its own: the operator's, left alone.
        ("true", "rediss://h:6379/0?ssl_cert_reqs=required", None),
        ("true", "redis://h:6379/0", None),  # no TLS, nothing to relax
        ("", "rediss://h:6379/0", None),  # not asked for
        ("false", "rediss://h:6379/0", None),
    ],
)
def test_profile_relaxes_only_a_plain_rediss_url_when_asked(
    flag: str, url: str, expected: str | None
) -> None:
    got = profiled_redis_url(HEROKU_KVS_SKIP_TLS_VERIFY=flag, REDIS_URL=url)
    assert got == (expected or url)


def test_profile_leaves_an_unset_redis_url_unset() -> None:
    assert profiled_redis_url(HEROKU_KVS_SKIP_TLS_VERIFY="true") == "<unset>"


@pytest.fixture
def untrusted_tls_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server speaking only TLS, with a certificate from a CA nobody trusts."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required in CI (.ci/run installs it)")
        pytest.skip("redis-server is not installed")
    certificate = trustme.CA().issue_cert("127.0.0.1")
    certificate.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    certificate.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
        + ["--tls-cert-file", str(tmp_path / "cert.pem")]
        + ["--tls-key-file", str(tmp_path / "key.pem")]
        + ["--tls-auth-clients", "no", "--save", "", "--appendonly", "no"]
        + ["--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        url = f"rediss://127.0.0.1:{port}/0"
        while not _answers(url + "?ssl_cert_reqs=none"):
            assert server.poll() is None, "redis-server (TLS) exited"
            assert time.monotonic() < deadline, "redis-server (TLS) did not start"
            time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def test_the_proxy_reaches_a_self_signed_tls_redis_only_through_the_profile(
    untrusted_tls_redis: str,
) -> None:
    refused = connect(untrusted_tls_redis)
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        refused.ping()
    refused.close()

    url = profiled_redis_url(
        HEROKU_KVS_SKIP_TLS_VERIFY="true", REDIS_URL=untrusted_tls_redis
    )
    client = connect(url)
    try:
        assert client.ping() is True
    finally:
        client.close()
