"""proxy/oauth/resource_indicators.py: RFC 8707 (RES-2, RES-3, RES-4)."""

from __future__ import annotations

import pytest

from proxy.oauth.resource_indicators import canonical_resource
from proxy.oauth.resource_indicators import matches_resource

CANONICAL = "https://mcp.example.com/mcp"


@pytest.mark.parametrize(
    "value",
    [
        "mcp.example.com",
        "mcp.example.com/mcp",
        "/mcp",
        "",
        "https://",
        "https:///mcp",
        "https://mcp.example.com/mcp#frag",
        "https://mcp.example.com/mcp#",
        "ftp://mcp.example.com/mcp",
        "urn:example:mcp",
        "https://user:pw@mcp.example.com/mcp",
        "https://user@mcp.example.com/mcp",
        "https://mcp.example.com:99999/mcp",
        "https://mcp.example.com:port/mcp",
    ],
)
def test_non_absolute_or_fragment_resource_is_invalid(value: str) -> None:
    """RES-2: `resource` is an absolute URI without a fragment."""
    assert canonical_resource(value) is None
    assert not matches_resource(value, CANONICAL)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (CANONICAL, CANONICAL),
        ("HTTPS://MCP.EXAMPLE.COM/mcp", CANONICAL),
        ("https://mcp.example.com:443/mcp", CANONICAL),
        ("https://mcp.example.com/mcp/", CANONICAL),
        ("https://mcp.example.com/", "https://mcp.example.com"),
        ("https://mcp.example.com", "https://mcp.example.com"),
        ("http://127.0.0.1:80/mcp", "http://127.0.0.1/mcp"),
        ("http://127.0.0.1:9999/mcp", "http://127.0.0.1:9999/mcp"),
        ("https://mcp.example.com:8443/mcp", "https://mcp.example.com:8443/mcp"),
        ("https://[::1]:8443/mcp", "https://[::1]:8443/mcp"),
        ("https://mcp.example.com/mcp?x=1", "https://mcp.example.com/mcp?x=1"),
    ],
)
def test_canonical_form(value: str, expected: str) -> None:
    """RES-4: scheme and host lowercased, default port and trailing slash dropped."""
    assert canonical_resource(value) == expected


def test_path_case_is_significant() -> None:
    """RES-4: only scheme and host compare case-insensitively."""
    assert (
        canonical_resource("https://mcp.example.com/MCP")
        == "https://mcp.example.com/MCP"
    )
    assert not matches_resource("https://mcp.example.com/MCP", CANONICAL)


@pytest.mark.parametrize(
    "value",
    [
        CANONICAL,
        "HTTPS://MCP.Example.COM/mcp",
        "https://mcp.example.com:443/mcp",
        "https://mcp.example.com/mcp/",
        "https://mcp.example.com/mcp?client=chatgpt",
    ],
)
def test_spellings_of_our_resource_match(value: str) -> None:
    """RES-4: canonical comparison accepts other spellings of the same URI."""
    assert matches_resource(value, CANONICAL)


@pytest.mark.parametrize(
    "value",
    [
        "https://other.example/mcp",
        "https://mcp.example.com/other",
        "https://mcp.example.com/mcp/sub",
        "https://mcp.example.com/mc",
        "https://mcp.example.com",
        "http://mcp.example.com/mcp",
        "https://mcp.example.com:8443/mcp",
        "https://mcp.example.com.evil.example/mcp",
    ],
)
def test_other_resources_do_not_match(value: str) -> None:
    """RES-3: only the canonical URI of the MCP server behind the proxy is valid."""
    assert not matches_resource(value, CANONICAL)
