"""A small MCP server without authentication, to put behind the gateway.

Run by `python -m proxy` when nothing is configured, and by the tests as the
gateway's backend. It speaks both MCP revisions (the SDK routes on
`MCP-Protocol-Version`): 2025-11-25 sessions, GET stream and DELETE, and
2026-07-28 stateless POSTs, `server/discover` and `subscriptions/listen`
streams, which `add_note` feeds with a tools list-changed event.

It trusts the identity headers the gateway sets, which is only safe because
it listens on loopback and the gateway strips any such header a client sends.

    python -m proxy.cli.demo_mcp_server --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import typing as t

from mcp.server.mcpserver import Context
from mcp.server.mcpserver import MCPServer
from pydantic import Field

server = MCPServer("mcp-oauth-proxy demo")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def whoami(ctx: Context) -> dict[str, str | None]:
    """The user the gateway vouched for, and whether a bearer token leaked through.

    ``identity`` is the gateway's signed identity JWT (MCP_BACKEND_IDENTITY=jwt
    or both), returned unverified so a test can verify it as a backend would.
    """
    headers = {k.lower(): v for k, v in (ctx.headers or {}).items()}
    return {
        "user": headers.get("x-forwarded-user"),
        "email": headers.get("x-forwarded-email"),
        "authorization": headers.get("authorization"),
        "identity": headers.get("x-mcp-identity"),
    }


@server.tool()
async def count(ctx: Context, to: int = 5, delay_seconds: float = 0.2) -> str:
    """Count slowly, sending a progress notification per step (an SSE stream)."""
    for step in range(1, to + 1):
        await ctx.report_progress(step, to, f"step {step}")
        await asyncio.sleep(delay_seconds)
    return f"counted to {to}"


@server.tool()
def region_echo(
    region: t.Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})],
    ctx: Context,
) -> dict[str, str | None]:
    """Echo an argument a 2026-07-28 client mirrors in `Mcp-Param-Region`."""
    headers = {k.lower(): v for k, v in (ctx.headers or {}).items()}
    return {"region": region, "header": headers.get("mcp-param-region")}


@server.tool()
async def add_note(ctx: Context, text: str = "note") -> str:
    """Tell `subscriptions/listen` streams that the tools list changed."""
    await ctx.notify_tools_changed()
    return f"noted: {text}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m proxy.cli.demo_mcp_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    server.run("streamable-http", host=args.host, port=args.port)


if __name__ == "__main__":
    main()
