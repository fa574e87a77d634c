"""proxy/config/mcp_servers.py: MCP_SERVERS, read and checked at start-up."""

from __future__ import annotations

import json
import pathlib

import pytest

from proxy.config.env import ConfigError
from proxy.config.settings import Settings
from proxy.config.settings import config_errors

BASE = {
    "PUBLIC_URL": "https://mcp.example.com",
    "OAUTH_ISSUER": "https://idp.example.com/",
    "OAUTH_CLIENT_ID": "proxy-client",
    "OAUTH_CLIENT_SECRET": "proxy-secret",
}
GITHUB = {"path": "/github/mcp", "backend": "http://10.0.0.5:8000/mcp"}
CRM = {"path": "/crm/mcp", "backend": "https://crm.internal/mcp"}

TOML = """
[[servers]]
path = "/github/mcp"
backend = "http://10.0.0.5:8000/mcp"
scopes = ["github:read", "github:write"]
tool_policy = "policy.toml"

[servers.tool_scopes]
tools = { "delete_*" = "github:write" }

[[servers]]
path = "/crm/mcp"
backend = "https://crm.internal/mcp"
audience = "https://crm.example.com/mcp"
"""

POLICY = """
default = "allow"
[[rules]]
tools = ["delete_*"]
effect = "deny"
"""


def _settings(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


def _error(servers: object, **env: str) -> str:
    with pytest.raises(ConfigError) as exc:
        _settings(MCP_SERVERS=json.dumps(servers), **env)
    message = str(exc.value)
    assert message.startswith("MCP_SERVERS"), message
    return message


def test_unset_is_the_single_server_of_the_old_settings() -> None:
    settings = _settings(
        MCP_PATH="/tools", MCP_SCOPES="a b", MCP_BACKEND_URL="http://127.0.0.1:1/x"
    )
    assert settings.mcp_servers == ()
    (server,) = settings.servers
    assert server.path == "/tools"
    assert server.audience == "https://mcp.example.com/tools"
    assert server.scopes == ("a", "b")
    assert server.backend_url == "http://127.0.0.1:1/x"


def test_a_toml_file_gives_each_server_its_own_rules(tmp_path: pathlib.Path) -> None:
    (tmp_path / "servers.toml").write_text(TOML)
    (tmp_path / "policy.toml").write_text(POLICY)
    settings = _settings(MCP_SERVERS=str(tmp_path / "servers.toml"))
    github, crm = settings.servers
    assert github.audience == "https://mcp.example.com/github/mcp"
    assert github.scopes == ("github:read", "github:write")
    assert github.tool_scopes is not None
    assert github.tool_policy is not None
    # A relative policy file is found next to the servers file (re-readable).
    assert github.tool_policy_source is not None
    assert github.tool_policy_source.path == str(tmp_path / "policy.toml")
    assert crm.audience == "https://crm.example.com/mcp"
    assert crm.scopes == ("mcp",)  # MCP_SCOPES' default
    assert crm.tool_scopes is None
    assert crm.tool_policy is None
    assert settings.resource == github.audience  # the first is the default
    assert settings.gateway
    assert settings.kept_claims == ("groups", "roles")


def test_a_json_file_and_inline_json_read_the_same(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "servers.json"
    path.write_text(json.dumps({"servers": [GITHUB, CRM]}))
    from_file = _settings(MCP_SERVERS=str(path), MCP_SCOPES="mcp extra").servers
    inline = _settings(MCP_SERVERS=json.dumps([GITHUB, CRM]), MCP_SCOPES="mcp extra")
    assert from_file == inline.servers
    assert [s.scopes for s in from_file] == [("mcp", "extra")] * 2


def test_offered_scopes_are_every_servers() -> None:
    servers = [{**GITHUB, "scopes": ["gh"]}, {**CRM, "scopes": "crm crm:write"}]
    settings = _settings(MCP_SERVERS=json.dumps(servers))
    assert settings.offered_scopes == ("gh", "crm", "crm:write")


def test_server_for_resource_matches_only_its_own_audience() -> None:
    settings = _settings(MCP_SERVERS=json.dumps([GITHUB, CRM]))
    github, crm = settings.servers
    assert settings.server_for_resource("https://MCP.example.com/github/mcp/") is github
    assert settings.server_for_resource("https://mcp.example.com/crm/mcp") is crm
    assert settings.server_for_resource("https://mcp.example.com/mcp") is None


@pytest.mark.parametrize(
    ("servers", "named"),
    [
        ([], "non-empty list"),
        ({"servers": {}}, "non-empty list"),
        ({"servers": [], "x": 1}, "non-empty list"),
        (["/github/mcp"], "server #1 is not a table"),
        ([{"backend": GITHUB["backend"]}], "'path' must start with '/'"),
        ([{**GITHUB, "path": "github/mcp"}], "'path' must start with '/'"),
        ([{**GITHUB, "path": "/github/mcp?x=1"}], "query or fragment"),
        ([{**GITHUB, "path": "/github/mcp#x"}], "query or fragment"),
        ([{**GITHUB, "path": "/github/../mcp"}], "plain segments"),
        ([{**GITHUB, "path": "/github//mcp"}], "plain segments"),
        ([{**GITHUB, "path": "/git hub"}], "plain segments"),
        ([{**GITHUB, "path": "/"}], "plain segments"),
        ([{**GITHUB, "path": "/oauth2/mcp"}], "collides"),
        ([{**GITHUB, "path": "/.well-known/mcp"}], "collides"),
        ([{**GITHUB, "path": "/account"}], "collides"),
        ([{**GITHUB, "path": "/metrics"}], "collides"),
        ([{**GITHUB, "path": "/healthz"}], "collides"),
        ([GITHUB, {**CRM, "path": "/github/mcp/"}], "listed twice"),
        ([{"path": "/github/mcp"}], "'backend' is required"),
        ([{**GITHUB, "backend": "ftp://host/mcp"}], "absolute http(s) URL"),
        ([{**GITHUB, "backend": "/mcp"}], "absolute http(s) URL"),
        ([{**GITHUB, "backend": "http://host:port/mcp"}], "invalid port"),
        ([{**GITHUB, "backend": "http://u:p@host/mcp"}], "user name or password"),
        ([{**GITHUB, "audience": "not a url"}], "'audience'"),
        ([{**GITHUB, "audience": "https://x.example/mcp#f"}], "'audience'"),
        ([GITHUB, {**CRM, "audience": BASE["PUBLIC_URL"] + "/github/mcp"}], "share"),
        ([{**GITHUB, "scopes": ["ok", 3]}], "'scopes'"),
        ([{**GITHUB, "scopes": ["bad\\"]}], "'scopes'"),
        ([{**GITHUB, "scopes": ["mcp", "offline_access"]}], "offline_access"),
        ([{**GITHUB, "tool_policy": 5}], "tool_policy"),
        ([{**GITHUB, "tool_scopes": {"tools": 5}}], "tool_scopes"),
        ([{**GITHUB, "tool_policy": "missing.toml"}], "cannot be read"),
        ([{**GITHUB, "backend_audience": "nope"}], "'backend_audience'"),
        ([{**GITHUB, "backend": BASE["PUBLIC_URL"] + "/github/mcp"}], "audience"),
        ([{**GITHUB, "colour": "blue"}], "unknown key 'colour'"),
    ],
)
def test_every_bad_server_stops_the_start_naming_it(
    servers: object, named: str
) -> None:
    assert named in _error(servers)


def test_an_error_names_the_server() -> None:
    message = _error([GITHUB, {**CRM, "backend": "nope"}])
    assert "'/crm/mcp'" in message


def test_two_audiences_sharing_a_metadata_url_are_refused() -> None:
    servers = [
        {**GITHUB, "audience": "https://a.example.com/mcp"},
        {**CRM, "audience": "https://b.example.com/mcp"},
    ]
    assert "protected resource metadata" in _error(servers)


@pytest.mark.parametrize(
    "name",
    [
        "MCP_PATH",
        "OAUTH_AUDIENCE",
        "MCP_BACKEND_URL",
        "MCP_BACKEND_AUDIENCE",
        "MCP_TOOL_SCOPES",
        "MCP_TOOL_POLICY",
    ],
)
def test_a_per_server_variable_set_globally_too_is_refused(name: str) -> None:
    value = "https://x.example.com/mcp" if "AUD" in name or "URL" in name else "/x"
    message = _error([GITHUB], **{name: value})
    assert name in message


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[not json", "not valid JSON"),
        ("/nowhere/servers.toml", "cannot be read"),
    ],
)
def test_an_unreadable_document_is_named(text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        _settings(MCP_SERVERS=text)


def test_bad_toml_is_named(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "servers.toml"
    path.write_text("[[servers]\npath=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        _settings(MCP_SERVERS=str(path))


def test_check_reports_a_bad_file_as_one_config_line() -> None:
    errors = config_errors({**BASE, "MCP_SERVERS": json.dumps([{"path": "/x"}])})
    assert len(errors) == 1
    assert str(errors[0]).startswith("MCP_SERVERS: server '/x'")
