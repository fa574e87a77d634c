"""The benchmark's phases, one module each, in the order bench/cli.py runs them.

1. redis_per_step: Redis work of each flow step, measured alone (per client kind)
2. loops: per-endpoint loops, proxy vs floor
3. flows: complete flows through the proxy (with and without the MCP call;
   OAuth-only as a DCR, a CIMD and a private_key_jwt client)
4. gateway: the gateway's added latency and SSE streaming
5. memory: Redis memory per client and per grant
6. peer: the same complete flows against FastMCP
7. profile: py-spy on the proxy workers (--profile)
"""
