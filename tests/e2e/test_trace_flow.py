"""The flow trace under gunicorn (2 gevent workers): `python -m proxy trace` after a
real SDK flow shows every step, the token ones written by the background flusher."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time

import anyio

from .mcp_oauth_client import FlowReport
from .mcp_oauth_client import connect_and_call
from .stack import Stack

USER = "trace-e2e@example.com"


def _trace_cli(stack: Stack, *argv: str) -> str:
    env = {**os.environ, **stack.proxy_env}
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "proxy", "trace", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout


def test_cli_shows_the_sdk_flow_from_authorize_to_refresh(e2e_stack: Stack) -> None:
    report: FlowReport = anyio.run(
        functools.partial(connect_and_call, e2e_stack.mcp_url, USER)
    )
    client = report.storage.client_info
    assert client is not None
    expected = [
        "authorize.received",
        "consent.shown",
        "consent.approved",
        "upstream.redirected",
        "callback.received",
        "login.succeeded",
        "grant.created",
        "code.redeemed",
        "refresh.rotated",
    ]
    deadline = time.monotonic() + 15
    printed = ""
    while time.monotonic() < deadline:
        printed = _trace_cli(e2e_stack, "--client", str(client.client_id))
        if all(step in printed for step in expected):
            break
        time.sleep(0.5)
    for step in expected:
        assert step in printed, printed
    assert "=> last step" in printed, printed
    assert USER in _trace_cli(e2e_stack, "--user", USER)
