"""Phase 4: the gateway's added latency and SSE streaming.

Sequential `tools/call echo`, in turn directly to the backend, through the
floor's relay (`bench/floor_app.py` `/mcp`: the token checked with one Redis
round trip, the request relayed, the answer read whole), through the
gateway, through the policed gateway (tool policy and tool scopes:
`Stack.policed`, issue 13's "with policy on") and through the guarded one
(the same and MCP_BACKEND_IDENTITY=jwt: `Stack.guarded`), with one token (the
floor its own); then the `count` tool (5 progress notifications 200 ms
apart) directly and through the gateway, with each SSE event's arrival time.

The floor's relay says what any relay with a token check adds on the same
machine, under the same gunicorn: the part of the gateway's added latency
that is ours is what it adds beyond that (`over_floor_p50_ms`).

The five take turns in blocks of `BLOCK_CALLS` calls, not call by call: a
gateway serves its own traffic with its code and data warm in the CPU's
caches. When the phase had three ways, taking turns call by call (client,
backend, two gateways and Redis turning over on two cores on every call)
measured the eviction: each gateway's CPU per call rose from 1.9 to 3.0 ms
and the plain gateway's added p50 from 1.5 to 2.5 ms (same build, same
machine). Blocks still interleave often enough that drift lands on all
five.
"""

from __future__ import annotations

import time
import typing as t

import aiohttp

from proxy import create_app
from proxy.config.backend_identity import BackendIdentity
from proxy.oauth.access_tokens import AccessClaims
from proxy.resource_server.backend_identity import backend_identity

from ..fixtures import FloorFixtures
from ..load import MCP_ACCEPT
from ..load import MCP_ECHO_CALL
from ..load import REDIRECT_URI
from ..load import Recorder
from ..load import call
from ..load import mcp_open
from ..load import new_session
from ..load import percentile
from ..options import Options
from ..stack import Stack
from ..stats import ms

#: Calls each way makes in its turn (see the module docstring).
BLOCK_CALLS = 20

#: tools/call `count`: five progress notifications 200 ms apart, as SSE events.
COUNT_CALL = {
    "jsonrpc": "2.0",
    "id": 9,
    "method": "tools/call",
    "params": {
        "name": "count",
        "arguments": {"to": 5, "delay_seconds": 0.2},
        "_meta": {"progressToken": "p1"},
    },
}


async def gateway_phase(stack: Stack, token: str, options: Options) -> dict[str, t.Any]:
    """Sequential tools/call, alternating direct and through the gateway."""
    direct_url = stack.backend.url
    floor_url = stack.floor.url + "/mcp"
    gateway_url = stack.proxy.url + stack.settings.mcp_path
    policed_url = stack.policed.url + stack.settings.mcp_path
    guarded_url = stack.guarded.url + stack.settings.mcp_path
    base = {"Accept": MCP_ACCEPT}
    bearer = dict(base, Authorization=f"Bearer {token}")
    rec = Recorder()
    async with new_session(4) as session:
        direct = await mcp_open(session, Recorder(), direct_url, base)
        floor_token = await _floor_token(session, stack)
        floor_bearer = dict(base, Authorization=f"Bearer {floor_token}")
        floor = await mcp_open(session, Recorder(), floor_url, floor_bearer)
        via = await mcp_open(session, Recorder(), gateway_url, bearer)
        policed = await mcp_open(session, Recorder(), policed_url, bearer)
        guarded = await mcp_open(session, Recorder(), guarded_url, bearer)
        ways = [
            ("direct", direct_url, direct),
            ("floor", floor_url, floor),
            ("gateway", gateway_url, via),
            ("policed", policed_url, policed),
            ("guarded", guarded_url, guarded),
        ]
        await _echo_each_way(session, Recorder(), ways, 5)  # warm-up
        block = min(BLOCK_CALLS, options.gateway_calls)
        for _ in range(-(-options.gateway_calls // block)):  # rounded up
            await _echo_each_way(session, rec, ways, block)
        sse_direct = await _sse_arrivals(session, direct_url, direct)
        sse_gateway = await _sse_arrivals(session, gateway_url, via)
    out = _added_latency(rec.latencies["direct"], rec.latencies["gateway"])
    for name in ("policed", "guarded", "floor"):
        out[name] = _added_latency(rec.latencies["direct"], rec.latencies[name])
    for doc in (out, out["policed"], out["guarded"]):
        doc["over_floor_p50_ms"] = _difference(doc, out["floor"], "added_p50_ms")
    out["identity_jwt_us"] = identity_jwt_cost(stack, options.quick)
    out["sse_direct_arrivals_ms"] = sse_direct
    out["sse_gateway_arrivals_ms"] = sse_gateway
    out["sse_unbuffered"] = _unbuffered(sse_direct, sse_gateway)
    return out


#: In-process identity JWTs timed back to back (full run, --quick).
_SIGNINGS = {False: 5000, True: 500}
#: ... and each after a pause of PAUSE_SECONDS, as in a request (fewer: slower).
_PAUSED_SIGNINGS = {False: 1000, True: 100}
#: A request signs after waiting on Redis (the grant check) for about this long.
PAUSE_SECONDS = 0.001


def identity_jwt_cost(stack: Stack, quick: bool) -> dict[str, float | None]:
    """What MCP_BACKEND_IDENTITY adds per request, timed in this process: the
    gateway's identity step with plain headers and with the signed JWT (ES256,
    the stack's own signing key from its Redis), p50/p99 in microseconds.

    Timed twice: back to back, and each after a 1 ms sleep. A request signs
    after waiting on Redis, and on this VM work that follows a wait runs 2.5
    to 3.5 times slower than the same work in a loop (the CPU's caches and
    clock after idling): the loop said 50 us for the JWT while the guarded
    gateway paid about 0.2 ms for it. The paused figure is the request's.
    """
    claims = AccessClaims(
        sub="bench-user@example.com",
        client_id="mcp_" + "c" * 22,
        scope="mcp",
        audience=stack.settings.resource,
        grant_id="g" * 22,
        expires_at=2**31,
        issued_at=0,
        jti="bench",
        extra={"email": "bench-user@example.com", "email_verified": True},
    )
    out: dict[str, float | None] = {}
    for mode in (BackendIdentity.HEADERS, BackendIdentity.JWT):
        app = create_app(stack.settings.replace(backend_identity=mode))
        state = app.extensions["proxy"]
        server = state.settings.servers[0]
        now = int(time.time())
        with app.app_context():
            for _ in range(50):  # warm-up: the key record read and opened
                backend_identity(state, server, claims, now)
            for label, count, pause in (
                ("", _SIGNINGS[quick], 0.0),
                ("_paused", _PAUSED_SIGNINGS[quick], PAUSE_SECONDS),
            ):
                samples = []
                for _ in range(count):
                    if pause:
                        time.sleep(pause)
                    start = time.perf_counter()
                    backend_identity(state, server, claims, now)
                    samples.append(time.perf_counter() - start)
                for q in (50, 99):
                    value = percentile(samples, q)
                    key = f"{mode}{label}_p{q}_us"
                    out[key] = None if value is None else round(value * 1e6, 1)
    return out


async def _floor_token(session: aiohttp.ClientSession, stack: Stack) -> str:
    """An access token of the floor's own (its key, its grant in Redis)."""
    fixtures = FloorFixtures(stack.env["REDIS_URL"], stack.settings.resource)
    try:
        code = fixtures.codes("bench-floor-client", 1)[0]
    finally:
        fixtures.client.close()
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": fixtures.verifier,
        "client_id": "bench-floor-client",
        "redirect_uri": REDIRECT_URI,
    }
    url = stack.floor.url + "/oauth2/token"
    answer = await call(session, Recorder(), "setup", "POST", url, data=form)
    return t.cast(str, answer.json()["access_token"])


def _difference(
    doc: dict[str, t.Any], floor: dict[str, t.Any], key: str
) -> float | None:
    ours, least = doc.get(key), floor.get(key)
    if ours is None or least is None:
        return None
    return round(float(ours) - float(least), 2)


async def _echo_each_way(
    session: aiohttp.ClientSession,
    rec: Recorder,
    ways: list[tuple[str, str, dict[str, str]]],
    calls: int,
) -> None:
    """`calls` `echo` calls per (name, url, headers), each way in turn,
    recorded under its name."""
    for name, url, headers in ways:
        for _ in range(calls):
            await call(
                session, rec, name, "POST", url, json=MCP_ECHO_CALL, headers=headers
            )


def _added_latency(direct: list[float], gateway: list[float]) -> dict[str, t.Any]:
    out: dict[str, t.Any] = {
        "calls": len(gateway),
        "direct_p50_ms": ms(percentile(direct, 50)),
        "direct_p99_ms": ms(percentile(direct, 99)),
        "gateway_p50_ms": ms(percentile(gateway, 50)),
        "gateway_p99_ms": ms(percentile(gateway, 99)),
    }
    if direct and gateway:
        out["added_p50_ms"] = round(out["gateway_p50_ms"] - out["direct_p50_ms"], 2)
        out["added_p99_ms"] = round(out["gateway_p99_ms"] - out["direct_p99_ms"], 2)
    return out


async def _sse_arrivals(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> list[float]:
    """Arrival time (ms after the request) of each SSE event of a `count` call."""
    arrivals = []
    start = time.perf_counter()
    async with session.post(url, json=COUNT_CALL, headers=headers) as response:
        buffer = b""
        async for chunk in response.content.iter_any():
            buffer += chunk.replace(b"\r\n", b"\n")
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                if b"data:" in event:
                    arrivals.append(round((time.perf_counter() - start) * 1000, 1))
    return arrivals


def _unbuffered(direct: list[float], gateway: list[float]) -> bool:
    """Events arrive spread over the stream's life as they do directly, not all
    together at the end: each within 100 ms of its direct arrival time."""
    return (
        len(gateway) >= 3
        and len(gateway) == len(direct)
        and gateway[0] < gateway[-1] / 2
        and all(abs(a - b) < 100 for a, b in zip(gateway, direct, strict=True))
    )
