"""End-to-end tests: real processes (redis-server, gunicorn, IdP, MCP server)."""
