"""proxy/oauth/scopes.py: scope parsing and the grant policy (decision J7)."""

from __future__ import annotations

import pytest

from proxy.oauth import scopes

OFFERED = ("mcp", "mcp:write")


def test_parse_splits_on_spaces_and_drops_duplicates_in_order() -> None:
    assert scopes.parse("b a  b c") == ["b", "a", "c"]


@pytest.mark.parametrize("value", [None, "", "   "])
def test_parse_empty_is_no_scope(value: str | None) -> None:
    assert scopes.parse(value) == []


def test_format_joins_with_single_spaces() -> None:
    assert scopes.format_scopes(["a", "b"]) == "a b"
    assert scopes.format_scopes(("a",)) == "a"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("mcp", True),
        ("mcp mcp:write", True),
        ("urn:x:y/z!#[]", True),
        ("", True),
        ('a"b', False),
        ("a\\b", False),
        ("é", False),
        ("a\tb", False),
        ("mcp\n", False),
        ("a\x7fb", False),
    ],
)
def test_is_well_formed_follows_rfc6749_scope_token(value: str, ok: bool) -> None:
    """RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )."""
    assert scopes.is_well_formed(value) is ok


@pytest.mark.parametrize("requested", [None, "", " "])
def test_empty_request_gets_the_default_scopes(requested: str | None) -> None:
    """SCOPE-4: an empty or absent scope means the default scopes."""
    assert scopes.grant(requested, OFFERED) == list(OFFERED)


def test_grant_keeps_requested_offered_scopes() -> None:
    assert scopes.grant("mcp:write", OFFERED) == ["mcp:write"]
    assert scopes.grant("mcp:write mcp", OFFERED) == ["mcp:write", "mcp"]


def test_unknown_scopes_are_dropped() -> None:
    """SCOPE-1 / AUTHZ-12: `mcp bogus` grants the narrower `mcp`."""
    assert scopes.grant("mcp bogus", OFFERED) == ["mcp"]


def test_oidc_scopes_alone_fall_back_to_the_defaults() -> None:
    """SCOPE-5: `openid email profile` (mcp-remote's fallback) is not fatal."""
    assert scopes.grant("openid email profile", OFFERED) == list(OFFERED)


def test_offline_access_is_kept() -> None:
    """DISC-12 / RT-9: offline_access survives the intersection."""
    assert scopes.grant("mcp offline_access", OFFERED) == ["mcp", "offline_access"]


def test_offline_access_alone_adds_the_defaults() -> None:
    assert scopes.grant("offline_access", OFFERED) == [
        "mcp",
        "mcp:write",
        "offline_access",
    ]


def test_grant_never_exceeds_what_is_offered() -> None:
    granted = scopes.grant("admin mcp:write * all", OFFERED)
    assert set(granted) <= set(OFFERED) | {scopes.OFFLINE_ACCESS}
    assert granted == ["mcp:write"]


def test_is_subset() -> None:
    """RT-5: a refresh may narrow the scope but never widen it."""
    assert scopes.is_subset(["mcp"], ["mcp", "mcp:write"])
    assert scopes.is_subset([], ["mcp"])
    assert not scopes.is_subset(["mcp", "mcp:write"], ["mcp"])
