"""A Sentinel failover in the middle of a refresh loop: answers are 200 or 503
(never a 500), the loop finishes on the new primary by itself, and no grant
issued before the failover is lost.

The primaries run with ``min-replicas-to-write 1`` (docs/storage-schema.md,
"Sentinel"): a demoted primary refuses the writes its promotion would drop.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import typing as t
from collections import Counter
from collections.abc import Iterator

import pytest

from proxy import create_app
from proxy.config.limits import Limits
from tests.oauth_client import OAuthTestClient

from ..conftest import _require_redis_tools
from ..conftest import sentinel_options
from .servers import SentinelRedis
from .servers import start_sentinel_redis

if t.TYPE_CHECKING:
    from proxy.config.settings import Settings

GRANTS = 3
#: Refreshes that must succeed after the failover before the loop ends.
AFTER = 10
LOOP_DEADLINE_SECONDS = 30


@pytest.fixture
def failing_over() -> Iterator[SentinelRedis]:
    """Servers of its own: the failover must not move the session's primary."""
    _require_redis_tools()
    servers = start_sentinel_redis()
    yield servers
    servers.close()


@pytest.fixture
def app(settings: Settings, failing_over: SentinelRedis) -> Iterator[t.Any]:
    # The loop refreshes far faster than any client would: no rate limits.
    changed = settings.replace(
        redis=dataclasses.replace(sentinel_options(failing_over), replica_acks=1),
        limits=Limits(enabled=False),
    )
    app = create_app(changed)
    yield app
    app.extensions["proxy"].store.redis.close()


def test_refreshes_ride_through_a_sentinel_failover(
    oauth: OAuthTestClient, failing_over: SentinelRedis
) -> None:
    grants = [oauth.tokens(user=f"user{n}@example.com") for n in range(GRANTS)]
    tokens = {client_id: body["refresh_token"] for client_id, body in grants}
    old_primary = failing_over.primary_port()
    done = threading.Event()
    failover = threading.Thread(
        target=lambda: (failing_over.failover(), done.set()), daemon=True
    )
    statuses: Counter[int] = Counter()
    refused_at: list[float] = []
    after = 0
    deadline = time.monotonic() + LOOP_DEADLINE_SECONDS
    loops = 0
    while after < AFTER:
        assert time.monotonic() < deadline, f"never recovered: {statuses}"
        if loops == 5:
            failover.start()
        loops += 1
        for client_id, token in tokens.items():
            response = oauth.refresh(client_id, token)
            statuses[response.status_code] += 1
            if response.status_code == 200:
                tokens[client_id] = response.get_json()["refresh_token"]
                after += done.is_set()
            else:
                assert response.status_code == 503, response.get_data(as_text=True)
                assert response.get_json()["error"] == "temporarily_unavailable"
                assert int(response.headers["Retry-After"]) > 0
                refused_at.append(time.monotonic())
                time.sleep(0.05)
    failover.join(timeout=5)
    assert failing_over.primary_port() != old_primary
    assert set(statuses) <= {200, 503}, statuses
    # Every grant issued before the failover still refreshes on the new primary.
    for client_id, token in tokens.items():
        assert oauth.refresh(client_id, token).status_code == 200
    window = refused_at[-1] - refused_at[0] if refused_at else 0.0
    print(f"failover loop: {dict(statuses)}, 503s over {window:.1f} s")
