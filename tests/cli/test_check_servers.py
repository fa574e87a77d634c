"""`python -m proxy check` with MCP_SERVERS: each server listed, backends tried."""

from __future__ import annotations

import json
import socket
import typing as t

from proxy.cli import check
from proxy.config.settings import Settings

from .test_check import PUBLIC

BASE = {
    "PUBLIC_URL": PUBLIC,
    "OAUTH_ISSUER": "https://idp.example.com",
    "OAUTH_CLIENT_ID": "proxy-client",
    "OAUTH_CLIENT_SECRET": "proxy-secret",
}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_each_server_is_listed_and_a_dead_backend_warns(
    httpserver: t.Any, tmp_path: t.Any
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": "allow"}))
    servers = [
        {
            "path": "/github/mcp",
            "backend": httpserver.url_for("/mcp"),
            "scopes": ["github"],
            "tool_policy": str(policy),
        },
        {"path": "/crm/mcp", "backend": f"http://127.0.0.1:{_closed_port()}/mcp"},
    ]
    settings = Settings.from_env({**BASE, "MCP_SERVERS": json.dumps(servers)})
    report = check.Report()
    check._check_servers(settings, report)
    listed = [f.message for f in report.findings if f.code == "mcp_server"]
    assert len(listed) == 2
    assert listed[0].startswith("/github/mcp -> " + httpserver.url_for("/mcp"))
    assert f"audience {PUBLIC}/github/mcp" in listed[0]
    assert f"tool policy {policy}" in listed[0]
    assert "scopes mcp" in listed[1]
    assert "tool policy none" in listed[1]
    warned = [f.message for f in report.findings if f.code == "backend_unreachable"]
    assert len(warned) == 1
    assert warned[0].startswith("/crm/mcp:")


def test_the_instructions_name_every_server_url() -> None:
    servers = [
        {"path": "/github/mcp", "backend": "http://10.0.0.1/mcp"},
        {"path": "/crm/mcp", "backend": "http://10.0.0.2/mcp"},
    ]
    settings = Settings.from_env({**BASE, "MCP_SERVERS": json.dumps(servers)})
    text = check.instructions(settings)
    assert f"{PUBLIC}/github/mcp" in text
    assert f"{PUBLIC}/crm/mcp" in text


def test_each_servers_tool_rules_are_reported_under_its_path(
    tmp_path: t.Any,
) -> None:
    servers = [
        {
            "path": "/github/mcp",
            "backend": "http://10.0.0.1/mcp",
            "tool_scopes": {"tools": {"delete_*": "github:write"}},
        },
        {
            "path": "/crm/mcp",
            "backend": "http://10.0.0.2/mcp",
            "tool_policy": {"default": "deny"},
        },
    ]
    settings = Settings.from_env({**BASE, "MCP_SERVERS": json.dumps(servers)})
    report = check.Report()
    check._check_tool_rules(settings, report)
    messages = {f.code: f.message for f in report.findings}
    assert messages["tool_scopes"].startswith("/github/mcp tool_scopes is valid")
    assert messages["tool_policy"].startswith("/crm/mcp tool_policy is valid:")
