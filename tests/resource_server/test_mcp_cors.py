"""proxy/resource_server/mcp_cors.py: what a preflight to the MCP path allows."""

from __future__ import annotations

import pytest

from proxy.resource_server.mcp_cors import FIXED_HEADERS
from proxy.resource_server.mcp_cors import MAX_ANNOUNCED
from proxy.resource_server.mcp_cors import allowed_headers
from proxy.resource_server.mcp_cors import is_param_header


def _allowed(announced: str | None) -> set[str]:
    return {name.strip().lower() for name in allowed_headers(announced).split(",")}


def test_fixed_headers_are_always_allowed() -> None:
    assert _allowed(None) == {name.lower() for name in FIXED_HEADERS}


@pytest.mark.parametrize(
    "name",
    ["Mcp-Param-Region", "mcp-param-x.y", "MCP-PARAM-a_b~c"],
)
def test_param_headers_are_allowed(name: str) -> None:
    assert is_param_header(name)
    assert name.lower() in _allowed(f"content-type, {name}")


@pytest.mark.parametrize(
    "name",
    [
        "Cookie",
        "Proxy-Authorization",
        "X-Forwarded-User",
        "Mcp-Param-",
        "Mcp-Param-a b",
        "Mcp-Param-a/b",
        "Mcp-Param-" + "x" * 200,
        "Mcp-Param-é",
    ],
)
def test_other_names_are_never_added(name: str) -> None:
    assert not is_param_header(name)
    assert name.lower() not in _allowed(name)


def test_announced_names_are_bounded() -> None:
    announced = ", ".join(f"mcp-param-h{i}" for i in range(1000))
    params = [n for n in _allowed(announced) if n.startswith("mcp-param-")]
    assert 0 < len(params) <= MAX_ANNOUNCED
