"""Redis work from the server's own counters: round trips and commands."""

from __future__ import annotations

import typing as t

import redis

#: `total_reads_processed` and the calls per command, at one moment.
Snapshot = tuple[int, dict[str, int]]


class RedisProbe:
    """Server-side counters: round trips = read events, from `INFO all` deltas.

    Redis counts one read event (`total_reads_processed`) per socket read that
    carries client input: a single command, a whole pipeline, a MULTI/EXEC
    block or one EVALSHA each arrive in one read, so on loopback with small
    requests the delta is the number of round trips. The probe's own INFO is
    calibrated away. Command counts are `INFO commandstats` deltas; commands
    run inside a Lua script are counted there as well as the EVALSHA itself.
    """

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url, decode_responses=True)
        first = self.snap()
        self.baseline = 0
        second = self.snap()
        self.baseline = second[0] - first[0]

    def snap(self) -> Snapshot:
        info = self.r.info("all")
        commands = {
            k[len("cmdstat_") :]: int(v["calls"])
            for k, v in info.items()
            if k.startswith("cmdstat_") and isinstance(v, dict)
        }
        return int(info["total_reads_processed"]), commands

    def delta(self, before: Snapshot, after: Snapshot) -> Snapshot:
        reads = after[0] - before[0] - self.baseline
        commands = {
            name: after[1].get(name, 0) - before[1].get(name, 0)
            for name in after[1]
            if name != "info" and after[1].get(name, 0) - before[1].get(name, 0)
        }
        return reads, commands

    def used_memory(self) -> int:
        return int(self.r.info("memory")["used_memory"])


def per_request(delta: Snapshot, requests: int) -> dict[str, t.Any] | None:
    """A delta's round trips and commands divided by the requests that caused it."""
    if requests <= 0:
        return None
    reads, commands = delta
    return {
        "round_trips": reads / requests,
        "commands": sum(commands.values()) / requests,
        "by_command": {k: round(v / requests, 3) for k, v in sorted(commands.items())},
    }
