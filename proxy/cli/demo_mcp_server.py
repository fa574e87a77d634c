"""A small MCP server without authentication, to put behind the gateway.

Run by `python -m proxy` when nothing is configured, and by the tests as the
gateway's backend. It trusts the identity headers the gateway sets, which is
only safe because it listens on loopback and the gateway strips any such
header a client sends.

    python -m proxy.cli.demo_mcp_server --port 8001
"""

from __future__ import annotations

import argparse
import asyncio

from mcp.server.mcpserver import Context
from mcp.server.mcpserver import MCPServer

server = MCPServer("mcp-oauth-proxy demo")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def whoami(ctx: Context) -> dict[str, str | None]:
    """The user the gateway vouched for, and whether a bearer token leaked through."""
    headers = {k.lower(): v for k, v in (ctx.headers or {}).items()}
    return {
        "user": headers.get("x-forwarded-user"),
        "email": headers.get("x-forwarded-email"),
        "authorization": headers.get("authorization"),
    }


@server.tool()
async def count(ctx: Context, to: int = 5, delay_seconds: float = 0.2) -> str:
    """Count slowly, sending a progress notification per step (an SSE stream)."""
    for step in range(1, to + 1):
        await ctx.report_progress(step, to, f"step {step}")
        await asyncio.sleep(delay_seconds)
    return f"counted to {to}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m proxy.cli.demo_mcp_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    server.run("streamable-http", host=args.host, port=args.port)


if __name__ == "__main__":
    main()
