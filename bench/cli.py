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
import sys
import time
import traceback
import typing as t
from pathlib import Path

from . import report
from .options import Options
from .phases.flows import observability_flows_phase
from .phases.flows import proxy_flows_phase
from .phases.gateway import gateway_phase
from .phases.loops import loops_phase
from .phases.memory import memory_phase
from .phases.peer import peer_phase
from .phases.profile import profile_phase
from .phases.redis_per_step import probe_kinds_phase
from .phases.redis_per_step import probe_phase
from .phases.redis_per_step import warm_up
from .redis_probe import RedisProbe
from .stack import UPSTREAMS
from .stack import Stack
from .stack import start_stack

RESULTS = Path(__file__).resolve().parent / "results"


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


async def measure(stack: Stack, options: Options) -> dict[str, t.Any]:
    """Every phase in turn (bench/phases/), each result under its own key."""
    results: dict[str, t.Any] = {}
    probe = RedisProbe(stack.env["REDIS_URL"])
    print("· warm-up and per-step Redis accounting (sequential flows)", flush=True)
    await warm_up(stack)
    results["redis_per_step"] = await probe_phase(stack, probe, options.probe_flows)
    results["redis_per_step_by_kind"] = await probe_kinds_phase(
        stack, probe, options.probe_flows
    )
    print("· per-endpoint loops: proxy vs floor", flush=True)
    results["endpoints"] = await loops_phase(stack, probe, options)
    print("· complete flows: proxy", flush=True)
    results["flows"], sample = await proxy_flows_phase(stack, options)
    print("· complete flows: observability on and off, in turns", flush=True)
    results["flows"]["observability"] = await observability_flows_phase(stack, options)
    print("· gateway added latency and SSE streaming", flush=True)
    results["gateway"] = await gateway_phase(
        stack, sample.refreshed["access_token"], options
    )
    print(f"· Redis memory: {options.memory_count} clients, grants", flush=True)
    results["memory"] = await memory_phase(stack, probe, options, sample.refreshed)
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
    # Over the whole run: the proxy's shared cache should let one fetch through.
    results["document_fetches"] = stack.documents.fetches()
    return results


def document(options: Options, results: dict[str, t.Any]) -> dict[str, t.Any]:
    """The results with the run's metadata and the target verdicts."""
    doc = {
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
    doc["targets"] = report.targets(doc)
    return doc


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
            if not proc.alive():
                print(f"--- {proc.name} exited; log tail:\n{proc.output(4000)}")
        stack.stop()
        return 1
    stack.stop()
    doc = document(options, results)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(doc, indent=2))
    print(report.table(doc))
    print(f"\nJSON: {options.output}")
    return 0
