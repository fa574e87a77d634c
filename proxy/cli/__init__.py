"""Command-line entry points: the demo runner, `check`, the demo MCP server."""
