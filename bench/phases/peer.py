"""Phase 6: the same complete flows against the peer, FastMCP's OIDCProxy.

Same clients, same upstream, with and without the MCP call. FastMCP serves MCP
in-process, so the OAuth-only ratio is the like-for-like one.
"""

from __future__ import annotations

import dataclasses
import typing as t

from support.processes import ManagedProcess

from .. import peer
from ..load import FlowError
from ..load import Recorder
from ..load import Target
from ..load import complete_flow
from ..load import new_session
from ..options import Options
from ..stack import Stack
from .flows import flows_phase


async def peer_phase(stack: Stack, options: Options) -> dict[str, t.Any]:
    try:
        version = peer.ensure_venv(stack.log_dir)
        proc = peer.start(stack.idp.url, stack.log_dir)
    except peer.PeerUnavailableError as exc:
        print(f"  peer unavailable: {exc}", flush=True)
        return {"peer": {"skipped": str(exc)}}
    stack.others.append(proc)
    try:
        target = await _peer_target(proc)
        named = {"peer": proc, "upstream_idp": stack.idp}
        summary, _ = await flows_phase(target, options, named)
        summary["fastmcp_version"] = version
        summary["with_mcp_call"] = target.mcp_url is not None
        if summary["requests"] == 0:
            summary["log_tail"] = proc.output(1500)
        oauth_only = dataclasses.replace(target, mcp_url=None)
        print("· complete flows without the MCP call: peer", flush=True)
        only, _ = await flows_phase(oauth_only, options, named)
        only["fastmcp_version"] = version
        return {"peer": summary, "peer_oauth_only": only}
    finally:
        proc.stop()
        stack.others.remove(proc)


async def _peer_target(proc: ManagedProcess) -> Target:
    """FastMCP's paths; one flow first: if its MCP step fails, OAuth steps only."""
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
    async with new_session(4) as session:
        try:
            await complete_flow(session, Recorder(), target, "warm", with_mcp=True)
        except (FlowError, KeyError, ValueError) as exc:
            note = f"MCP call through the peer failed ({exc}); OAuth steps only"
            print(f"  {note}", flush=True)
            target.mcp_url = None
    return target
