"""The live tool policy (reload on change, last good on error) and the caller."""

from __future__ import annotations

import json
import logging
import os
import typing as t

import pytest

from proxy.clients import catalog
from proxy.config.env import StaticClient
from proxy.config.settings import Settings
from proxy.config.tool_rules import RulesSource
from proxy.config.tool_rules import read_policy
from proxy.oauth.access_tokens import AccessClaims
from proxy.observability.events import Events
from proxy.resource_server.tool_policy import CatalogNames
from proxy.resource_server.tool_policy import LivePolicy
from proxy.resource_server.tool_policy import caller_of

CLAUDE_CIMD = "https://claude.ai/oauth/mcp-oauth-client-metadata"
DENY_ECHO = {"default": "allow", "rules": [{"effect": "deny", "tools": ["echo"]}]}
ALLOW_ALL = {"default": "allow", "rules": []}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(path: t.Any, document: object, *, bump: int) -> None:
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    # A new mtime even within the file system's timestamp granularity.
    os.utime(path, ns=(bump * 10**9, bump * 10**9))


@pytest.fixture
def live(tmp_path: t.Any) -> tuple[LivePolicy, t.Any, Clock, list[t.Any]]:
    path = tmp_path / "policy.json"
    write(path, DENY_ECHO, bump=1)
    source = RulesSource.of("MCP_TOOL_POLICY", str(path))
    assert source is not None
    events = Events()
    seen: list[t.Any] = []
    events.subscribe(seen.append)
    clock = Clock()
    return (
        LivePolicy(source, read_policy(source), events=events, clock=clock),
        path,
        clock,
        seen,
    )


CALLER = caller_of(
    AccessClaims("u", "c", "mcp", "aud", "g", 0, 0, "j", {}),
    Settings(
        public_url="http://x",
        upstream_issuer="http://i",
        upstream_client_id="a",
        upstream_client_secret="b",
        resource="http://x/mcp",
        secret_key=b"k" * 32,
    ),
    None,
)


def test_a_changed_file_applies_within_a_second(live: t.Any) -> None:
    policy, path, clock, seen = live
    assert not policy.current().decide(CALLER, "echo").allowed
    write(path, ALLOW_ALL, bump=2)
    clock.now += 0.5
    assert not policy.current().decide(CALLER, "echo").allowed  # not yet looked
    clock.now += 0.6
    assert policy.current().decide(CALLER, "echo").allowed
    assert [(e.name, e.outcome) for e in seen] == [("gateway.policy_reloaded", "ok")]


def test_a_broken_file_keeps_the_last_good_policy_and_logs_why(
    live: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    policy, path, clock, seen = live
    write(path, '{"default": "allow", "rules": [{"effect": "deny"}]}', bump=2)
    clock.now += 2
    with caplog.at_level(logging.ERROR, "proxy.resource_server.tool_policy"):
        assert not policy.current().decide(CALLER, "echo").allowed
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "MCP_TOOL_POLICY=" in errors[0].getMessage()
    assert "rules[1]: 'tools' is required" in errors[0].getMessage()
    assert [(e.name, e.outcome, e.fields["reason"]) for e in seen] == [
        ("gateway.policy_reloaded", "error", "policy_invalid")
    ]
    clock.now += 2  # the same bad file is not re-read (nor re-logged)
    caplog.clear()
    policy.current()
    assert not caplog.records
    write(path, ALLOW_ALL, bump=3)  # fixed: applies
    clock.now += 2
    assert policy.current().decide(CALLER, "echo").allowed


def test_a_deleted_file_keeps_the_last_good_policy(live: t.Any) -> None:
    policy, path, clock, _ = live
    path.unlink()
    clock.now += 2
    assert not policy.current().decide(CALLER, "echo").allowed


def test_catalogued_means_a_verified_identity(settings: Settings) -> None:
    """A CIMD URL or a static client the catalog knows; never a DCR id."""
    static = StaticClient(
        client_id="claude-static",
        redirect_uris=("https://claude.ai/api/mcp/auth_callback",),
        client_name="Claude",
    )
    settings = settings.replace(static_clients=(static,))
    names = CatalogNames(catalog.load(settings), settings)
    assert names.name_of(CLAUDE_CIMD) == "claude"
    assert names.name_of("claude-static") == "claude"
    assert names.name_of("https://unknown.example/client.json") is None
    assert names.name_of("some-dcr-client-id") is None


def test_the_caller_reads_groups_and_only_a_verified_email(settings: Settings) -> None:
    claims = AccessClaims(
        sub="u1",
        client_id="c",
        scope="mcp",
        audience="aud",
        grant_id="g",
        expires_at=0,
        issued_at=0,
        jti="j",
        extra={"email": "a@corp.example", "email_verified": False},
        upstream_claims={"groups": ["admins", 7], "roles": "ops dev"},
    )
    caller = caller_of(claims, settings, None)
    assert caller.groups == {"admins", "ops", "dev"}
    assert caller.email is None
    assert not caller.catalogued
