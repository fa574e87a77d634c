"""Phase 7 (--profile): py-spy on every proxy worker during complete flows, the
token, refresh, authorize and register loops, and gateway `tools/call`s.

`--gil` keeps only samples of the thread holding the GIL (Python CPU time);
the raw collapsed stacks are kept in `<output dir>/profile/`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import typing as t
from pathlib import Path

from ..load import MCP_ACCEPT
from ..load import MCP_ECHO_CALL
from ..load import Recorder
from ..load import call
from ..load import complete_flow
from ..load import mcp_open
from ..load import new_session
from ..load import run_loop
from ..options import Options
from ..profiler import collect
from ..profiler import start_pyspy
from ..profiler import summarise_pyspy
from ..stack import Stack
from .flows import flows_phase
from .loops import LoopSetup

PROFILED_LOOPS = ("token_code", "token_refresh", "authorize", "register")


async def profile_phase(stack: Stack, options: Options) -> dict[str, t.Any]:
    out_dir = options.output.parent / "profile"
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*-pyspy-*.txt"):
        old.unlink()
    results: dict[str, t.Any] = {}
    results["flows"], errors = await _profile_flows(stack, options, out_dir)
    if errors:
        results["errors"] = errors
    for name in PROFILED_LOOPS:
        results[name] = await _profile_loop(stack, options, out_dir, name)
    results["gateway"] = await _profile_gateway(stack, out_dir)
    results["files"] = str(out_dir)
    return results


async def _profile_flows(
    stack: Stack, options: Options, out_dir: Path
) -> tuple[dict[str, t.Any], list[str]]:
    """Complete flows: every endpoint, mixed."""
    seconds = max(4.0, options.flow_seconds / 2)
    spies = start_pyspy(stack.proxy.worker_pids(), seconds, out_dir)
    await asyncio.sleep(1.0)
    profile_options = dataclasses.replace(options, flow_seconds=seconds)
    await flows_phase(stack.proxy_target(), profile_options, {})
    files, errors = collect(spies, "flows")
    return summarise_pyspy(files), errors


async def _profile_loop(
    stack: Stack, options: Options, out_dir: Path, name: str
) -> dict[str, t.Any]:
    """One per-endpoint loop against the proxy."""
    async with new_session(options.concurrency) as session:
        rec = Recorder()
        setup = LoopSetup("proxy", stack.proxy.url, session, rec, stack, options)
        step = await setup.build(name)  # before py-spy: fixtures take a while
        spies = start_pyspy(stack.proxy.worker_pids(), 4, out_dir)
        await asyncio.sleep(0.5)
        await run_loop(name, rec, step, concurrency=options.concurrency, duration=5)
    files, _ = collect(spies, name)
    return summarise_pyspy(files)


async def _profile_gateway(stack: Stack, out_dir: Path) -> dict[str, t.Any]:
    """tools/call through the proxy to the MCP backend."""
    async with new_session(8) as session:
        flow = await complete_flow(
            session, Recorder(), stack.proxy_target(), "profile", with_mcp=False
        )
        url = stack.proxy.url + stack.settings.mcp_path
        auth = {"Accept": MCP_ACCEPT}
        auth["Authorization"] = f"Bearer {flow.refreshed['access_token']}"
        headers = await mcp_open(session, Recorder(), url, auth)
        spies = start_pyspy(stack.proxy.worker_pids(), 4, out_dir)
        await asyncio.sleep(1.0)
        rec = Recorder()

        async def gateway(_: int) -> bool:
            await call(
                session, rec, "g", "POST", url, json=MCP_ECHO_CALL, headers=headers
            )
            return True

        await run_loop("g", rec, gateway, concurrency=4, duration=5)
        files, _ = collect(spies, "gateway")
    return summarise_pyspy(files)
