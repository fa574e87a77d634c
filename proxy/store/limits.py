"""Rate buckets, failed-authentication back-off and registration quotas in Redis.

Shared by every worker and instance. The request-time checks of one request
go out in one pipeline: one round trip, however many buckets apply.
"""

from __future__ import annotations

import time
import typing as t

import redis.exceptions

from proxy.keys.keyring import sha256_hex
from proxy.store import scripts
from proxy.store.pipelines import execute_with_scripts

if t.TYPE_CHECKING:
    from proxy.store.keys import Keys


class Rate(t.Protocol):
    """A bucket's shape (proxy.config.limits.Rate): the store needs no config."""

    @property
    def count(self) -> int: ...

    @property
    def interval_ms(self) -> int: ...


#: How long failures are remembered when no back-off is in force.
AUTH_FAILURE_WINDOW_SECONDS = 600
_LONG_SUBJECT = 64


def subject(value: str) -> str:
    """A bucket's subject: the value itself, or its hash when long (CIMD URLs)."""
    return value if len(value) <= _LONG_SUBJECT else sha256_hex(value)[:32]


def _seconds(ms: int) -> int:
    return -(-ms // 1000)  # ceiling: never tell a client to come back too soon


class Rider(t.Protocol):
    """A command that rides in another pipeline: queued, then handed its reply.

    ``queue`` says whether it queued one command (``receive`` follows) or
    none; it may run twice if Redis lost a script (``scripts``: their
    sources, loaded before the retry).
    """

    @property
    def scripts(self) -> t.Sequence[str]: ...

    def queue(self, pipe: t.Any, grant_id: str) -> bool: ...

    def receive(self, reply: t.Any) -> None: ...


class Limiter:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._charge = client.register_script(scripts.CHARGE_RATE)
        self._record_failure = client.register_script(scripts.RECORD_AUTH_FAILURE)
        self._reserve_client = client.register_script(scripts.RESERVE_CLIENT)

    def check(
        self,
        charge: t.Sequence[tuple[str, Rate]] = (),
        *,
        peek: t.Sequence[tuple[str, Rate]] = (),
        blocked: t.Sequence[str] = (),
    ) -> int:
        """Charge buckets, look at others and at back-off flags, in one round trip.

        Returns 0 when the request may go on, else the seconds to wait (the
        longest of the refusals).
        """
        return _seconds(max(self.waits(charge, peek=peek, blocked=blocked), default=0))

    def waits(
        self,
        charge: t.Sequence[tuple[str, Rate]] = (),
        *,
        peek: t.Sequence[tuple[str, Rate]] = (),
        blocked: t.Sequence[str] = (),
    ) -> list[int]:
        """`check`, bucket by bucket: the ms each one asks to wait (0: passed,
        and charged if in `charge`), in the order charge, peek, blocked."""
        if not charge and not peek and not blocked:
            return []

        def queue(pipe: t.Any) -> None:
            for mode, buckets in (("charge", charge), ("peek", peek)):
                for key, rate in buckets:
                    self._queue_rate(pipe, key, rate, mode)
            for key in blocked:
                pipe.pttl(key)

        return [max(0, int(reply)) for reply in self._execute(queue)]

    def refund(self, buckets: t.Sequence[tuple[str, Rate]]) -> None:
        """Give back one charge of each bucket (the request did not count after
        all), in one round trip."""

        def queue(pipe: t.Any) -> None:
            for key, rate in buckets:
                self._queue_rate(pipe, key, rate, "refund")

        self._execute(queue)

    def charge_grant(
        self, grant_id: str, rate: Rate | None, *, riders: t.Sequence[Rider] = ()
    ) -> tuple[bool, int]:
        """(does the grant exist, seconds to wait): one round trip for the gateway.

        ``riders`` queue their own commands in the same pipeline and get their
        replies back, so what the gateway needs per request costs no more.
        """
        queued: list[Rider] = []

        def queue(pipe: t.Any) -> None:
            queued.clear()
            pipe.exists(self._keys.grant(grant_id))
            if rate is not None:
                self._queue_rate(pipe, self.grant_bucket(grant_id), rate, "charge")
            for rider in riders:
                if rider.queue(pipe, grant_id):
                    queued.append(rider)

        sources = [source for rider in riders for source in rider.scripts]
        replies = self._execute(queue, sources)
        wait_ms = int(replies[1]) if rate is not None else 0
        ridden = replies[2 if rate is not None else 1 :]
        for rider, reply in zip(queued, ridden, strict=True):
            rider.receive(reply)
        return bool(replies[0]), _seconds(wait_ms)

    def _queue_rate(self, pipe: t.Any, key: str, rate: Rate, mode: str) -> None:
        # EVALSHA by hand: a redis-py Script inside a pipeline sends SCRIPT
        # EXISTS first, one more round trip on every request.
        pipe.evalsha(self._charge.sha, 1, key, rate.interval_ms, rate.count, mode)

    def _execute(
        self, queue: t.Callable[[t.Any], None], sources: t.Sequence[str] = ()
    ) -> list[t.Any]:
        """One pipeline; loaded and sent again if Redis lost a script."""
        return execute_with_scripts(self._redis, queue, (scripts.CHARGE_RATE, *sources))

    def ip_bucket(self, endpoint: str, ip: str) -> str:
        return self._keys.rate(f"ip:{endpoint}", subject(ip))

    def client_bucket(self, client_id: str) -> str:
        return self._keys.rate("client", subject(client_id))

    def grant_bucket(self, grant_id: str) -> str:
        return self._keys.rate("grant", subject(grant_id))

    def fetch_host_bucket(self, host: str) -> str:
        """Network fetches of client documents from one host (RATE-4)."""
        return self._keys.rate("fetch-host", subject(host))

    def auth_block(self, ip: str, client_id: str) -> str:
        return self._keys.auth_block(subject(ip), subject(client_id))

    def record_auth_failure(
        self, ip: str, client_id: str, *, allowed: int, longest_seconds: int
    ) -> int:
        """Count one failed client authentication; the back-off in force (s)."""
        ip, client_id = subject(ip), subject(client_id)
        keys = [
            self._keys.auth_failures(ip, client_id),
            self._keys.auth_block(ip, client_id),
        ]
        result = self._record_failure(
            keys=keys,
            args=[allowed, longest_seconds, AUTH_FAILURE_WINDOW_SECONDS],
        )
        return int(result)

    def reserve_client(
        self, client_id: str, expires_at: int, *, max_clients: int
    ) -> bool:
        """Count a new DCR client against `max_clients`; False when at the cap.

        The index holds each client until its first (unused) TTL would end,
        so this caps what a registration flood can leave in Redis. Trimming,
        counting and adding are one script: concurrent registrations on every
        worker cannot overshoot the cap.
        """
        reserved = self._reserve_client(
            keys=[self._keys.client_index()],
            args=[int(time.time()), max_clients, client_id, expires_at],
        )
        return int(reserved) == 1
