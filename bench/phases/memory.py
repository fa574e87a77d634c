"""Phase 5: Redis memory per registered client and per live grant.

`used_memory` before and after `--memory-count` real registrations over HTTP,
and before and after as many grants written with proxy.store.Store in their
largest steady state (after one refresh). `MEMORY USAGE … SAMPLES 0` of one
record is shown next to it.
"""

from __future__ import annotations

import json
import typing as t
from collections import deque

from ..fixtures import ProxyFixtures
from ..load import Recorder
from ..load import call
from ..load import new_session
from ..load import registration_body
from ..load import run_loop
from ..options import Options
from ..redis_probe import RedisProbe
from ..stack import Stack


async def memory_phase(
    stack: Stack,
    probe: RedisProbe,
    options: Options,
    sample_response: dict[str, t.Any],
) -> dict[str, t.Any]:
    """``sample_response``: a real flow's refresh response (its grant and tokens)."""
    count = options.memory_count
    out: dict[str, t.Any] = {"count": count}
    out["client"], client_id = await _client_memory(stack, probe, options)
    out["grant"] = _grant_memory(stack, probe, count, client_id, sample_response)
    return out


async def _client_memory(
    stack: Stack, probe: RedisProbe, options: Options
) -> tuple[dict[str, t.Any], str]:
    """Clients: real registrations over HTTP; returns the figures and a client id."""
    r = probe.r
    before = probe.used_memory()
    ids: list[str] = []
    body = registration_body()
    url = stack.proxy.url + "/oauth2/register"
    async with new_session(options.concurrency) as session:
        pending = deque(range(options.memory_count))

        async def register(_: int) -> bool:
            if not pending:
                return False
            pending.popleft()
            answer = await call(
                session, Recorder(), "r", "POST", url, json=body, expect=(201,)
            )
            ids.append(answer.json()["client_id"])
            return True

        await run_loop(
            "r", Recorder(), register, concurrency=options.concurrency, duration=600
        )
    after = probe.used_memory()
    sample = stack.settings.key_prefix + "client:" + ids[0]
    figures = {
        "method": "registered over HTTP (POST /oauth2/register)",
        "created": len(ids),
        "used_memory_delta_bytes": after - before,
        "bytes_per_client": round((after - before) / max(1, len(ids)), 1),
        "memory_usage_sample_bytes": r.memory_usage(sample, samples=0),
        "value_bytes_sample": len(r.get(sample) or ""),
    }
    return figures, ids[0]


def _grant_memory(
    stack: Stack,
    probe: RedisProbe,
    count: int,
    client_id: str,
    sample_response: dict[str, t.Any],
) -> dict[str, t.Any]:
    """Live grants: real upstream tokens and a real token response, written via
    proxy.store.Store (create_grant, redeem_code, rotate_refresh)."""
    fx = ProxyFixtures(stack.settings, stack.env["REDIS_URL"])
    r = probe.r
    real_grant = sample_response["refresh_token"].split(".", 1)[0]
    upstream = fx.open_upstream(real_grant)
    response = json.dumps(sample_response).encode()
    real_key = fx.store.keys.grant(real_grant)
    before = probe.used_memory()
    grants = [fx.refreshed(client_id, upstream, response) for _ in range(count)]
    after = probe.used_memory()
    key = fx.store.keys.grant(grants[0])
    return {
        "method": (
            "written with proxy.store.Store (create_grant, redeem_code, "
            "rotate_refresh): state after one refresh, with the upstream tokens "
            "and token response of a real flow"
        ),
        "created": len(grants),
        "used_memory_delta_bytes": after - before,
        "bytes_per_grant": round((after - before) / max(1, len(grants)), 1),
        "memory_usage_sample_bytes": r.memory_usage(key, samples=0),
        "memory_usage_real_flow_grant_bytes": r.memory_usage(real_key, samples=0),
        "encoding": r.object("encoding", key),
        "field_bytes_sample": _field_sizes(r.get(key)),
    }


def _field_sizes(raw: str | None) -> dict[str, int]:
    """Bytes per field of a grant record (one JSON string), largest first."""
    if not raw:
        return {}
    fields = json.loads(raw)
    sizes = {k: len(json.dumps(v)) for k, v in fields.items()}
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))
