"""Scope parsing and the grant policy (OAuth 2.1 §1.4.1, §3.2.3; decision J7).

Requested scopes the proxy does not offer (OIDC scopes ChatGPT or mcp-remote
ask for) are dropped rather than refused, and the narrower grant is reported
in the token response's `scope`. An empty request means the default scopes.
Decision J7 is explained in docs/decisions.md.
"""

from __future__ import annotations

import re

OFFLINE_ACCESS = "offline_access"


# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def parse(value: str | None) -> list[str]:
    """Space-delimited scope string to an ordered, de-duplicated list."""
    seen: dict[str, None] = {}
    for token in (value or "").split(" "):
        if token:
            seen[token] = None
    return list(seen)


def is_well_formed(value: str) -> bool:
    return all(_SCOPE_TOKEN.fullmatch(token) for token in parse(value))


def format_scopes(scopes: list[str] | tuple[str, ...]) -> str:
    return " ".join(scopes)


def grant(
    requested: str | None,
    offered: tuple[str, ...],
    default: tuple[str, ...] | None = None,
) -> list[str]:
    """The scopes to grant: requested ∩ offered (+offline_access), else the defaults.

    `default` (MCP_SCOPES) is the baseline granted when nothing offered was
    asked for; None means everything offered. Tool scopes are offered but not
    defaults: they are reached by step-up.
    """
    allowed = set(offered) | {OFFLINE_ACCESS}
    granted = [s for s in parse(requested) if s in allowed]
    if not [s for s in granted if s != OFFLINE_ACCESS]:
        baseline = list(offered if default is None else default)
        granted = baseline + [s for s in granted if s == OFFLINE_ACCESS]
    return granted


def is_subset(requested: list[str], granted: list[str]) -> bool:
    return set(requested) <= set(granted)
