"""MCP_TOOL_SCOPES, MCP_TOOL_POLICY and TOOL_POLICY_CLAIMS in the settings."""

from __future__ import annotations

import io
import json
import typing as t

import pytest

from proxy.cli import check
from proxy.config.env import ConfigError
from proxy.config.settings import Settings
from proxy.config.settings import config_errors
from tests.upstream.standins import OIDCStandIn

BASE = {
    "PUBLIC_URL": "https://mcp.example.com",
    "OAUTH_ISSUER": "https://idp.example.com/",
    "OAUTH_CLIENT_ID": "proxy-client",
    "OAUTH_CLIENT_SECRET": "proxy-secret",
    "MCP_SCOPES": "mcp:read",
}
SCOPES = {"tools": {"echo": "mcp:read", "delete_*": "mcp:write"}}
POLICY_TOML = """
default = "deny"

[[rules]]
effect = "allow"
tools = ["delete_*"]
groups = ["admins"]

[[rules]]
effect = "allow"
tools = ["*"]
"""


def settings(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


def test_inline_json_scopes_are_offered_but_not_the_default() -> None:
    loaded = settings(MCP_TOOL_SCOPES=json.dumps(SCOPES))
    assert loaded.tool_scopes is not None
    assert loaded.tool_scopes.required("delete_x") == ("mcp:write",)
    assert loaded.mcp_scopes == ("mcp:read",)
    assert loaded.offered_scopes == ("mcp:read", "mcp:write")


def test_a_toml_policy_file_loads_and_its_claims_are_kept(tmp_path: t.Any) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_TOML)
    loaded = settings(MCP_TOOL_POLICY=str(path), TOKEN_EXTRA_CLAIMS="dept")
    assert loaded.tool_policy is not None
    assert len(loaded.tool_policy.rules) == 2
    assert loaded.tool_policy_source is not None
    assert loaded.tool_policy_source.path == str(path)
    assert loaded.kept_claims == ("dept", "groups", "roles")


def test_without_a_policy_no_group_claim_is_kept() -> None:
    assert settings().kept_claims == ()


@pytest.mark.parametrize(
    ("variable", "content", "message"),
    [
        ("MCP_TOOL_SCOPES", "{not json", "MCP_TOOL_SCOPES: not valid JSON"),
        ("MCP_TOOL_SCOPES", '{"tools": {"x": 1}}', "tools.x"),
        ("MCP_TOOL_POLICY", '{"rules": []}', "default"),
    ],
)
def test_bad_inline_rules_name_the_variable(
    variable: str, content: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(**{variable: content})


def test_a_bad_file_names_the_variable_the_file_and_the_line(tmp_path: t.Any) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('default = "allow"\n[[rules]]\neffect = \n')
    with pytest.raises(ConfigError) as caught:
        settings(MCP_TOOL_POLICY=str(path))
    assert str(caught.value).startswith(f"MCP_TOOL_POLICY={path}: not valid TOML")
    assert "line 3" in str(caught.value)


def test_a_missing_file_is_a_config_error(tmp_path: t.Any) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        settings(MCP_TOOL_SCOPES=str(tmp_path / "nope.json"))


def test_a_reserved_claim_cannot_hold_groups() -> None:
    with pytest.raises(ConfigError, match="TOOL_POLICY_CLAIMS"):
        settings(TOOL_POLICY_CLAIMS="sub")


def test_check_reports_every_bad_rules_file_at_once(tmp_path: t.Any) -> None:
    errors = config_errors(
        {**BASE, "MCP_TOOL_SCOPES": "{", "MCP_TOOL_POLICY": '{"default": 1}'}
    )
    assert [str(e).split(":")[0] for e in errors] == [
        "MCP_TOOL_SCOPES",
        "MCP_TOOL_POLICY",
    ]
    out = io.StringIO()
    assert check.main({**BASE, "MCP_TOOL_POLICY": "{"}, out) == 2
    assert "FAIL  [config] MCP_TOOL_POLICY" in out.getvalue()


def test_check_reports_valid_rules(httpserver: t.Any, tmp_path: t.Any) -> None:
    idp = OIDCStandIn(httpserver)
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_TOML)
    env = {
        **BASE,
        "OAUTH_ISSUER": idp.issuer,
        "MCP_TOOL_SCOPES": json.dumps(SCOPES),
        "MCP_TOOL_POLICY": str(path),
    }
    report = check.run(Settings.from_env(env))
    findings = {f.code: f for f in report.findings}
    assert findings["tool_scopes"].level == check.OK
    assert "mcp:read mcp:write" in findings["tool_scopes"].message
    assert findings["tool_policy"].level == check.OK
    assert "re-read when the file changes" in findings["tool_policy"].message
    # No MCP_BACKEND_URL: forward-auth, which sees only the routing headers.
    assert findings["tool_rules_need_headers"].level == check.WARN
    assert "2025-11-25 clients" in findings["tool_rules_need_headers"].message


@pytest.mark.parametrize(
    ("backend", "warned"),
    [(None, True), ("http://10.0.0.1/mcp", False)],
)
def test_check_warns_that_forward_auth_rules_need_the_routing_headers(
    backend: str | None, warned: bool
) -> None:
    """Forward-auth sees no body: its rules bind only clients that send
    Mcp-Method/Mcp-Name (J65); the gateway reads the body and needs no warning."""
    env = {"MCP_TOOL_SCOPES": json.dumps(SCOPES)}
    if backend is not None:
        env["MCP_BACKEND_URL"] = backend
    report = check.Report()
    check._check_tool_rules(settings(**env), report)
    findings = {f.code: f for f in report.findings}
    assert ("tool_rules_need_headers" in findings) is warned
    if warned:
        message = findings["tool_rules_need_headers"].message
        assert findings["tool_rules_need_headers"].level == check.WARN
        assert "tools/list is never filtered" in message
        assert "gateway mode" in message
