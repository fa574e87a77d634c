"""Per-tool scopes and the step-up challenge (MCP 2026-07-28, SEP-835, SEP-2350).

MCP_TOOL_SCOPES maps a tool name or glob to the scopes a call needs:

    {"tools": {"search": "mcp:read", "delete_*": ["mcp:write"], "*": "mcp:read"},
     "implies": {"mcp:write": ["mcp:read"]}}

An exact name wins over a glob, then the first glob in file order. A token
that does not cover the needed scopes (through the hierarchy) gets 403
`insufficient_scope` whose `scope` is what it already has plus what is
missing: the client re-authorizes with that union (SEP-2350), so stepping up
for one tool never drops another's scope.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field

from proxy.oauth import scopes as scope_syntax
from proxy.oauth.scope_hierarchy import ScopeHierarchy
from proxy.oauth.scope_hierarchy import build_hierarchy
from proxy.oauth.scope_hierarchy import conventional_hierarchy
from proxy.oauth.tool_globs import RuleError
from proxy.oauth.tool_globs import ToolGlob
from proxy.oauth.tool_globs import parse_glob

_FIELDS = frozenset({"tools", "implies"})


@dataclass(frozen=True, slots=True)
class ToolScopes:
    """Which scopes each tool needs, and which scopes imply which."""

    exact: dict[str, tuple[str, ...]] = field(default_factory=dict)
    globs: tuple[tuple[ToolGlob, tuple[str, ...]], ...] = ()
    hierarchy: ScopeHierarchy = field(default_factory=ScopeHierarchy)

    def required(self, tool: str) -> tuple[str, ...]:
        """The scopes a call of `tool` needs (empty: only the baseline)."""
        found = self.exact.get(tool)
        if found is not None:
            return found
        for glob, needed in self.globs:
            if glob.matches(tool):
                return needed
        return ()

    def missing(self, granted: Iterable[str], tool: str) -> list[str]:
        """What `granted` lacks for `tool`, after the hierarchy (empty: enough)."""
        return self.hierarchy.missing(granted, self.required(tool))

    @property
    def scopes(self) -> tuple[str, ...]:
        """Every scope the file names, in first-seen order (advertised in PRM)."""
        named: dict[str, None] = {}
        for needed in [*self.exact.values(), *(n for _, n in self.globs)]:
            named.update(dict.fromkeys(needed))
        for scope, implied in self.hierarchy.implies.items():
            named[scope] = None
            named.update(dict.fromkeys(sorted(implied)))
        named.pop(scope_syntax.OFFLINE_ACCESS, None)
        return tuple(named)


def step_up_scope(granted: Iterable[str], missing: Iterable[str]) -> str:
    """The challenge's `scope`: what the token has, then what it lacks (SEP-2350).

    `offline_access` stays out (MCP 2026-07-28: it belongs in the AS metadata,
    not in challenges); clients that want it add it themselves.
    """
    union: dict[str, None] = dict.fromkeys(granted)
    union.update(dict.fromkeys(missing))
    union.pop(scope_syntax.OFFLINE_ACCESS, None)
    return " ".join(union)


def parse_tool_scopes(data: object) -> ToolScopes:
    """A ToolScopes from a decoded JSON/TOML document; RuleError says what is wrong."""
    if not isinstance(data, dict):
        raise RuleError("the document must be an object with a 'tools' table")
    unknown = set(data) - _FIELDS
    if unknown:
        raise RuleError(f"unknown field {sorted(unknown)[0]!r} (known: implies, tools)")
    tools = data.get("tools")
    if not isinstance(tools, dict) or not tools:
        raise RuleError("'tools' must map tool names or globs to scopes")
    exact: dict[str, tuple[str, ...]] = {}
    globs: list[tuple[ToolGlob, tuple[str, ...]]] = []
    for name, value in tools.items():
        glob = parse_glob(name)
        needed = _scope_list(value, f"tools.{name}")
        if glob.exact:
            exact[glob.text] = needed
        else:
            globs.append((glob, needed))
    all_named = [s for n in [*exact.values(), *(n for _, n in globs)] for s in n]
    implies = data.get("implies")
    if implies is None:
        hierarchy = conventional_hierarchy(all_named)
    else:
        if not isinstance(implies, dict):
            raise RuleError("'implies' must map a scope to the scopes it implies")
        direct = {
            _scope_list(scope, "implies")[0]: _scope_list(value, f"implies.{scope}")
            for scope, value in implies.items()
        }
        hierarchy = build_hierarchy(direct)
    return ToolScopes(exact=exact, globs=tuple(globs), hierarchy=hierarchy)


def _scope_list(value: t.Any, where: str) -> tuple[str, ...]:
    """A scope or a list of scopes, each an RFC 6749 §3.3 scope-token."""
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise RuleError(f"{where}: give a scope or a non-empty list of scopes")
    for item in items:
        if not isinstance(item, str) or not scope_syntax.is_well_formed(item):
            raise RuleError(f"{where}: {item!r} is not a scope token")
        if item == scope_syntax.OFFLINE_ACCESS:
            raise RuleError(f"{where}: offline_access is not a tool scope")
    return tuple(dict.fromkeys(items))
