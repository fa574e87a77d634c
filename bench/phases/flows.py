"""Phase 3: complete flows, concurrent users each running register > authorize >
consent > upstream login > callback > token > refresh [> MCP calls].

Then the OAuth steps alone for every kind of client: DCR (as above), a CIMD
client (no register step; its document read from the proxy's cache) and a
private_key_jwt client (a CIMD document with a jwks_uri; an RS256 assertion
on every token request), so the three are comparable step by step.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import typing as t

import aiohttp

from proxy.observability.trace import TRACE_FLUSH_SECONDS
from support.processes import ManagedProcess

from ..balance import BALANCE_ATTEMPTS
from ..balance import is_even
from ..balance import worker_split
from ..cpu import CpuMeter
from ..load import DCR
from ..load import FlowResult
from ..load import Recorder
from ..load import Target
from ..load import new_session
from ..load import run_flows
from ..options import Options
from ..stack import Stack
from ..stack import start_issuer
from ..stats import stats_summary
from ..stats import step_latencies


async def flows_phase(
    target: Target,
    options: Options,
    named: dict[str, ManagedProcess],
    session: aiohttp.ClientSession | None = None,
) -> tuple[dict[str, t.Any], list[FlowResult]]:
    """`--clients` users for `--flow-seconds`; CPU shared among the `named` servers.

    In a new session unless given one (which is left open).
    """
    rec = Recorder()
    opened = (
        _flow_session(options) if session is None else contextlib.nullcontext(session)
    )
    async with opened as session:
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


def _flow_session(options: Options) -> aiohttp.ClientSession:
    return new_session(options.clients * 4)


#: How long the flows run that open a turn's connections before its split is read.
BALANCE_FLOW_SECONDS = 0.3


async def _balanced_session(
    target: Target, server: ManagedProcess, options: Options
) -> tuple[aiohttp.ClientSession, dict[str, t.Any]]:
    """A session whose connections to `server` are spread evenly over its
    workers (``bench/balance.py``): a turn's flows/s is then the server's,
    not the luck of its split. Also returns the split, the tries it took and
    the flows they completed (their CPU is the server's too)."""
    completed = 0
    for attempt in range(1, BALANCE_ATTEMPTS + 1):
        session = _flow_session(options)
        try:
            stats, _ = await run_flows(
                session,
                Recorder(),
                target,
                clients=options.clients,
                duration=BALANCE_FLOW_SECONDS,
                with_mcp=False,
            )
            completed += stats.completed
            split = worker_split(server)
        except BaseException:
            await session.close()
            raise
        if is_even(split, options.clients) or attempt == BALANCE_ATTEMPTS:
            return session, {"split": split, "passes": attempt, "flows": completed}
        await session.close()
    raise AssertionError("unreachable: the last attempt returns")


async def proxy_flows_phase(
    stack: Stack, options: Options
) -> tuple[dict[str, t.Any], FlowResult]:
    """The proxy's flows with the MCP call, then the OAuth steps alone (as the peer
    reference figure was measured); returns them and a sample flow's result."""
    named = {
        "proxy": stack.proxy,
        "upstream_idp": stack.idp,
        "redis": stack.redis,
        "mcp_backend": stack.backend,
    }
    target = stack.proxy_target()
    flows, flow_results = await flows_phase(target, options, named)
    print("· complete flows without the MCP call: proxy", flush=True)
    oauth_only = dataclasses.replace(target, mcp_url=None)
    only, _ = await flows_phase(oauth_only, options, named)
    if not flow_results:
        raise RuntimeError(f"no complete flow succeeded: {flows.get('error_sample')}")
    out = {"proxy": flows, "proxy_oauth_only": only}
    for kind, client in stack.flow_clients().items():
        if client.client_id is None:
            continue  # DCR: proxy_oauth_only
        print(f"· complete flows without the MCP call: proxy, {kind}", flush=True)
        before = stack.documents.fetches()[kind]
        row, _ = await flows_phase(
            dataclasses.replace(oauth_only, client=client), options, named
        )
        after = stack.documents.fetches()[kind]
        # A warm cache: the documents should not be fetched again here.
        row["document_fetches"] = {p: after[p] - before[p] for p in after}
        out[f"proxy_{kind}_oauth_only"] = row
    return out, flow_results[-1]


#: Turns each server takes in `observability_flows_phase`: the machine's
#: drift lands on both sides, and a turn's swing (a few % to 30 % on this
#: VM, even on balanced connections) averages out over many.
OBSERVABILITY_SLICES = 8


async def observability_flows_phase(stack: Stack, options: Options) -> dict[str, t.Any]:
    """Complete OAuth flows (DCR, no MCP call) against two new proxies alike
    but for observability, on and off (`start_issuer`), `--flow-seconds`
    each, taking turns in slices so that the machine's drift lands on both,
    and going first in every other pair so that neither always follows the
    other: what audit, traces and metrics cost a whole flow. Each turn runs
    on connections spread evenly over the server's workers
    (`_balanced_session`): a turn opens new keep-alive connections, and a
    gevent worker that wakes first takes a burst of them (the loops saw 16
    land 16/0, 13/3 or 8/8). Before turns were balanced, one run read 15 %
    slower (turns +3, +26, +30, +33, +22, +16, -7, -8 %) while its CPU per
    flow moved 8 %, where the runs before it read 1 and 2.4 %.

    Two new proxies, not the bench's own against a new quiet one: the bench's
    own has served every earlier phase (its heap, caches and metric files),
    which the other would not have.
    """
    servers: dict[str, ManagedProcess] = {}
    try:
        targets: dict[str, Target] = {}
        for name, quiet in (("on", False), ("off", True)):
            server, settings = start_issuer(
                stack.env, options.workers, stack.log_dir, quiet=quiet
            )
            servers[name] = server
            targets[name] = Target(
                kind="proxy",
                base=server.url,
                resource=settings.resource,
                scope="mcp",
                mcp_url=None,
                client=DCR,
            )
        warm_up = dataclasses.replace(options, flow_seconds=1.0)
        sliced = dataclasses.replace(
            options, flow_seconds=options.flow_seconds / OBSERVABILITY_SLICES
        )
        for target in targets.values():
            await flows_phase(target, warm_up, {})
        flows = dict.fromkeys(targets, 0)
        failed = dict.fromkeys(targets, 0)
        seconds = dict.fromkeys(targets, 0.0)
        # Flows the CPU was spent on: the measured ones and the balancing ones.
        cpu_flows = dict.fromkeys(targets, 0)
        splits: list[dict[str, t.Any]] = []
        # Over all the turns, and a trace flush past the last: the proxy
        # flushes a turn's trace steps up to a second after it ends.
        meters = {
            name: CpuMeter({"server": server}) for name, server in servers.items()
        }
        turns: list[dict[str, float]] = []
        for turn in range(OBSERVABILITY_SLICES):
            order = list(targets) if turn % 2 == 0 else list(reversed(targets))
            rates: dict[str, float] = {}
            turn_splits: dict[str, t.Any] = {}
            for name in order:
                session, turn_splits[name] = await _balanced_session(
                    targets[name], servers[name], options
                )
                async with session:
                    row, _ = await flows_phase(targets[name], sliced, {}, session)
                cpu_flows[name] += row["requests"] + turn_splits[name]["flows"]
                flows[name] += row["requests"]
                failed[name] += row["errors"]
                seconds[name] += row["seconds"]
                rates[name] = row["requests"] / row["seconds"] if row["seconds"] else 0
            turns.append(rates)
            splits.append(turn_splits)
        await asyncio.sleep(TRACE_FLUSH_SECONDS + 0.5)
        cpu = {name: meter.stop()["server"] for name, meter in meters.items()}
    finally:
        for server in servers.values():
            server.stop()
    rate = {name: round(flows[name] / seconds[name], 1) for name in targets}
    per_turn = [1 - r["on"] / r["off"] if r["off"] else None for r in turns]
    # The proxy's own CPU per flow, the balancing flows included: unlike
    # flows/s, it does not depend on how a turn's connections fell.
    cpu_ms = {
        name: round(1000 * cpu[name] / cpu_flows[name], 3) if cpu_flows[name] else None
        for name in targets
    }
    sides = [side["split"] for turn in splits for side in turn.values()]
    # Without ss (or with one worker) a split is unknown, not even.
    unknown = sum(1 for split in sides if split is None)
    uneven = sum(
        1
        for split in sides
        if split is not None and not is_even(split, options.clients)
    )
    return {
        "flows_per_second_on": rate["on"],
        "flows_per_second_off": rate["off"],
        "slower": round(1 - rate["on"] / rate["off"], 3) if rate["off"] else None,
        "slower_per_turn": [None if x is None else round(x, 3) for x in per_turn],
        "server_cpu_ms_per_flow_on": cpu_ms["on"],
        "server_cpu_ms_per_flow_off": cpu_ms["off"],
        "cpu_more": (
            round(cpu_ms["on"] / cpu_ms["off"] - 1, 3)
            if cpu_ms["on"] and cpu_ms["off"]
            else None
        ),
        "flows": flows,
        "failed": failed,
        "slices": OBSERVABILITY_SLICES,
        # Connections per worker in each turn, and the tries it took.
        "worker_splits": splits,
        "uneven_turns": uneven,
        "unknown_splits": unknown,
    }
