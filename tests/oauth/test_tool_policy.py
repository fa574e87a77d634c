"""The tool policy's rules, one kind at a time (proxy/oauth/tool_policy.py, J50)."""

from __future__ import annotations

import pytest

from proxy.oauth.tool_globs import RuleError
from proxy.oauth.tool_policy import Caller
from proxy.oauth.tool_policy import parse_tool_policy

ALICE = Caller(
    sub="u-alice",
    email="Alice@Example.com",
    groups=frozenset({"admins", "staff"}),
    client_id="https://claude.ai/oauth/mcp-oauth-client-metadata",
    client_name="claude",
)
BOB = Caller(
    sub="u-bob",
    email=None,
    groups=frozenset({"staff"}),
    client_id="dcr-client-1",
)


def policy(*rules: dict[str, object], default: str = "allow") -> object:
    return parse_tool_policy({"default": default, "rules": list(rules)})


def decide(rules: list[dict[str, object]], caller: Caller, tool: str) -> bool:
    return (
        parse_tool_policy({"default": "allow", "rules": rules})
        .decide(caller, tool)
        .allowed
    )


def test_the_first_matching_rule_wins() -> None:
    """J50: the example in the module docstring, read top down."""
    rules = [
        {"effect": "deny", "tools": ["delete_*"], "catalogued": False},
        {"effect": "allow", "tools": ["delete_*"], "groups": ["admins"]},
        {"effect": "deny", "tools": ["delete_*"]},
    ]
    assert decide(rules, ALICE, "delete_repo")
    assert not decide(rules, BOB, "delete_repo")  # not catalogued (rule 1)
    staff_on_claude = Caller(
        "u-c", None, frozenset({"staff"}), ALICE.client_id, "claude"
    )
    assert not decide(rules, staff_on_claude, "delete_repo")  # rule 3
    assert decide(rules, BOB, "echo")  # no rule: the default


def test_no_match_falls_to_the_default() -> None:
    denied = parse_tool_policy({"default": "deny", "rules": []})
    decision = denied.decide(ALICE, "echo")
    assert not decision.allowed
    assert decision.reason == "denied_by_default"


def test_a_deny_rule_reports_its_number() -> None:
    decision = parse_tool_policy(
        {"default": "allow", "rules": [{"effect": "deny", "tools": ["x"]}]}
    ).decide(ALICE, "x")
    assert (decision.allowed, decision.rule, decision.reason) == (
        False,
        1,
        "denied_by_rule",
    )


@pytest.mark.parametrize(
    ("condition", "alice", "bob"),
    [
        ({"users": ["u-alice"]}, True, False),
        ({"users": ["alice@example.COM"]}, True, False),  # email, any case
        ({"users": ["u-bob"]}, False, True),
        ({"email_domains": ["example.com"]}, True, False),  # bob: unverified
        ({"email_domains": ["@EXAMPLE.com"]}, True, False),
        ({"groups": ["admins"]}, True, False),
        ({"groups": ["staff", "nobody"]}, True, True),
        ({"clients": ["claude"]}, True, False),  # catalog name
        ({"clients": ["dcr-client-1"]}, False, True),  # client id
        ({"catalogued": True}, True, False),
        ({"catalogued": False}, False, True),
    ],
)
def test_each_condition_kind(
    condition: dict[str, object], alice: bool, bob: bool
) -> None:
    """A deny rule with one condition: it refuses exactly the callers it fits."""
    rules = [{"effect": "deny", "tools": ["*"], **condition}]
    assert decide(rules, ALICE, "t") is not alice
    assert decide(rules, BOB, "t") is not bob


def test_conditions_in_one_rule_must_all_hold() -> None:
    rules = [
        {"effect": "deny", "tools": ["*"], "groups": ["staff"], "catalogued": False}
    ]
    assert decide(rules, ALICE, "t")  # staff, but catalogued
    assert not decide(rules, BOB, "t")


def test_may_call_agrees_with_decide() -> None:
    parsed = parse_tool_policy(
        {
            "default": "deny",
            "rules": [
                {"effect": "deny", "tools": ["delete_*"], "catalogued": False},
                {"effect": "allow", "tools": ["delete_*"], "groups": ["admins"]},
                {"effect": "allow", "tools": ["echo", "whoami"]},
            ],
        }
    )
    for caller in (ALICE, BOB):
        may = parsed.may_call(caller)
        for tool in ("delete_a", "echo", "whoami", "count"):
            assert may(tool) is parsed.decide(caller, tool).allowed


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({"rules": []}, "default"),
        ({"default": "maybe"}, "default"),
        ({"default": "allow", "rules": {}}, "rules"),
        ({"default": "allow", "rules": [{"effect": "deny"}]}, "tools"),
        ({"default": "allow", "rules": [{"effect": "nope", "tools": "*"}]}, "effect"),
        (
            {"default": "allow", "rules": [{"effect": "deny", "tools": "*", "who": 1}]},
            "unknown field",
        ),
        (
            {
                "default": "allow",
                "rules": [{"effect": "deny", "tools": "*", "groups": []}],
            },
            "groups",
        ),
        (
            {
                "default": "allow",
                "rules": [{"effect": "deny", "tools": "*", "catalogued": "no"}],
            },
            "catalogued",
        ),
    ],
)
def test_bad_policies_say_where(document: object, where: str) -> None:
    with pytest.raises(RuleError, match=where):
        parse_tool_policy(document)
