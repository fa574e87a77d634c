"""The benchmark: `python -m bench` (see bench/README.md).

Starts redis-server, the upstream IdP, the demo MCP backend, the proxy and
the floor (both under gunicorn with config/gunicorn.conf.py), and optionally
the peer (FastMCP's OIDCProxy, in its own venv); then measures, prints a
table and writes bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import subprocess
import sys
import time
import traceback
import typing as t
from collections import defaultdict
from collections import deque
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import aiohttp
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from proxy.config.settings import Settings

from . import peer
from . import procs
from . import report
from .fixtures import FloorFixtures
from .fixtures import ProxyFixtures
from .load import MCP_ACCEPT
from .load import REDIRECT_URI
from .load import FlowError
from .load import Recorder
from .load import RunStats
from .load import Target
from .load import authorize_params
from .load import call
from .load import new_session
from .load import percentile
from .load import registration_body
from .load import run_flows
from .load import run_loop

UPSTREAMS = {"fast": "bench.fast_idp:app", "mock": "bench.idp_app:app"}
RESULTS = Path(__file__).resolve().parent / "results"
LOOP_ROUNDS = 4
ENDPOINTS = [
    "metadata",
    "jwks",
    "register",
    "authorize",
    "token_code",
    "token_refresh",
    "gateway_check",
]


@dataclass
class Options:
    workers: int
    clients: int
    concurrency: int
    loop_seconds: float
    flow_seconds: float
    probe_flows: int
    memory_count: int
    gateway_calls: int
    peer: bool
    profile: bool
    quick: bool
    output: Path
    idp_threads: int
    upstream: str


def parse_args(argv: list[str] | None) -> Options:
    cores = os.cpu_count() or 1
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--workers", type=int, default=cores, help="gunicorn workers")
    p.add_argument("--clients", type=int, default=8, help="concurrent flow clients")
    p.add_argument(
        "--concurrency", type=int, default=16, help="per-endpoint loop clients"
    )
    p.add_argument("--loop-seconds", type=float, default=8.0)
    p.add_argument("--flow-seconds", type=float, default=20.0)
    p.add_argument("--memory-count", type=int, default=10_000)
    p.add_argument("--gateway-calls", type=int, default=400)
    p.add_argument("--no-peer", action="store_true", help="skip FastMCP")
    p.add_argument(
        "--profile", action="store_true", help="py-spy the proxy workers too"
    )
    p.add_argument("--quick", action="store_true", help="a few seconds, for CI")
    p.add_argument("--idp-threads", type=int, default=16)
    p.add_argument(
        "--upstream",
        choices=sorted(UPSTREAMS),
        default="fast",
        help="fast: bench/fast_idp.py (stateless); mock: oidc-provider-mock",
    )
    p.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    a = p.parse_args(argv)
    options = Options(
        workers=a.workers,
        clients=a.clients,
        concurrency=a.concurrency,
        loop_seconds=a.loop_seconds,
        flow_seconds=a.flow_seconds,
        probe_flows=20,
        memory_count=a.memory_count,
        gateway_calls=a.gateway_calls,
        peer=not a.no_peer,
        profile=a.profile,
        quick=a.quick,
        output=a.output,
        idp_threads=a.idp_threads,
        upstream=a.upstream,
    )
    if a.quick:
        options.loop_seconds = min(options.loop_seconds, 0.7)
        options.flow_seconds = min(options.flow_seconds, 1.5)
        options.probe_flows = 3
        options.memory_count = min(options.memory_count, 200)
        options.gateway_calls = min(options.gateway_calls, 20)
        options.clients = min(options.clients, 4)
        options.concurrency = min(options.concurrency, 4)
    return options


# -- Redis accounting ---------------------------------------------------------
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

    def snap(self) -> tuple[int, dict[str, int]]:
        info = self.r.info("all")
        commands = {
            k[len("cmdstat_") :]: int(v["calls"])
            for k, v in info.items()
            if k.startswith("cmdstat_") and isinstance(v, dict)
        }
        return int(info["total_reads_processed"]), commands

    def delta(
        self, before: tuple[int, dict[str, int]], after: tuple[int, dict[str, int]]
    ) -> tuple[int, dict[str, int]]:
        reads = after[0] - before[0] - self.baseline
        commands = {
            name: after[1].get(name, 0) - before[1].get(name, 0)
            for name in after[1]
            if name != "info" and after[1].get(name, 0) - before[1].get(name, 0)
        }
        return reads, commands

    def used_memory(self) -> int:
        return int(self.r.info("memory")["used_memory"])


class ProbeRecorder(Recorder):
    """Attributes each step's Redis work to it (sequential flows only)."""

    def __init__(self, probe: RedisProbe) -> None:
        super().__init__()
        self.probe = probe
        self.last = probe.snap()
        self.steps: dict[str, list[tuple[int, dict[str, int]]]] = defaultdict(list)

    def reset(self) -> None:
        self.last = self.probe.snap()

    def add(self, name: str, seconds: float) -> None:
        super().add(name, seconds)
        now = self.probe.snap()
        self.steps[name].append(self.probe.delta(self.last, now))
        self.last = self.probe.snap()


def per_request(
    delta: tuple[int, dict[str, int]], requests: int
) -> dict[str, t.Any] | None:
    if requests <= 0:
        return None
    reads, commands = delta
    return {
        "round_trips": reads / requests,
        "commands": sum(commands.values()) / requests,
        "by_command": {k: round(v / requests, 3) for k, v in sorted(commands.items())},
    }


# -- The stack ----------------------------------------------------------------
@dataclass
class Stack:
    redis: procs.Proc
    idp: procs.Proc
    backend: procs.Proc
    proxy: procs.Proc
    floor: procs.Proc
    settings: Settings
    env: dict[str, str]
    log_dir: Path
    others: list[procs.Proc] = field(default_factory=list)

    def all(self) -> list[procs.Proc]:
        return [
            self.redis,
            self.idp,
            self.backend,
            self.proxy,
            self.floor,
            *self.others,
        ]

    def stop(self) -> None:
        for proc in reversed(self.all()):
            proc.stop()


def start_stack(options: Options, log_dir: Path) -> Stack:
    started: list[procs.Proc] = []
    try:
        started.append(procs.start_redis(log_dir))
        redis_url = started[0].url.replace("http://", "redis://") + "/0"
        idp_app = UPSTREAMS[options.upstream]
        started.append(procs.start_idp(log_dir, options.idp_threads, idp_app))
        started.append(procs.start_mcp_backend(log_dir))
        idp, backend = started[1], started[2]
        proxy_port = procs.free_port()
        public = f"http://127.0.0.1:{proxy_port}"
        env = {
            "PUBLIC_URL": public,
            "OAUTH_ISSUER": idp.url,
            "OAUTH_CLIENT_ID": "proxy-client",
            "OAUTH_CLIENT_SECRET": "proxy-secret",
            "REDIS_URL": redis_url,
            "PROXY_SECRET_KEY": secrets.token_hex(32),
            "MCP_BACKEND_URL": backend.url + "/mcp",
            "MCP_SCOPES": "mcp",
            "LOG_LEVEL": "warning",
        }
        settings = Settings.from_env(env)
        started.append(
            procs.start(
                "proxy",
                procs.gunicorn_argv("wsgi:app", proxy_port, options.workers, None),
                port=proxy_port,
                ready=procs.http_ok(public + "/readyz"),
                log_dir=log_dir,
                env=env,
            )
        )
        floor_port = procs.free_port()
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        floor_env = {
            "PUBLIC_URL": f"http://127.0.0.1:{floor_port}",
            "REDIS_URL": redis_url,
            "FLOOR_SIGNING_KEY": pem,
            "FLOOR_UPSTREAM_AUTHORIZE": idp.url + "/oauth2/authorize",
            "LOG_LEVEL": "warning",
        }
        started.append(
            procs.start(
                "floor",
                procs.gunicorn_argv(
                    "bench.floor_app:app", floor_port, options.workers, None
                ),
                port=floor_port,
                ready=procs.http_ok(
                    f"http://127.0.0.1:{floor_port}/.well-known/jwks.json"
                ),
                log_dir=log_dir,
                env=floor_env,
            )
        )
    except BaseException:
        for proc in reversed(started):
            proc.stop()
        raise
    return Stack(*started, settings=settings, env=env, log_dir=log_dir)


class CpuMeter:
    """CPU seconds used by each process group (and this process) over a phase."""

    def __init__(self, named: dict[str, procs.Proc]) -> None:
        self.named = named
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        values = {name: proc.cpu_seconds() for name, proc in self.named.items()}
        values["bench_client"] = procs.own_cpu_seconds()
        return values

    def stop(self) -> dict[str, float]:
        end = self._read()
        return {k: round(end[k] - self.start[k], 3) for k in end}


def stats_summary(stats: RunStats) -> dict[str, t.Any]:
    return {
        "requests": stats.completed,
        "errors": stats.failed,
        "seconds": round(stats.elapsed, 3),
        "per_second": round(stats.rate, 1),
        "p50_ms": _ms(percentile(stats.latencies, 50)),
        "p99_ms": _ms(percentile(stats.latencies, 99)),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def step_latencies(rec: Recorder) -> dict[str, t.Any]:
    return {
        name: {
            "count": len(values),
            "p50_ms": _ms(percentile(values, 50)),
            "p99_ms": _ms(percentile(values, 99)),
        }
        for name, values in rec.latencies.items()
        if values
    }


# -- Phases -------------------------------------------------------------------
def proxy_target(stack: Stack) -> Target:
    return Target(
        kind="proxy",
        base=stack.proxy.url,
        resource=stack.settings.resource,
        scope="mcp",
        mcp_url=stack.proxy.url + stack.settings.mcp_path,
    )


async def probe_phase(stack: Stack, probe: RedisProbe, flows: int) -> dict[str, t.Any]:
    """Sequential flows with a Redis snapshot after every step: exact per-step work."""
    rec = ProbeRecorder(probe)
    target = proxy_target(stack)
    from .load import complete_flow

    async with new_session(2) as session:
        for i in range(flows):
            rec.reset()
            await complete_flow(session, rec, target, f"probe{i}", with_mcp=True)
        # The gateway token check (forward-auth) and the metadata documents.
        result = await complete_flow(session, rec, target, "probe", with_mcp=False)
        token = result.refreshed["access_token"]
        for _ in range(flows):
            rec.reset()
            await call(
                session,
                rec,
                "gateway_check",
                "GET",
                stack.proxy.url + "/oauth2/forward-auth",
                headers={"Authorization": f"Bearer {token}"},
            )
            for name, path in (
                ("metadata", "/.well-known/oauth-authorization-server"),
                ("jwks", "/.well-known/jwks.json"),
            ):
                await call(session, rec, name, "GET", stack.proxy.url + path)
    out: dict[str, t.Any] = {}
    for name, deltas in rec.steps.items():
        reads = [d[0] for d in deltas]
        commands: dict[str, int] = defaultdict(int)
        for _, cmds in deltas:
            for k, v in cmds.items():
                commands[k] += v
        # The median is the steady state; the mean and max also show one-time
        # work (a new pooled connection's HELLO, a worker's first key load).
        out[name] = {
            "samples": len(deltas),
            "round_trips": sorted(reads)[len(reads) // 2],
            "round_trips_mean": round(sum(reads) / len(reads), 2),
            "round_trips_max": max(reads),
            "commands": sum(commands.values()) / len(deltas),
            "by_command": {
                k: round(v / len(deltas), 3) for k, v in sorted(commands.items())
            },
        }
    return out


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

    async def _register(self) -> str:
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

    async def _token(self, data: dict[str, str]) -> dict[str, t.Any]:
        answer = await call(
            self.session,
            Recorder(),
            "setup",
            "POST",
            self.base + "/oauth2/token",
            data=data,
        )
        return t.cast(dict[str, t.Any], answer.json())

    def _get(self, name: str, path: str, **kw: t.Any) -> t.Any:
        url = self.base + path

        async def step(_: int) -> bool:
            await call(self.session, self.rec, name, "GET", url, **kw)
            return True

        return step

    async def build(self, name: str) -> t.Any:
        c = self.options.concurrency
        if name == "metadata":
            return self._get(name, "/.well-known/oauth-authorization-server")
        if name == "jwks":
            return self._get(name, "/.well-known/jwks.json")
        if name == "register":
            url = self.base + "/oauth2/register"
            body = registration_body()

            async def register(_: int) -> bool:
                await call(
                    self.session,
                    self.rec,
                    name,
                    "POST",
                    url,
                    json=body,
                    expect=(201, 200),
                )
                return True

            return register
        if name == "authorize":
            clients = [await self._register() for _ in range(c)]
            challenge = self.proxy_fx.challenge
            url = self.base + "/oauth2/authorize"

            async def authorize(i: int) -> bool:
                params = authorize_params(clients[i], challenge, self.resource, "mcp")
                await call(self.session, self.rec, name, "GET", url, params=params)
                return True

            return authorize
        if name == "token_code":
            client_id = await self._register()
            count = int(self.options.loop_seconds * 1500) + 200
            if self.kind == "proxy":
                codes = deque(self.proxy_fx.grant(client_id)[0] for _ in range(count))
                verifier = self.proxy_fx.verifier
            else:
                codes = deque(self.floor_fx.codes(client_id, count))
                verifier = self.floor_fx.verifier
            url = self.base + "/oauth2/token"

            async def token_code(_: int) -> bool:
                if not codes:
                    return False
                form = {
                    "grant_type": "authorization_code",
                    "code": codes.popleft(),
                    "code_verifier": verifier,
                    "client_id": client_id,
                    "redirect_uri": REDIRECT_URI,
                }
                await call(self.session, self.rec, name, "POST", url, data=form)
                return True

            return token_code
        if name == "token_refresh":
            client_id = await self._register()
            if self.kind == "proxy":
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
                    self.session, self.rec, name, "POST", url, data=form
                )
                chain[i] = answer.json()["refresh_token"]
                return True

            return token_refresh
        if name == "gateway_check":
            client_id = await self._register()
            if self.kind == "proxy":
                code = self.proxy_fx.grant(client_id)[0]
                verifier = self.proxy_fx.verifier
            else:
                code = self.floor_fx.codes(client_id, 1)[0]
                verifier = self.floor_fx.verifier
            body = await self._token(
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "code_verifier": verifier,
                    "client_id": client_id,
                    "redirect_uri": REDIRECT_URI,
                }
            )
            auth = {"Authorization": f"Bearer {body['access_token']}"}
            return self._get(name, "/oauth2/forward-auth", headers=auth)
        raise ValueError(name)


async def loops_phase(
    stack: Stack, probe: RedisProbe, options: Options
) -> dict[str, t.Any]:
    """Each endpoint on the proxy and on the floor, same client, same length.

    The two alternate in `LOOP_ROUNDS` slices (proxy, floor, proxy, floor…) so
    that drift on a shared machine (the client, both servers and Redis share
    the cores) lands on both sides of the ratio.
    """
    out: dict[str, t.Any] = {}
    rounds = 1 if options.quick else LOOP_ROUNDS
    servers = {"proxy": stack.proxy, "floor": stack.floor}
    async with new_session(options.concurrency) as session:
        for name in ENDPOINTS:
            steps: dict[str, t.Any] = {}
            recs: dict[str, Recorder] = {}
            totals: dict[str, dict[str, t.Any]] = {}
            for kind, server in servers.items():
                recs[kind] = Recorder()
                setup = LoopSetup(kind, server.url, session, recs[kind], stack, options)
                steps[kind] = await setup.build(name)
                # A short warm-up: connections open, caches filled.
                await run_loop(
                    name,
                    Recorder(),
                    steps[kind],
                    concurrency=options.concurrency,
                    duration=0.1 if options.quick else 0.5,
                )
                totals[kind] = {
                    "latencies": [],
                    "completed": 0,
                    "failed": 0,
                    "elapsed": 0.0,
                    "reads": 0,
                    "commands": defaultdict(int),
                    "cpu": defaultdict(float),
                }
            for _ in range(rounds):
                for kind, server in servers.items():
                    meter = CpuMeter({"server": server, "redis": stack.redis})
                    before = probe.snap()
                    stats = await run_loop(
                        name,
                        recs[kind],
                        steps[kind],
                        concurrency=options.concurrency,
                        duration=options.loop_seconds / rounds,
                    )
                    reads, commands = probe.delta(before, probe.snap())
                    total = totals[kind]
                    for k, v in meter.stop().items():
                        total["cpu"][k] += v
                    total["latencies"] += stats.latencies
                    total["completed"] += stats.completed
                    total["failed"] += stats.failed
                    total["elapsed"] += stats.elapsed
                    total["reads"] += reads
                    for k, v in commands.items():
                        total["commands"][k] += v
            out[name] = {}
            for kind, total in totals.items():
                stats = RunStats(
                    total["completed"],
                    total["failed"],
                    total["elapsed"],
                    total["latencies"],
                )
                summary = stats_summary(stats)
                requests = stats.completed + stats.failed
                summary["redis"] = per_request(
                    (total["reads"], dict(total["commands"])), requests
                )
                summary["cpu_ms_per_request"] = {
                    k: round(v * 1000 / requests, 3) if requests else None
                    for k, v in total["cpu"].items()
                }
                if recs[kind].error_samples:
                    summary["error_sample"] = dict(recs[kind].error_samples)
                out[name][kind] = summary
            proxy_rate = out[name]["proxy"]["per_second"]
            floor_rate = out[name]["floor"]["per_second"]
            out[name]["ratio"] = (
                round(proxy_rate / floor_rate, 3) if floor_rate else None
            )
    return out


async def flows_phase(
    stack: Stack, target: Target, options: Options, named: dict[str, procs.Proc]
) -> tuple[dict[str, t.Any], list[t.Any]]:
    rec = Recorder()
    async with new_session(options.clients * 4) as session:
        meter = CpuMeter(named)
        stats, results = await run_flows(
            session,
            rec,
            target,
            clients=options.clients,
            duration=options.flow_seconds,
            with_mcp=target.mcp_url is not None,
        )
        cpu = meter.stop()
    summary = stats_summary(stats)
    summary["flows_per_second"] = summary.pop("per_second")
    summary["steps"] = step_latencies(rec)
    summary["cpu_seconds"] = cpu
    servers = {k: v for k, v in cpu.items() if k != "bench_client"}
    total = sum(servers.values()) or 1.0
    summary["cpu_share"] = {k: round(v / total, 3) for k, v in servers.items()}
    if rec.error_samples:
        summary["error_sample"] = dict(rec.error_samples)
    return summary, results


async def _mcp_init(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> dict[str, str]:
    rec = Recorder()
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        },
    }
    answer = await call(session, rec, "init", "POST", url, json=body, headers=headers)
    out = dict(headers)
    sid = answer.headers.get("mcp-session-id")
    if sid:
        out["mcp-session-id"] = sid
    out["mcp-protocol-version"] = "2025-06-18"
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    await call(
        session, rec, "note", "POST", url, json=note, headers=out, expect=(200, 202)
    )
    return out


async def _sse_arrivals(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> list[float]:
    """Arrival time (ms after the request) of each SSE event of a `count` call."""
    body = {
        "jsonrpc": "2.0",
        "id": 9,
        "method": "tools/call",
        "params": {
            "name": "count",
            "arguments": {"to": 5, "delay_seconds": 0.2},
            "_meta": {"progressToken": "p1"},
        },
    }
    arrivals = []
    start = time.perf_counter()
    async with session.post(url, json=body, headers=headers) as response:
        buffer = b""
        async for chunk in response.content.iter_any():
            buffer += chunk.replace(b"\r\n", b"\n")
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                if b"data:" in event:
                    arrivals.append(round((time.perf_counter() - start) * 1000, 1))
    return arrivals


async def gateway_phase(stack: Stack, token: str, options: Options) -> dict[str, t.Any]:
    """Sequential tools/call, alternating direct and through the gateway."""
    direct_url = stack.backend.url + "/mcp"
    gateway_url = stack.proxy.url + stack.settings.mcp_path
    base = {"Accept": MCP_ACCEPT}
    rec = Recorder()
    async with new_session(4) as session:
        direct = await _mcp_init(session, direct_url, base)
        via = await _mcp_init(
            session, gateway_url, dict(base, Authorization=f"Bearer {token}")
        )
        tool = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "hello"}},
        }
        for _ in range(5):  # warm-up
            await call(
                session, Recorder(), "w", "POST", direct_url, json=tool, headers=direct
            )
            await call(
                session, Recorder(), "w", "POST", gateway_url, json=tool, headers=via
            )
        for _ in range(options.gateway_calls):
            await call(
                session, rec, "direct", "POST", direct_url, json=tool, headers=direct
            )
            await call(
                session, rec, "gateway", "POST", gateway_url, json=tool, headers=via
            )
        sse_direct = await _sse_arrivals(session, direct_url, direct)
        sse_gateway = await _sse_arrivals(session, gateway_url, via)
    d, g = rec.latencies["direct"], rec.latencies["gateway"]
    out: dict[str, t.Any] = {
        "calls": len(g),
        "direct_p50_ms": _ms(percentile(d, 50)),
        "direct_p99_ms": _ms(percentile(d, 99)),
        "gateway_p50_ms": _ms(percentile(g, 50)),
        "gateway_p99_ms": _ms(percentile(g, 99)),
    }
    if d and g:
        out["added_p50_ms"] = round(out["gateway_p50_ms"] - out["direct_p50_ms"], 2)
        out["added_p99_ms"] = round(out["gateway_p99_ms"] - out["direct_p99_ms"], 2)
    out["sse_direct_arrivals_ms"] = sse_direct
    out["sse_gateway_arrivals_ms"] = sse_gateway
    # Unbuffered: events arrive spread over the stream's life as they do
    # directly, not all together at the end.
    streamed = (
        len(sse_gateway) >= 3
        and len(sse_gateway) == len(sse_direct)
        and sse_gateway[0] < sse_gateway[-1] / 2
        and all(abs(a - b) < 100 for a, b in zip(sse_gateway, sse_direct, strict=True))
    )
    out["sse_unbuffered"] = streamed
    return out


async def memory_phase(
    stack: Stack,
    probe: RedisProbe,
    options: Options,
    sample_refresh_token: str,
    sample_response: dict[str, t.Any],
) -> dict[str, t.Any]:
    count = options.memory_count
    out: dict[str, t.Any] = {"count": count}
    fx = ProxyFixtures(stack.settings, stack.env["REDIS_URL"])
    r = probe.r
    # Clients: real registrations over HTTP.
    before = probe.used_memory()
    ids: list[str] = []
    body = registration_body()
    url = stack.proxy.url + "/oauth2/register"
    async with new_session(options.concurrency) as session:
        pending = deque(range(count))

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
    out["client"] = {
        "method": "registered over HTTP (POST /oauth2/register)",
        "created": len(ids),
        "used_memory_delta_bytes": after - before,
        "bytes_per_client": round((after - before) / max(1, len(ids)), 1),
        "memory_usage_sample_bytes": r.memory_usage(sample, samples=0),
        "value_bytes_sample": len(r.get(sample) or ""),
    }
    # Live grants: real upstream tokens and a real token response, written via
    # proxy.store.Store (create_grant, redeem_code, rotate_refresh).
    real_grant = sample_refresh_token.split(".", 1)[0]
    upstream = fx.open_upstream(real_grant)
    response = json.dumps(sample_response).encode()
    real_key = fx.store.keys.grant(real_grant)
    client_id = ids[0]
    before = probe.used_memory()
    grants = [fx.refreshed(client_id, upstream, response) for _ in range(count)]
    after = probe.used_memory()
    key = fx.store.keys.grant(grants[0])
    out["grant"] = {
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
    return out


def _field_sizes(raw: str | None) -> dict[str, int]:
    """Bytes per field of a grant record (one JSON string), largest first."""
    if not raw:
        return {}
    fields = json.loads(raw)
    sizes = {k: len(json.dumps(v)) for k, v in fields.items()}
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


# -- Profiling ----------------------------------------------------------------
def start_pyspy(
    pids: list[int], seconds: float, out_dir: Path
) -> list[tuple[Path, subprocess.Popen[bytes]]]:
    started = []
    for pid in pids:
        path = out_dir / f"pyspy-{pid}.txt"
        argv = ["py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds))]
        # --gil: only the thread holding the GIL, i.e. Python CPU time; threads
        # waiting on a socket or a queue would otherwise dominate the samples.
        argv += ["--rate", "200", "--gil", "--format", "raw", "--output", str(path)]
        popen = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        started.append((path, popen))
    return started


def summarise_pyspy(files: list[Path], top: int = 25) -> dict[str, t.Any]:
    """Inclusive and self sample shares per function from collapsed stacks."""
    inclusive: dict[str, int] = defaultdict(int)
    self_time: dict[str, int] = defaultdict(int)
    total = 0
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_name(frame) for frame in stack.split(";")]
            total += count
            for name in set(frames):
                inclusive[name] += count
            self_time[frames[-1]] += count

    def ranked(table: dict[str, int], only_proxy: bool = False) -> list[t.Any]:
        rows = sorted(table.items(), key=lambda kv: -kv[1])
        if only_proxy:
            rows = [kv for kv in rows if "(proxy/" in kv[0]]
        return [(name, round(100 * n / max(1, total), 1)) for name, n in rows[:top]]

    return {
        "samples": total,
        "inclusive_pct": ranked(inclusive, only_proxy=True),
        "self_pct": ranked(self_time),
    }


def _name(frame: str) -> str:
    """`function (file)` without the line number, `proxy/...` for our code."""
    function, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0] or where.rstrip(")")
    marker = str(procs.REPO_ROOT / "proxy") + "/"
    if path.startswith(marker):
        short = "proxy/" + path[len(marker) :]
    elif path.startswith("proxy/"):  # py-spy shows paths under the cwd relative
        short = path
    else:
        parts = path.split("/")
        short = "/".join(parts[-2:])
    return f"{function} ({short})"


async def profile_phase(stack: Stack, options: Options) -> dict[str, t.Any]:
    out_dir = options.output.parent / "profile"
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*-pyspy-*.txt"):
        old.unlink()
    results: dict[str, t.Any] = {}
    seconds = max(4.0, options.flow_seconds / 2)
    # 1. complete flows (every endpoint, mixed)
    spies = start_pyspy(stack.proxy.worker_pids(), seconds, out_dir)
    await asyncio.sleep(1.0)
    profile_options = Options(**{**options.__dict__, "flow_seconds": seconds})
    await flows_phase(stack, proxy_target(stack), profile_options, {})
    errors = []
    for path, popen in spies:
        _, err = popen.communicate(timeout=60)
        if popen.returncode != 0:
            errors.append(err.decode(errors="replace")[-400:])
        path.rename(out_dir / f"flows-{path.name}")
    files = sorted(out_dir.glob("flows-pyspy-*.txt"))
    results["flows"] = summarise_pyspy(files)
    if errors:
        results["errors"] = errors
    # 2. token endpoint (code and refresh), per-endpoint loops
    for name in ("token_code", "token_refresh", "authorize", "register"):
        async with new_session(options.concurrency) as session:
            rec = Recorder()
            setup = LoopSetup("proxy", stack.proxy.url, session, rec, stack, options)
            step = await setup.build(name)  # before py-spy: fixtures take a while
            spies = start_pyspy(stack.proxy.worker_pids(), 4, out_dir)
            await asyncio.sleep(0.5)
            await run_loop(name, rec, step, concurrency=options.concurrency, duration=5)
        for path, popen in spies:
            popen.communicate(timeout=60)
            path.rename(out_dir / f"{name}-{path.name}")
        results[name] = summarise_pyspy(sorted(out_dir.glob(f"{name}-pyspy-*.txt")))
    # 3. the gateway: tools/call through the proxy to the MCP backend
    async with new_session(8) as session:
        from .load import complete_flow

        flow = await complete_flow(
            session, Recorder(), proxy_target(stack), "profile", with_mcp=False
        )
        url = stack.proxy.url + stack.settings.mcp_path
        auth = {"Accept": MCP_ACCEPT}
        auth["Authorization"] = f"Bearer {flow.refreshed['access_token']}"
        headers = await _mcp_init(session, url, auth)
        tool = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "hello"}},
        }
        spies = start_pyspy(stack.proxy.worker_pids(), 4, out_dir)
        await asyncio.sleep(1.0)
        rec = Recorder()

        async def gateway(_: int) -> bool:
            await call(session, rec, "g", "POST", url, json=tool, headers=headers)
            return True

        await run_loop("g", rec, gateway, concurrency=4, duration=5)
        for path, popen in spies:
            popen.communicate(timeout=60)
            path.rename(out_dir / f"gateway-{path.name}")
    results["gateway"] = summarise_pyspy(sorted(out_dir.glob("gateway-pyspy-*.txt")))
    results["files"] = str(out_dir)
    return results


# -- Main ---------------------------------------------------------------------
async def measure(stack: Stack, options: Options) -> dict[str, t.Any]:
    results: dict[str, t.Any] = {}
    probe = RedisProbe(stack.env["REDIS_URL"])
    target = proxy_target(stack)
    print("· warm-up and per-step Redis accounting (sequential flows)", flush=True)
    async with new_session(4) as session:
        for i in range(2):
            await run_flows(
                session,
                Recorder(),
                target,
                clients=2,
                duration=0.1,
                with_mcp=True,
                max_flows=2,
            )
            del i
    results["redis_per_step"] = await probe_phase(stack, probe, options.probe_flows)
    print("· per-endpoint loops: proxy vs floor", flush=True)
    results["endpoints"] = await loops_phase(stack, probe, options)
    print("· complete flows: proxy", flush=True)
    named = {
        "proxy": stack.proxy,
        "upstream_idp": stack.idp,
        "redis": stack.redis,
        "mcp_backend": stack.backend,
    }
    flows, flow_results = await flows_phase(stack, target, options, named)
    results["flows"] = {"proxy": flows}
    # The OAuth steps alone, as the peer reference figure was measured.
    print("· complete flows without the MCP call: proxy", flush=True)
    oauth_only = Target(**{**target.__dict__, "mcp_url": None})
    results["flows"]["proxy_oauth_only"], _ = await flows_phase(
        stack, oauth_only, options, named
    )
    if not flow_results:
        raise RuntimeError(f"no complete flow succeeded: {flows.get('error_sample')}")
    sample = flow_results[-1]
    print("· gateway added latency and SSE streaming", flush=True)
    results["gateway"] = await gateway_phase(
        stack, sample.refreshed["access_token"], options
    )
    print(f"· Redis memory: {options.memory_count} clients, grants", flush=True)
    results["memory"] = await memory_phase(
        stack, probe, options, sample.refreshed["refresh_token"], sample.refreshed
    )
    if options.peer:
        print("· peer: FastMCP OIDCProxy (own venv)", flush=True)
        results["flows"].update(await peer_phase(stack, options))
    else:
        results["flows"]["peer"] = {"skipped": "disabled with --no-peer"}
    if options.profile:
        print("· profiling the proxy workers with py-spy", flush=True)
        try:
            results["profile"] = await profile_phase(stack, options)
        except Exception as exc:  # the figures above stand without it
            results["profile"] = {"error": f"{type(exc).__name__}: {exc}"}
    return results


async def peer_phase(stack: Stack, options: Options) -> dict[str, t.Any]:
    try:
        version = peer.ensure_venv(stack.log_dir)
        proc = peer.start(stack.idp.url, stack.log_dir)
    except peer.PeerUnavailableError as exc:
        print(f"  peer unavailable: {exc}", flush=True)
        return {"peer": {"skipped": str(exc)}}
    stack.others.append(proc)
    try:
        target = Target(
            kind="peer",
            base=proc.url,
            resource=proc.url + "/mcp",
            scope=None,
            mcp_url=proc.url + "/mcp",
            register_path="/register",
            authorize_path="/authorize",
            token_path="/token",
        )
        # One flow first: if the MCP step fails, run the OAuth part only.
        async with new_session(4) as session:
            try:
                from .load import complete_flow

                await complete_flow(session, Recorder(), target, "warm", with_mcp=True)
            except (FlowError, KeyError, ValueError) as exc:
                note = f"MCP call through the peer failed ({exc}); OAuth steps only"
                print(f"  {note}", flush=True)
                target.mcp_url = None
        named = {"peer": proc, "upstream_idp": stack.idp}
        summary, _ = await flows_phase(stack, target, options, named)
        summary["fastmcp_version"] = version
        summary["with_mcp_call"] = target.mcp_url is not None
        if summary["requests"] == 0:
            summary["log_tail"] = proc.tail(1500)
        oauth_only = Target(**{**target.__dict__, "mcp_url": None})
        print("· complete flows without the MCP call: peer", flush=True)
        only, _ = await flows_phase(stack, oauth_only, options, named)
        only["fastmcp_version"] = version
        return {"peer": summary, "peer_oauth_only": only}
    finally:
        proc.stop()
        stack.others.remove(proc)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    log_dir = options.output.parent / "logs"
    print(
        f"mcp-oauth-proxy benchmark: {options.workers} workers, "
        f"{options.clients} flow clients, {options.concurrency} loop clients, "
        f"{'quick' if options.quick else 'full'} run; logs in {log_dir}",
        flush=True,
    )
    stack = start_stack(options, log_dir)
    try:
        results = asyncio.run(measure(stack, options))
    except BaseException:
        traceback.print_exc()
        for proc in stack.all():
            if proc.popen.poll() is not None:
                print(f"--- {proc.name} exited; log tail:\n{proc.tail()}")
        stack.stop()
        return 1
    stack.stop()
    document = {
        "meta": {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "quick": options.quick,
            "options": {k: str(v) for k, v in options.__dict__.items()},
        },
        **results,
    }
    document["targets"] = report.targets(document)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(document, indent=2))
    print(report.table(document))
    print(f"\nJSON: {options.output}")
    return 0
