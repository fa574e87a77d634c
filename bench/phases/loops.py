"""Phase 2: each endpoint in a loop on the proxy and on the floor.

Same aiohttp client, same concurrency, same total duration on both sides.
Codes and refresh tokens are written directly (bench/fixtures.py) in exactly
the format the callback writes, so the token loops measure the token endpoint
only.
"""

from __future__ import annotations

import contextlib
import typing as t
from collections import defaultdict
from collections import deque
from collections.abc import Awaitable
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field

import aiohttp

from support.processes import ManagedProcess

from ..balance import BALANCE_ATTEMPTS
from ..balance import is_even
from ..balance import worker_split
from ..cpu import CpuMeter
from ..fixtures import FloorFixtures
from ..fixtures import ProxyFixtures
from ..load import REDIRECT_URI
from ..load import Recorder
from ..load import RunStats
from ..load import authorize_params
from ..load import call
from ..load import new_session
from ..load import registration_body
from ..load import run_loop
from ..options import Options
from ..redis_probe import RedisProbe
from ..redis_probe import Snapshot
from ..redis_probe import per_request
from ..stack import Stack
from ..stats import stats_summary

#: Slices per side: more of them cancel more of a shared machine's drift
#: (4 left the observability figure swinging by +-20 % between runs).
LOOP_ROUNDS = 8
ENDPOINTS = [
    "metadata",
    "jwks",
    "register",
    "authorize",
    "token_code",
    "token_refresh",
    "gateway_check",
]

#: One request of a loop, given the index of the loop client; False: nothing left.
Step = Callable[[int], Awaitable[bool]]


class LoopSetup:
    """Builds, for one server (proxy or floor), the step function of each loop."""

    def __init__(
        self,
        kind: str,
        base: str,
        session: aiohttp.ClientSession,
        rec: Recorder,
        stack: Stack,
        options: Options,
    ) -> None:
        self.kind = kind
        self.base = base
        self.session = session
        self.rec = rec
        self.stack = stack
        self.options = options
        self.resource = stack.settings.resource
        redis_url = stack.env["REDIS_URL"]
        self.proxy_fx = ProxyFixtures(stack.settings, redis_url)
        self.floor_fx = FloorFixtures(redis_url, self.resource)

    async def build(self, name: str) -> Step:
        """The step of the `name` loop; its fixtures are made first."""
        builders = {
            "metadata": self._metadata,
            "jwks": self._jwks,
            "register": self._register,
            "authorize": self._authorize,
            "token_code": self._token_code,
            "token_refresh": self._token_refresh,
            "gateway_check": self._gateway_check,
        }
        if name not in builders:
            raise ValueError(name)
        return await builders[name]()

    # -- fixtures ----------------------------------------------------------------
    async def _new_client(self) -> str:
        answer = await call(
            self.session,
            Recorder(),
            "setup",
            "POST",
            self.base + "/oauth2/register",
            json=registration_body(),
            expect=(200, 201),
        )
        return str(answer.json()["client_id"])

    def _codes(self, client_id: str, count: int) -> list[str]:
        """Authorization codes ready to redeem, as the callback writes them."""
        if self.kind != "floor":
            return [self.proxy_fx.grant(client_id)[0] for _ in range(count)]
        return self.floor_fx.codes(client_id, count)

    def _code_form(self, client_id: str, code: str) -> dict[str, str]:
        verifier = (
            self.proxy_fx.verifier if self.kind != "floor" else self.floor_fx.verifier
        )
        return {
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
        }

    # -- one builder per endpoint -------------------------------------------------
    def _get(self, name: str, path: str, **kw: t.Any) -> Step:
        url = self.base + path

        async def step(_: int) -> bool:
            await call(self.session, self.rec, name, "GET", url, **kw)
            return True

        return step

    async def _metadata(self) -> Step:
        return self._get("metadata", "/.well-known/oauth-authorization-server")

    async def _jwks(self) -> Step:
        return self._get("jwks", "/.well-known/jwks.json")

    async def _register(self) -> Step:
        url = self.base + "/oauth2/register"
        body = registration_body()

        async def register(_: int) -> bool:
            await call(
                self.session,
                self.rec,
                "register",
                "POST",
                url,
                json=body,
                expect=(201, 200),
            )
            return True

        return register

    async def _authorize(self) -> Step:
        clients = [await self._new_client() for _ in range(self.options.concurrency)]
        challenge = self.proxy_fx.challenge
        url = self.base + "/oauth2/authorize"

        async def authorize(i: int) -> bool:
            params = authorize_params(clients[i], challenge, self.resource, "mcp")
            await call(self.session, self.rec, "authorize", "GET", url, params=params)
            return True

        return authorize

    async def _token_code(self) -> Step:
        client_id = await self._new_client()
        count = int(self.options.loop_seconds * 1500) + 200
        codes = deque(self._codes(client_id, count))
        url = self.base + "/oauth2/token"

        async def token_code(_: int) -> bool:
            if not codes:
                return False
            form = self._code_form(client_id, codes.popleft())
            await call(self.session, self.rec, "token_code", "POST", url, data=form)
            return True

        return token_code

    async def _token_refresh(self) -> Step:
        """Each loop client follows its own rotation chain, as a real client does."""
        client_id = await self._new_client()
        c = self.options.concurrency
        if self.kind != "floor":
            chain = [self.proxy_fx.redeemed(client_id)[0] for _ in range(c)]
        else:
            chain = self.floor_fx.refresh_tokens(client_id, c)
        url = self.base + "/oauth2/token"

        async def token_refresh(i: int) -> bool:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": chain[i],
                "client_id": client_id,
            }
            answer = await call(
                self.session, self.rec, "token_refresh", "POST", url, data=form
            )
            chain[i] = answer.json()["refresh_token"]
            return True

        return token_refresh

    async def _gateway_check(self) -> Step:
        client_id = await self._new_client()
        form = self._code_form(client_id, self._codes(client_id, 1)[0])
        answer = await call(
            self.session,
            Recorder(),
            "setup",
            "POST",
            self.base + "/oauth2/token",
            data=form,
        )
        auth = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        return self._get("gateway_check", "/oauth2/forward-auth", headers=auth)


@dataclass
class _Loop:
    """One endpoint's loop on one server, with its totals over the rounds."""

    server: ManagedProcess
    step: Step
    rec: Recorder
    setup: LoopSetup
    latencies: list[float] = field(default_factory=list)
    completed: int = 0
    failed: int = 0
    elapsed: float = 0.0
    reads: int = 0
    commands: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    cpu: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    async def reconnect(self, concurrency: int) -> None:
        """A new session: the next requests open new connections."""
        await self.setup.session.close()
        self.setup.session = new_session(concurrency)

    async def close(self) -> None:
        await self.setup.session.close()

    def add(self, stats: RunStats, redis: Snapshot, cpu: dict[str, float]) -> None:
        for k, v in cpu.items():
            self.cpu[k] += v
        self.latencies += stats.latencies
        self.completed += stats.completed
        self.failed += stats.failed
        self.elapsed += stats.elapsed
        reads, commands = redis
        self.reads += reads
        for k, v in commands.items():
            self.commands[k] += v

    def summary(self) -> dict[str, t.Any]:
        stats = RunStats(self.completed, self.failed, self.elapsed, self.latencies)
        summary = stats_summary(stats)
        requests = stats.completed + stats.failed
        summary["redis"] = per_request((self.reads, dict(self.commands)), requests)
        summary["cpu_ms_per_request"] = {
            k: round(v * 1000 / requests, 3) if requests else None
            for k, v in self.cpu.items()
        }
        if self.rec.error_samples:
            summary["error_sample"] = dict(self.rec.error_samples)
        return summary


async def loops_phase(
    stack: Stack, probe: RedisProbe, options: Options
) -> dict[str, t.Any]:
    """Each endpoint on the proxy, the quiet proxy and the floor, same client,
    same length.

    The three alternate in `LOOP_ROUNDS` slices (proxy, quiet, floor, proxy…)
    so that drift on a shared machine (the client, the servers and Redis share
    the cores) lands on every side of the ratios. The quiet proxy is the same
    build with audit, traces and metrics off (bench/stack.py): the gap is what
    observability costs. Each server has its own client session, whose
    keep-alive connections are spread over its workers first (`_balance`).
    """
    out: dict[str, t.Any] = {}
    rounds = 1 if options.quick else LOOP_ROUNDS
    servers = {"proxy": stack.proxy, "quiet": stack.quiet, "floor": stack.floor}
    for name in ENDPOINTS:
        loops: dict[str, _Loop] = {}
        async with contextlib.AsyncExitStack() as sessions:
            for kind, server in servers.items():
                loops[kind] = await _prepare(name, kind, server, stack, options)
                sessions.push_async_callback(loops[kind].close)
            # All three right before the first slice: a server's idle
            # connections outlive the others' set-up only by gunicorn's
            # keep-alive (5 s), and new ones split at random again.
            split = await _balance(name, loops, options)
            for _ in range(rounds):
                for loop in loops.values():
                    seconds = options.loop_seconds / rounds
                    await _run_slice(name, loop, stack, probe, options, seconds)
            split["after"] = {
                kind: worker_split(loop.server) for kind, loop in loops.items()
            }
        out[name] = {kind: loop.summary() for kind, loop in loops.items()}
        proxy_rate = out[name]["proxy"]["per_second"]
        floor_rate = out[name]["floor"]["per_second"]
        out[name]["ratio"] = round(proxy_rate / floor_rate, 3) if floor_rate else None
        out[name]["observability"] = observability_cost(out[name])
        out[name]["worker_split"] = split
    return out


def observability_cost(row: dict[str, t.Any]) -> dict[str, float | None]:
    """The proxy against the quiet proxy: throughput lost, server CPU added.

    Throughput moves with whatever else the machine does; CPU per request is
    the steadier of the two figures.
    """
    on, off = row["proxy"], row["quiet"]
    on_rate, off_rate = on["per_second"], off["per_second"]
    on_cpu = (on.get("cpu_ms_per_request") or {}).get("server")
    off_cpu = (off.get("cpu_ms_per_request") or {}).get("server")
    both_cpu = on_cpu is not None and off_cpu is not None
    return {
        "slower": round(1 - on_rate / off_rate, 3) if off_rate else None,
        "cpu_ms_added": round(on_cpu - off_cpu, 3) if both_cpu else None,
        "cpu_added": round(on_cpu / off_cpu - 1, 3) if both_cpu and off_cpu else None,
    }


async def _prepare(
    name: str,
    kind: str,
    server: ManagedProcess,
    stack: Stack,
    options: Options,
) -> _Loop:
    """Build the loop's step, in a session of its own, and warm it up."""
    rec = Recorder()
    setup = LoopSetup(
        kind, server.url, new_session(options.concurrency), rec, stack, options
    )
    step = await setup.build(name)
    loop = _Loop(server, step, rec, setup)
    await _warm_up(name, loop, options)
    return loop


async def _warm_up(
    name: str, loop: _Loop, options: Options, seconds: float | None = None
) -> None:
    """A short run: connections open, caches filled (0.5 s, 0.1 s if quick)."""
    if seconds is None:
        seconds = 0.1 if options.quick else 0.5
    await run_loop(
        name, Recorder(), loop.step, concurrency=options.concurrency, duration=seconds
    )


async def _balance(
    name: str, loops: dict[str, _Loop], options: Options
) -> dict[str, t.Any]:
    """Spread each loop's keep-alive connections evenly over its server's workers.

    An uneven split (``bench/balance.py``) held for the whole loop: the quiet
    proxy came out 26 % *faster* and 26 % slower than the proxy in runs of
    the same build. Loops whose split is uneven, or whose connections the server closed,
    reconnect (with a 0.1 s warm-up, so that a loop's fixtures last) until a
    pass over all of them changes nothing. Returns each split before the
    first slice (connections per worker, sorted) and the passes it took;
    without ``ss`` (iproute2) the split is unknown and left as it is.
    """
    splits: dict[str, list[int] | None] = {}
    for attempt in range(1, BALANCE_ATTEMPTS + 1):
        splits = {kind: worker_split(loop.server) for kind, loop in loops.items()}
        uneven = [
            kind
            for kind, split in splits.items()
            if not is_even(split, options.concurrency)
        ]
        if not uneven:
            return {"before": splits, "passes": attempt}
        for kind in uneven:
            await loops[kind].reconnect(options.concurrency)
            await _warm_up(name, loops[kind], options, seconds=0.1)
    return {"before": splits, "passes": BALANCE_ATTEMPTS, "uneven": True}


async def _run_slice(
    name: str,
    loop: _Loop,
    stack: Stack,
    probe: RedisProbe,
    options: Options,
    seconds: float,
) -> None:
    """One slice of a loop, with the server's and Redis's CPU and Redis's work."""
    meter = CpuMeter({"server": loop.server, "redis": stack.redis})
    before = probe.snap()
    stats = await run_loop(
        name, loop.rec, loop.step, concurrency=options.concurrency, duration=seconds
    )
    redis = probe.delta(before, probe.snap())
    loop.add(stats, redis, meter.stop())
