"""Put a real redis-server into the states a deployment meets: full, read-only.

Shared by the unit tests (tests/endpoints, tests/cli) and the resilience tests.
No fixtures here: these are plain helpers on a redis-py client.
"""

from __future__ import annotations

import redis

#: Where the filler's keys live: outside any proxy key prefix.
FILL_PREFIX = "fault-fill:"
#: Consecutive refused writes after which Redis counts as full. Memory
#: fluctuates around the limit (client buffers come and go), so one refusal is
#: not enough: the filler keeps squeezing small values in until this many fail.
REFUSALS_TO_BE_FULL = 50
FULL_MAXMEMORY_ARGS = ["--maxmemory", "8mb", "--maxmemory-policy", "noeviction"]


#: How far below the filled memory the limit is then pinned (see below).
PIN_MARGIN_BYTES = 512 * 1024


def fill_to_maxmemory(client: redis.Redis) -> int:
    """Write filler keys until Redis refuses writes (noeviction); the count.

    Large values first, then small ones, so what is left below the limit is
    less than one tiny write. Memory still dips below the limit now and then
    (client buffers are freed), which would let a write through at random; so
    the limit is then pinned a little below what is used: Redis stays full
    until the filler's keys are deleted, as it would in production.
    """
    written = 0
    for size, batch in ((16_384, 64), (256, 16), (16, 1)):
        refusals = 0
        while refusals < (REFUSALS_TO_BE_FULL if batch == 1 else 1):
            pipe = client.pipeline(transaction=False)
            for index in range(batch):
                pipe.set(f"{FILL_PREFIX}{size}:{written + index}", b"x" * size)
            try:
                pipe.execute()
                written += batch
                refusals = 0
            except redis.exceptions.OutOfMemoryError:
                refusals += 1
                written += batch  # some of the batch may have gone in
    client.config_set("maxmemory", used_memory(client) - PIN_MARGIN_BYTES)
    return written


def free_memory(client: redis.Redis) -> int:
    """Delete every filler key; how many there were."""
    keys = list(client.scan_iter(match=f"{FILL_PREFIX}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    return len(keys)


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])
