"""/metrics under gunicorn with two workers: the counters of both add up.

Real processes: redis-server, oidc-provider-mock, the proxy (2 gevent workers)
and the SDK-built resource server. The multiprocess directory is set here so
the test can also read each worker's own file and prove both served requests.
"""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path

import anyio
import requests
from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.mmap_dict import mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from .conftest import StackFactory
from .mcp_oauth_client import connect_and_call

TOKEN = "e2e-metrics-token-" + "k" * 32
USER = "metrics-e2e@example.com"
HEALTHZ = {"endpoint": "health.show_liveness", "method": "GET", "status": "200"}
REQUESTS = "mcp_oauth_proxy_http_requests_total"


def sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample_name, _, number = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', sample_name))
        if sample_name.split("{")[0] == name and all(
            found.get(k) == v for k, v in labels.items()
        ):
            total += float(number)
    return total


def scrape(proxy_url: str) -> str:
    response = requests.get(
        f"{proxy_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.text


def per_worker(directory: Path, pid: int, scratch: Path) -> str:
    """What one worker's own counter file holds, rendered alone."""
    own = directory / f"counter_{pid}.db"
    if not own.exists():  # this worker has counted nothing yet
        return ""
    alone = scratch / str(pid)
    alone.mkdir(parents=True)
    shutil.copy(directory / f"counter_{pid}.db", alone)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
    return generate_latest(registry).decode()


def test_metrics_add_up_across_two_workers(
    make_e2e_stack: StackFactory, tmp_path: Path
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    # A file from an earlier run: the master must clear it at start.
    stale = MmapedDict(str(directory / "counter_999999.db"))
    stale.write_value(
        mmap_key("stale_marker", "stale_marker_total", [], [], "from a past run"),
        1000.0,
        0.0,
    )
    stale.close()
    stack = make_e2e_stack(
        proxy_overrides={
            "METRICS_TOKEN": TOKEN,
            "PROMETHEUS_MULTIPROC_DIR": str(directory),
        },
        workers=2,
    )
    proxy = stack.processes["proxy"]
    workers = proxy.worker_pids()
    assert len(workers) == 2

    # Not for anyone without the token: the same 404 as an unknown path.
    for headers in ({}, {"Authorization": "Bearer " + "w" * 40}):
        response = requests.get(
            f"{stack.proxy_url}/metrics", headers=headers, timeout=10
        )
        assert response.status_code == 404
        assert "mcp_oauth_proxy" not in response.text

    # A whole flow: discovery, registration, login, token, tool calls, refresh.
    report = anyio.run(functools.partial(connect_and_call, stack.mcp_url, USER))

    # Requests on fresh connections until both workers have served some.
    sent = 0
    while sent < 400:
        for _ in range(20):
            response = requests.get(
                f"{stack.proxy_url}/healthz",
                headers={"Connection": "close"},
                timeout=10,
            )
            assert response.status_code == 200
            sent += 1
        served = [
            sample(
                per_worker(directory, pid, tmp_path / f"s{sent}"), REQUESTS, **HEALTHZ
            )
            for pid in workers
        ]
        if all(served):
            break
    print(f"\nhealthz per worker: {dict(zip(workers, served, strict=True))}")
    assert all(served), f"one worker served every request: {served}"

    text = scrape(stack.proxy_url)
    # The sum over both workers is exactly what was sent, and each added its part.
    assert sample(text, REQUESTS, **HEALTHZ) == sent == sum(served)
    assert "stale_marker" not in text
    assert not (directory / "counter_999999.db").exists()

    # The flow shows up by route name and at the IdP's token endpoint.
    assert sample(text, REQUESTS, endpoint="token.issue_token", status="200") >= 2
    assert (
        sample(text, REQUESTS, endpoint="register.register_client", status="201") == 1
    )
    assert (
        sample(
            text,
            "mcp_oauth_proxy_upstream_requests_total",
            endpoint="token",
            outcome="ok",
        )
        >= 1
    )
    assert (
        sample(
            text,
            "mcp_oauth_proxy_upstream_request_duration_seconds_count",
            endpoint="token",
        )
        >= 1
    )

    # Nothing the flow produced is a label.
    tokens = [report.tokens_before, report.tokens_after]
    secrets = [token.access_token for token in tokens if token] + [
        token.refresh_token for token in tokens if token and token.refresh_token
    ]
    client = report.storage.client_info
    assert client is not None
    secrets.append(client.client_id)
    secrets.append(USER)
    for secret in secrets:
        assert secret not in text
