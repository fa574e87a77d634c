"""Per-tool scopes, the scope hierarchy and the step-up scope."""

from __future__ import annotations

import pytest

from proxy.oauth.scope_hierarchy import build_hierarchy
from proxy.oauth.scope_hierarchy import conventional_hierarchy
from proxy.oauth.tool_globs import RuleError
from proxy.oauth.tool_globs import parse_glob
from proxy.oauth.tool_scopes import parse_tool_scopes
from proxy.oauth.tool_scopes import step_up_scope

SCOPES = {
    "tools": {
        "echo": "mcp:read",
        "delete_*": ["mcp:write", "mcp:admin"],
        "count": "mcp:write",
        "*": "mcp:read",
    },
    "implies": {"mcp:admin": ["mcp:write"], "mcp:write": ["mcp:read"]},
}


def test_write_implies_read_by_convention() -> None:
    """SCOPE-3: with no `implies`, <p>:write covers <p>:read."""
    hierarchy = conventional_hierarchy(["mcp:read", "mcp:write", "files:write"])
    assert hierarchy.covers(["mcp:write"], ["mcp:read"])
    assert not hierarchy.covers(["mcp:read"], ["mcp:write"])
    assert not hierarchy.covers(["files:write"], ["files:read"])  # not named


def test_hierarchy_is_transitive() -> None:
    """SCOPE-3: admin ⊇ write ⊇ read, so admin covers read."""
    hierarchy = build_hierarchy({"a": ["b"], "b": ["c"]})
    assert hierarchy.expand(["a"]) == {"a", "b", "c"}
    assert hierarchy.missing(["b"], ["a", "c"]) == ["a"]


def test_a_cycle_makes_scopes_equivalent() -> None:
    hierarchy = build_hierarchy({"a": ["b"], "b": ["a"]})
    assert hierarchy.covers(["a"], ["b"])
    assert hierarchy.covers(["b"], ["a"])


def test_exact_name_wins_over_a_glob_then_file_order() -> None:
    scopes = parse_tool_scopes(SCOPES)
    assert scopes.required("echo") == ("mcp:read",)
    assert scopes.required("delete_repo") == ("mcp:write", "mcp:admin")
    assert scopes.required("anything") == ("mcp:read",)


def test_a_tool_no_rule_names_needs_nothing_extra() -> None:
    scopes = parse_tool_scopes({"tools": {"count": "mcp:write"}})
    assert scopes.required("echo") == ()
    assert scopes.missing(["mcp"], "echo") == []


def test_missing_applies_the_hierarchy() -> None:
    scopes = parse_tool_scopes(SCOPES)
    assert scopes.missing(["mcp:admin"], "delete_x") == []
    assert scopes.missing(["mcp:read"], "count") == ["mcp:write"]
    assert scopes.missing(["mcp:write"], "echo") == []


def test_scopes_lists_every_named_scope_without_offline_access() -> None:
    scopes = parse_tool_scopes(SCOPES)
    assert set(scopes.scopes) == {"mcp:read", "mcp:write", "mcp:admin"}


def test_step_up_scope_is_the_union_granted_first() -> None:
    """SEP-2350: the client asks again for what it has plus what it lacks."""
    assert step_up_scope(["mcp:read", "offline_access"], ["mcp:write"]) == (
        "mcp:read mcp:write"
    )
    assert step_up_scope(["mcp:read"], ["mcp:read"]) == "mcp:read"


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ([], "object"),
        ({"tools": {}}, "tools"),
        ({"tools": {"x": "mcp"}, "extra": 1}, "unknown field"),
        ({"tools": {"x": []}}, "tools.x"),
        ({"tools": {"x": 'bad"scope'}}, "scope token"),
        ({"tools": {"x": "offline_access"}}, "offline_access"),
        ({"tools": {"[ab]": "mcp"}}, "wildcards"),
        ({"tools": {"x": "mcp"}, "implies": ["mcp"]}, "implies"),
    ],
)
def test_bad_documents_say_where(document: object, where: str) -> None:
    with pytest.raises(RuleError, match=where):
        parse_tool_scopes(document)


@pytest.mark.parametrize(
    ("glob", "tool", "matches"),
    [
        ("delete_*", "delete_repo", True),
        ("delete_*", "undelete_repo", False),
        ("delete_*", "delete_", True),
        ("file.?", "file.a", True),
        ("file.?", "fileXa", False),  # '.' is literal
        ("echo", "echo", True),
        ("echo", "Echo", False),  # tool names are case-sensitive
        ("*", "", True),
    ],
)
def test_glob_matching(glob: str, tool: str, matches: bool) -> None:
    assert parse_glob(glob).matches(tool) is matches
