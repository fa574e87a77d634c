"""Scope hierarchies: a broader scope covers the narrower ones it implies.

MCP 2026-07-28 (Scope Challenge Handling): when checking whether a token is
sufficient, a server MUST honour its scope hierarchy (SCOPE-3), so a token
with `mcp:write` may call a tool that needs `mcp:read`. The hierarchy is the
operator's (`implies` in MCP_TOOL_SCOPES); without one, the convention
`<p>:write` ⊇ `<p>:read` applies to the scopes the file names.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field


@dataclass(frozen=True, slots=True)
class ScopeHierarchy:
    """Which scopes each scope implies, transitively (a scope implies itself)."""

    implies: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def expand(self, granted: Iterable[str]) -> frozenset[str]:
        """Every scope `granted` covers: the granted ones and all they imply."""
        covered: set[str] = set()
        for scope in granted:
            covered.add(scope)
            covered |= self.implies.get(scope, frozenset())
        return frozenset(covered)

    def covers(self, granted: Iterable[str], needed: Iterable[str]) -> bool:
        return set(needed) <= self.expand(granted)

    def missing(self, granted: Iterable[str], needed: Iterable[str]) -> list[str]:
        """The needed scopes `granted` does not cover, in their order."""
        covered = self.expand(granted)
        return [scope for scope in needed if scope not in covered]


def build_hierarchy(direct: Mapping[str, Iterable[str]]) -> ScopeHierarchy:
    """The transitive closure of `direct` (scope → the scopes it implies).

    A cycle (`a` implies `b` implies `a`) makes the scopes equivalent, which
    is what the operator wrote; it is not an error.
    """
    edges = {scope: set(implied) for scope, implied in direct.items()}
    closed: dict[str, frozenset[str]] = {}
    for scope in edges:
        seen: set[str] = set()
        stack = list(edges[scope])
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            stack.extend(edges.get(current, ()))
        seen.discard(scope)
        closed[scope] = frozenset(seen)
    return ScopeHierarchy(closed)


def conventional_hierarchy(scopes: Iterable[str]) -> ScopeHierarchy:
    """`<p>:write` implies `<p>:read` when both are named (the default hierarchy)."""
    named = set(scopes)
    direct: dict[str, t.Any] = {}
    for scope in named:
        prefix, sep, leaf = scope.rpartition(":")
        if sep and leaf == "write" and f"{prefix}:read" in named:
            direct[scope] = [f"{prefix}:read"]
    return build_hierarchy(direct)
