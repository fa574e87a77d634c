"""Fixtures for the property-based fuzz suite: a real Redis, an app with rate
limits off, and a seeded "world" of real clients, codes and tokens to mutate.

Hypothesis runs every example of one test inside one call of the test function,
so these function-scoped fixtures are shared by the examples of a test: the
world is seeded once per test, and each property compares Redis before and
after one request, not against a fresh database.
"""

from __future__ import annotations

import os
import typing as t
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from proxy import create_app
from proxy.config.env import StaticClient
from proxy.config.limits import Limits
from proxy.config.settings import Settings
from proxy.keys.keyring import sha256_hex
from support.processes import ManagedProcess
from support.processes import start_demo_backend
from tests.oauth_client import OAuthTestClient

from .properties import Fuzzer
from .world import World
from .world import seed_world

INTROSPECTOR_ID = "fuzz-introspector"
INTROSPECTOR_SECRET = "fuzz-introspector-secret"

# CI: few examples, derandomized, so a red build is reproducible from its log.
# Locally: FUZZ_EXAMPLES=2000 pytest tests/fuzz runs each test longer.
_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "120"))
hypothesis_settings.register_profile(
    "fuzz",
    max_examples=_EXAMPLES,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    print_blob=True,
    # The app and the seeded world are deliberately shared between examples.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
hypothesis_settings.load_profile("fuzz")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A longer FUZZ_EXAMPLES run is not cut short by the suite's 300 s timeout."""
    seconds = max(300, _EXAMPLES // 2)
    for item in items:
        if "tests/fuzz/" in str(item.path):
            item.add_marker(pytest.mark.timeout(seconds))


@pytest.fixture
def store_client(real_redis: redis.Redis) -> redis.Redis:
    """Fuzz on a real redis-server: the Lua scripts run exactly as in production."""
    return real_redis


@pytest.fixture
def fuzz_settings(settings: Settings) -> Settings:
    """Rate limits off (fuzzing is a flood); an introspecting static client."""
    introspector = StaticClient(
        client_id=INTROSPECTOR_ID,
        redirect_uris=("http://127.0.0.1:5555/callback",),
        client_name="Fuzz introspector",
        client_secret_hash=sha256_hex(INTROSPECTOR_SECRET),
        can_introspect=True,
    )
    return settings.replace(
        limits=Limits(enabled=False), static_clients=(introspector,)
    )


@pytest.fixture
def app(fuzz_settings: Settings, store_client: redis.Redis) -> t.Any:
    return create_app(fuzz_settings, redis_client=store_client)


@pytest.fixture(scope="module")
def backend() -> Iterator[ManagedProcess]:
    """The demo MCP server, for the gateway: a valid token is really relayed."""
    proc = start_demo_backend()
    try:
        yield proc
    finally:
        proc.close()


@pytest.fixture
def world(oauth: OAuthTestClient, fuzz_settings: Settings) -> World:
    """Real registrations, a pending consent, an unredeemed code and tokens."""
    return seed_world(oauth, fuzz_settings)


@pytest.fixture
def fuzzer(client: t.Any, real_redis: redis.Redis, fuzz_settings: Settings) -> Fuzzer:
    return Fuzzer(client, real_redis, fuzz_settings.key_prefix)
