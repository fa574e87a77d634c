"""`python -m proxy trace` reads REDIS_MODE and the rest from the environment:
traces written through one client are printed from Sentinel and a cluster."""

from __future__ import annotations

import io
import json
import typing as t

import pytest

from proxy.cli import trace as trace_cli
from proxy.store import Store
from proxy.store import connection
from proxy.store.traces import TraceEntry

from ..conftest import cluster_options
from ..conftest import sentinel_options
from .servers import SENTINEL_MASTER

TRACES = [f"{n:016x}" for n in range(1, 4)]


@pytest.mark.parametrize("mode", ["sentinel", "cluster"])
def test_the_trace_cli_prints_traces_from_the_topology(
    request: pytest.FixtureRequest, mode: str
) -> None:
    servers: t.Any = request.getfixturevalue(f"{mode}_redis")
    if mode == "sentinel":
        options = sentinel_options(servers)
        host, port = servers.sentinels[0]
        environ = {
            "REDIS_MODE": "sentinel",
            "REDIS_SENTINELS": f"{host}:{port}",
            "REDIS_SENTINEL_MASTER": SENTINEL_MASTER,
        }
    else:
        options = cluster_options(servers)
        environ = {"REDIS_MODE": "cluster", "REDIS_URL": servers.url}
    environ["REDIS_KEY_PREFIX"] = prefix = f"cli-{mode}:"
    with connection.connect(options) as client:
        entries = [
            TraceEntry(i, json.dumps({"at": 1, "step": "authorize", "outcome": "ok"}))
            for i in TRACES
        ]
        Store(client, prefix).traces.write(entries, ttl=600, now_ms=1_000)
        out = io.StringIO()
        try:
            assert trace_cli.main(["--last", "3"], environ, out) == 0
        finally:
            client.flushdb()
    assert all(trace_id in out.getvalue() for trace_id in TRACES)
