"""Logs under gunicorn (2 workers), as deployed, with ACCESS_LOG=1 at DEBUG:
the access line, the app's lines and the audit trail of a whole SDK flow hold
none of the codes, states, tokens or consent secrets that flow used."""

from __future__ import annotations

import functools
import json
import re
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import anyio

from .conftest import StackFactory
from .mcp_oauth_client import FlowReport
from .mcp_oauth_client import connect_and_call

USER = "logs-e2e@example.com"
#: The whole log, not a tail: a DEBUG run writes a lot.
ALL = 50_000_000


def _secrets(report: FlowReport) -> dict[str, str]:
    login = report.logins[0]
    found = {
        "client code": login.params["code"],
        "client state": login.params["state"],
        "access token": report.tokens_before.access_token,
    }
    if report.tokens_before.refresh_token:
        found["refresh token"] = report.tokens_before.refresh_token
    if report.tokens_after is not None:
        found["rotated access token"] = report.tokens_after.access_token
        if report.tokens_after.refresh_token:
            found["rotated refresh token"] = report.tokens_after.refresh_token
    assert login.consent_form is not None
    found["csrf_token"] = login.consent_form.hidden["csrf_token"]
    found["consent blob"] = login.consent_form.hidden["request"]
    for hop in login.hops:
        query = parse_qs(urlsplit(hop.url).query)
        path = urlsplit(hop.url).path
        if path == "/oauth2/callback":
            found["upstream code"] = query["code"][0]
            found["upstream state"] = query["state"][0]
    return found


def test_a_flow_under_gunicorn_logs_no_secret(make_e2e_stack: StackFactory) -> None:
    stack = make_e2e_stack(
        proxy_overrides={"ACCESS_LOG": "1", "LOG_LEVEL": "debug"}, workers=2
    )
    report: FlowReport = anyio.run(
        functools.partial(connect_and_call, stack.mcp_url, USER)
    )
    assert report.tokens_after is not None
    output = stack.processes["proxy"].output(ALL)

    values = _secrets(report)
    assert {"upstream code", "upstream state", "refresh token"} <= set(values)
    for what, value in values.items():
        assert len(value) >= 8, what
        assert value not in output, f"the {what} reached the proxy's output"

    # The access line came through our redaction, with the request id.
    callback = [line for line in output.splitlines() if "/oauth2/callback?" in line]
    assert callback
    assert all("code=[redacted]" in line for line in callback), callback
    assert all("state=[redacted]" in line for line in callback), callback
    assert re.search(r"INFO \[[0-9a-f]{16}\] gunicorn\.access: ", callback[0])

    # The audit trail: one JSON object per line, the flow's steps in it.
    audit = [
        json.loads(line)
        for line in output.splitlines()
        if line.startswith("{") and '"logger":"proxy.audit"' in line
    ]
    names = {line["event"] for line in audit}
    assert {
        "client.registered",
        "consent.shown",
        "consent.approved",
        "login.succeeded",
        "grant.created",
        "code.redeemed",
        "refresh.rotated",
    } <= names
    assert all(line["request_id"] and line["ip"] for line in audit)
    # The app's own INFO lines reach the console now (they were dropped).
    assert "proxy.grants.authorization_code: grant " in output
