"""POST /oauth2/register under its quotas, on a real redis-server.

REGISTRATIONS_PER_IP_PER_DAY and MAX_CLIENTS answer 429 temporarily_unavailable
with Retry-After and no-store; a client nobody used lives UNUSED_CLIENT_TTL_SECONDS,
and its first token request gives it CLIENT_TTL_SECONDS; a body over
MAX_REGISTRATION_BYTES is refused without being read to its end.
"""

from __future__ import annotations

import dataclasses
import io
import json
import typing as t
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from proxy import create_app
from proxy.config.limits import Limits
from proxy.config.settings import Settings

from ..oauth_client import REDIRECT_URI
from ..oauth_client import OAuthTestClient
from ._helpers import assert_json_error
from ._helpers import assert_no_store

BODY = {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
UNUSED_TTL = 3600
CLIENT_TTL = 30 * 86400


def _limits(**quotas: t.Any) -> Limits:
    """Only the quotas under test: no per-IP request rate in the way."""
    return Limits(per_ip={}, trusted_proxies=(), **quotas)


@pytest.fixture
def quota_settings(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        client_ttl_seconds=CLIENT_TTL,
        limits=_limits(
            registrations_per_ip_per_day=3,
            max_clients=1000,
            unused_client_ttl_seconds=UNUSED_TTL,
        ),
    )


def _client(settings: Settings, real_redis: redis.Redis) -> t.Any:
    return create_app(settings, redis_client=real_redis).test_client()


def _register(client: t.Any, ip: str = "203.0.113.1", **extra: t.Any) -> t.Any:
    return client.post(
        "/oauth2/register", json=BODY, environ_base={"REMOTE_ADDR": ip}, **extra
    )


def assert_quota_refusal(response: t.Any) -> int:
    assert_json_error(response, 429, "temporarily_unavailable")
    assert_no_store(response)
    retry_after = int(response.headers["Retry-After"])
    assert retry_after > 0
    return retry_after


def _client_keys(real_redis: redis.Redis, settings: Settings) -> list[str]:
    return list(real_redis.scan_iter(match=f"{settings.key_prefix}client:*"))


def test_the_daily_quota_per_ip(
    quota_settings: Settings, real_redis: redis.Redis
) -> None:
    """The 4th registration of one IP today is 429 until midnight UTC; another
    IP is not affected; nothing is stored for the refused one."""
    client = _client(quota_settings, real_redis)
    for _ in range(3):
        assert _register(client).status_code == 201
    retry_after = assert_quota_refusal(_register(client))
    assert retry_after <= 86400
    assert _register(client, ip="203.0.113.2").status_code == 201
    assert len(_client_keys(real_redis, quota_settings)) == 4


def test_the_daily_quota_counts_the_forwarded_client(
    quota_settings: Settings, real_redis: redis.Redis
) -> None:
    """Behind a trusted proxy, each X-Forwarded-For client has its own quota;
    from an untrusted peer, the header is ignored."""
    trusting = dataclasses.replace(
        quota_settings,
        limits=dataclasses.replace(quota_settings.limits, trust_all_proxies=True),
    )
    client = _client(trusting, real_redis)
    for index in range(6):
        forwarded = {"X-Forwarded-For": f"198.51.100.{index}"}
        assert _register(client, headers=forwarded).status_code == 201
    untrusting = _client(quota_settings, real_redis)
    for index in range(3):
        forwarded = {"X-Forwarded-For": f"198.51.100.{100 + index}"}
        assert _register(untrusting, headers=forwarded).status_code == 201
    assert_quota_refusal(_register(untrusting, headers={"X-Forwarded-For": "1.2.3.4"}))


def test_max_clients(settings: Settings, real_redis: redis.Redis) -> None:
    """At MAX_CLIENTS unused clients, registration is 429, from any IP."""
    capped = dataclasses.replace(settings, limits=_limits(max_clients=3))
    client = _client(capped, real_redis)
    for index in range(3):
        assert _register(client, ip=f"192.0.2.{index}").status_code == 201
    assert_quota_refusal(_register(client, ip="192.0.2.200"))
    assert len(_client_keys(real_redis, capped)) == 3


def test_max_clients_holds_under_concurrent_registrations(
    settings: Settings, real_redis: redis.Redis
) -> None:
    """40 registrations at once against MAX_CLIENTS=5: exactly 5 stored (the
    count and the add are one script, so in-flight requests cannot overshoot)."""
    capped = dataclasses.replace(settings, limits=_limits(max_clients=5))
    app = create_app(capped, redis_client=real_redis)

    def register(index: int) -> int:
        response = _register(app.test_client(), ip=f"10.0.{index // 250}.{index}")
        return int(response.status_code)

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(register, range(40)))
    assert statuses.count(201) == 5
    assert statuses.count(429) == 35
    assert len(_client_keys(real_redis, capped)) == 5


def test_an_unused_client_expires_soon_and_its_first_use_keeps_it(
    quota_settings: Settings, real_redis: redis.Redis
) -> None:
    """Registered: TTL at most UNUSED_CLIENT_TTL_SECONDS. After its first token
    request: CLIENT_TTL_SECONDS."""
    app = create_app(quota_settings, redis_client=real_redis)
    oauth = OAuthTestClient(app.test_client())
    client_id = oauth.register()["client_id"]
    key = app.extensions["proxy"].store.keys.client(client_id)
    assert 0 < real_redis.ttl(key) <= UNUSED_TTL
    flow = oauth.login(client_id)
    assert 0 < real_redis.ttl(key) <= UNUSED_TTL  # authorize and consent: no slide
    assert oauth.token(flow).status_code == 200
    assert UNUSED_TTL < real_redis.ttl(key) <= CLIENT_TTL
    assert real_redis.ttl(key) >= CLIENT_TTL - 5


class CountingStream(io.RawIOBase):
    """A request body that counts what the app reads of it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.position = 0
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True  # the test client measures the length by seeking

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = {0: offset, 1: self.position + offset, 2: self.size}[whence]
        return self.position

    def readinto(self, buffer: t.Any) -> int:
        count = max(0, min(len(buffer), self.size - self.position))
        buffer[:count] = b" " * count
        self.position += count
        self.read_bytes += count
        return count


@pytest.mark.parametrize("size", [4097, 60_000])
def test_a_body_over_the_limit_is_refused_unread(
    quota_settings: Settings, real_redis: redis.Redis, size: int
) -> None:
    """Over MAX_REGISTRATION_BYTES (4096): 400 invalid_client_metadata, having
    read only the limit and one byte more; nothing is stored or counted."""
    client = _client(quota_settings, real_redis)
    body = CountingStream(size)
    response = client.post(
        "/oauth2/register",
        input_stream=body,
        content_length=size,
        content_type="application/json",
    )
    assert_json_error(response, 400, "invalid_client_metadata")
    assert body.read_bytes <= quota_settings.max_registration_bytes + 1
    assert not list(real_redis.scan_iter(match=f"{quota_settings.key_prefix}*"))


def test_a_body_at_the_limit_is_read(
    quota_settings: Settings, real_redis: redis.Redis
) -> None:
    """Exactly MAX_REGISTRATION_BYTES of valid JSON registers."""
    client = _client(quota_settings, real_redis)
    limit = quota_settings.max_registration_bytes
    body = dict(BODY, client_name="")
    padding = limit - len(_json(body))
    body["client_name"] = "n" * min(padding, 200)
    raw = _json(body)
    raw = raw[:-1] + b" " * (limit - len(raw)) + b"}"
    assert len(raw) == limit
    response = client.post(
        "/oauth2/register", data=raw, content_type="application/json"
    )
    assert response.status_code == 201, response.get_data(as_text=True)


def _json(value: t.Any) -> bytes:
    return json.dumps(value).encode()


def test_a_made_up_code_or_token_does_not_keep_a_client(
    quota_settings: Settings, real_redis: redis.Redis
) -> None:
    """Token requests with invented codes and refresh tokens are refused and
    leave the unused TTL as it was: a flood cannot register clients and then
    keep them for CLIENT_TTL_SECONDS with one bogus request each."""
    app = create_app(quota_settings, redis_client=real_redis)
    client = app.test_client()
    client_id = OAuthTestClient(client).register()["client_id"]
    key = app.extensions["proxy"].store.keys.client(client_id)
    for form in (
        {
            "grant_type": "authorization_code",
            "code": "g" * 22 + ".s",
            "code_verifier": "v" * 43,
        },
        {"grant_type": "refresh_token", "refresh_token": "g" * 22 + ".s"},
    ):
        response = client.post(
            "/oauth2/token",
            data={**form, "client_id": client_id, "redirect_uri": REDIRECT_URI},
        )
        assert_json_error(response, 400, "invalid_grant")
        assert 0 < real_redis.ttl(key) <= UNUSED_TTL


def test_rotating_ipv6_addresses_does_not_escape_the_quota(
    quota_settings: Settings, real_redis: redis.Redis
) -> None:
    """A new address from the same /64 for each registration: one quota."""
    client = _client(quota_settings, real_redis)
    for host in range(3):
        assert _register(client, ip=f"2001:db8:0:1::{host + 1:x}").status_code == 201
    assert_quota_refusal(_register(client, ip="2001:db8:0:1:dead:beef:0:1"))
    assert _register(client, ip="2001:db8:0:2::1").status_code == 201
    daily = f"{quota_settings.key_prefix}rate:ip:register-day:*"
    assert len(list(real_redis.scan_iter(match=daily))) == 2
