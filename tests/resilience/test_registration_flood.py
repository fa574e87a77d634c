"""A registration flood against the real stack: it is refused, and leaves little.

Real processes: redis-server, oidc-provider-mock, the proxy under gunicorn with
2 workers. Many threads POST /oauth2/register, with realistic bodies and with
bodies of exactly MAX_REGISTRATION_BYTES.

1. From one IP, default limits (20/minute per IP): almost everything is 429 with
   Retry-After; no 5xx; Redis' memory stays where it was.
2. From many IPs (X-Forwarded-For from a trusted proxy, FORWARDED_ALLOW_IPS),
   with the per-IP limits out of the way: MAX_CLIENTS caps what is stored,
   exactly, although the registrations run concurrently on both workers.

Figures (accepted, 429s, Redis used_memory before/after, our keys by kind) are
printed and recorded; only correctness is asserted.
"""

from __future__ import annotations

import collections
import itertools
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from ..e2e.conftest import require_redis_server
from ..redis_faults import used_memory
from .fault_stack import REALISTIC_REGISTRATION
from .fault_stack import FaultStack
from .fault_stack import fault_stack
from .fault_stack import max_size_registration
from .load import Figures
from .recorded import record

THREADS = 32
REALISTIC = 1500
MAX_SIZE = 500
MAX_CLIENTS = 300
MANY_IPS = 1500


class Tally:
    """Statuses seen, and whether every 429 carried a Retry-After."""

    def __init__(self) -> None:
        self.statuses: collections.Counter[int] = collections.Counter()
        self.refusals_without_retry_after = 0
        self.bad_bodies: list[str] = []
        self._lock = threading.Lock()

    def add(self, response: requests.Response) -> None:
        with self._lock:
            self.statuses[response.status_code] += 1
            if response.status_code == 429:
                if not response.headers.get("Retry-After", "").isdigit():
                    self.refusals_without_retry_after += 1
                if response.json().get("error") != "temporarily_unavailable":
                    self.bad_bodies.append(response.text[:200])

    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def _flood(
    stack: FaultStack, bodies: list[bytes], headers: Callable[[int], dict[str, str]]
) -> Tally:
    tally = Tally()
    local = threading.local()

    def send(index: int) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        response = session.post(
            f"{stack.proxy_url}/oauth2/register",
            data=bodies[index],
            headers={"Content-Type": "application/json", **headers(index)},
            timeout=30,
        )
        tally.add(response)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(send, range(len(bodies))))
    return tally


def _report(name: str, stack: FaultStack, figures: dict[str, Any]) -> None:
    result = Figures(name)
    result.model = "gunicorn 2 workers"
    result.crowd = figures
    record(result)
    print(f"\n[{name}] " + json.dumps(figures, indent=1))


def test_flood_from_one_ip_is_refused_and_leaves_little() -> None:
    require_redis_server()
    with fault_stack() as stack:
        client = stack.redis_client()
        assert stack.readyz().status_code == 200
        memory_before = used_memory(client)
        realistic = json.dumps(REALISTIC_REGISTRATION).encode()
        big = max_size_registration()
        assert len(big) == 4096
        bodies = [realistic] * REALISTIC + [big] * MAX_SIZE
        # Interleave them: both kinds arrive throughout the flood.
        bodies = [
            b
            for pair in itertools.zip_longest(bodies[::2], bodies[1::2])
            for b in pair
            if b
        ]
        tally = _flood(stack, bodies, lambda _: {})
        memory_after = used_memory(client)
        keys = stack.key_counts()
        _report(
            "registration_flood_one_ip",
            stack,
            {
                "requests": len(bodies),
                "max_size_bodies": MAX_SIZE,
                "accepted_201": tally.statuses[201],
                "refused_429": tally.statuses[429],
                "statuses": dict(tally.statuses),
                "redis_used_memory_before": memory_before,
                "redis_used_memory_after": memory_after,
                "our_keys_after": keys,
                "dbsize_after": client.dbsize(),
            },
        )
    assert tally.server_errors() == 0, tally.statuses
    assert set(tally.statuses) <= {201, 429}, tally.statuses
    assert tally.statuses[429] > 0
    assert tally.refusals_without_retry_after == 0
    assert not tally.bad_bodies, tally.bad_bodies[:3]
    # The per-IP burst is 20, refilled at 20/minute: a fraction of the flood.
    assert tally.statuses[201] == keys.get("client", 0)
    assert tally.statuses[201] < len(bodies) // 10


def test_flood_from_many_ips_is_capped_by_max_clients() -> None:
    """Each request from its own address (as a botnet, or IPv6 rotation, would):
    the per-IP limits do not bite, MAX_CLIENTS does, exactly."""
    require_redis_server()
    overrides = {
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
        "RATE_LIMIT_REGISTER": "100000/minute",
        "MAX_CLIENTS": str(MAX_CLIENTS),
    }
    with fault_stack(overrides=overrides) as stack:
        client = stack.redis_client()
        assert stack.readyz().status_code == 200
        memory_before = used_memory(client)
        big = max_size_registration()
        bodies = [big] * MANY_IPS

        def forwarded(index: int) -> dict[str, str]:
            address = f"10.{index // 65536}.{index // 256 % 256}.{index % 256}"
            return {"X-Forwarded-For": address}

        tally = _flood(stack, bodies, forwarded)
        memory_after = used_memory(client)
        keys = stack.key_counts()
        stored = keys.get("client", 0)
        _report(
            "registration_flood_many_ips",
            stack,
            {
                "requests": len(bodies),
                "distinct_ips": MANY_IPS,
                "max_clients": MAX_CLIENTS,
                "accepted_201": tally.statuses[201],
                "refused_429": tally.statuses[429],
                "statuses": dict(tally.statuses),
                "redis_used_memory_before": memory_before,
                "redis_used_memory_after": memory_after,
                "bytes_per_stored_client": (memory_after - memory_before)
                // max(1, stored),
                "our_keys_after": keys,
            },
        )
    assert tally.server_errors() == 0, tally.statuses
    assert set(tally.statuses) <= {201, 429}, tally.statuses
    assert tally.statuses[201] == MAX_CLIENTS
    assert stored == MAX_CLIENTS
    assert tally.refusals_without_retry_after == 0
