"""Phase 1: the Redis work of each HTTP step of a complete flow, measured alone.

Sequential flows with a Redis snapshot after every step, nothing else running:
first the DCR client's complete flows (with the MCP call), then the OAuth steps
of every other kind of client (CIMD, private_key_jwt), whose MCP calls are the
same as DCR's.
"""

from __future__ import annotations

import typing as t
from collections import defaultdict

import aiohttp

from ..load import FlowClient
from ..load import Recorder
from ..load import call
from ..load import complete_flow
from ..load import new_session
from ..load import run_flows
from ..redis_probe import RedisProbe
from ..redis_probe import Snapshot
from ..stack import Stack


class ProbeRecorder(Recorder):
    """Attributes each step's Redis work to it (sequential flows only)."""

    def __init__(self, probe: RedisProbe) -> None:
        super().__init__()
        self.probe = probe
        self.last = probe.snap()
        self.steps: dict[str, list[Snapshot]] = defaultdict(list)

    def reset(self) -> None:
        self.last = self.probe.snap()

    def add(self, name: str, seconds: float) -> None:
        super().add(name, seconds)
        now = self.probe.snap()
        self.steps[name].append(self.probe.delta(self.last, now))
        self.last = self.probe.snap()


async def warm_up(stack: Stack) -> None:
    """A few complete flows of each kind of client first: connections open,
    workers' caches filled, the client documents fetched (their one fetch)."""
    async with new_session(4) as session:
        for client in stack.flow_clients().values():
            for _ in range(2):
                stats, _ = await run_flows(
                    session,
                    Recorder(),
                    stack.proxy_target(client),
                    clients=2,
                    duration=0.1,
                    with_mcp=True,
                    max_flows=2,
                )
                if not stats.completed:
                    raise RuntimeError(f"warm-up: no {client.kind} flow completed")


async def probe_phase(stack: Stack, probe: RedisProbe, flows: int) -> dict[str, t.Any]:
    """Sequential flows with a Redis snapshot after every step: exact per-step work."""
    rec = ProbeRecorder(probe)
    target = stack.proxy_target()
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
    return {name: _step_summary(deltas) for name, deltas in rec.steps.items()}


async def probe_kinds_phase(
    stack: Stack, probe: RedisProbe, flows: int
) -> dict[str, t.Any]:
    """Per kind of client other than DCR: sequential OAuth-only flows, the Redis
    work of each step measured alone (the same accounting as `probe_phase`)."""
    out: dict[str, t.Any] = {}
    async with new_session(2) as session:
        for kind, client in stack.flow_clients().items():
            if client.client_id is not None:
                out[kind] = await _probe_oauth_steps(
                    session, stack, probe, client, flows
                )
    return out


async def _probe_oauth_steps(
    session: aiohttp.ClientSession,
    stack: Stack,
    probe: RedisProbe,
    client: FlowClient,
    flows: int,
) -> dict[str, t.Any]:
    rec = ProbeRecorder(probe)
    target = stack.proxy_target(client)
    for i in range(flows):
        rec.reset()
        await complete_flow(session, rec, target, f"probe{i}", with_mcp=False)
    return {name: _step_summary(deltas) for name, deltas in rec.steps.items()}


def _step_summary(deltas: list[Snapshot]) -> dict[str, t.Any]:
    """The median is the steady state; the mean and max also show one-time work
    (a new pooled connection's HELLO, a worker's first key load)."""
    reads = [d[0] for d in deltas]
    commands: dict[str, int] = defaultdict(int)
    for _, cmds in deltas:
        for k, v in cmds.items():
            commands[k] += v
    return {
        "samples": len(deltas),
        "round_trips": sorted(reads)[len(reads) // 2],
        "round_trips_mean": round(sum(reads) / len(reads), 2),
        "round_trips_max": max(reads),
        "commands": sum(commands.values()) / len(deltas),
        "by_command": {
            k: round(v / len(deltas), 3) for k, v in sorted(commands.items())
        },
    }
