"""Tool policy: who may call which tool, decided by the first matching rule (J50).

MCP_TOOL_POLICY (TOML or JSON):

    default = "allow"
    [[rules]]                       # never from clients outside the catalog
    effect = "deny"
    tools = ["delete_*"]
    catalogued = false
    [[rules]]                       # admins may delete
    effect = "allow"
    tools = ["delete_*"]
    groups = ["admins"]
    [[rules]]                       # nobody else
    effect = "deny"
    tools = ["delete_*"]

A rule matches a call when its tool glob matches and every condition it sets
holds; a condition lists alternatives (any one will do). Rules are read top
down and the first match decides; no match means `default`. Pure: the caller
is plain data the gateway builds from the verified access token.
"""

from __future__ import annotations

import enum
import typing as t
from dataclasses import dataclass

from proxy.oauth.tool_globs import RuleError
from proxy.oauth.tool_globs import ToolGlob
from proxy.oauth.tool_globs import parse_glob


class Effect(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, from the verified access token only."""

    sub: str
    #: Only an address the IdP verified; None otherwise.
    email: str | None
    #: Values of the upstream group/role claims (TOOL_POLICY_CLAIMS).
    groups: frozenset[str]
    client_id: str
    #: The catalog's name for the client when its identity is verified.
    client_name: str | None = None

    @property
    def catalogued(self) -> bool:
        return self.client_name is not None

    @property
    def email_domain(self) -> str | None:
        if not self.email or "@" not in self.email:
            return None
        return self.email.rpartition("@")[2].lower()


@dataclass(frozen=True, slots=True)
class Rule:
    effect: Effect
    tools: tuple[ToolGlob, ...]
    #: None: the rule does not look at it. A set: one of these must fit.
    users: frozenset[str] | None = None
    email_domains: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    clients: frozenset[str] | None = None
    catalogued: bool | None = None
    #: Its position in the file (1-based), for the audit log.
    number: int = 0

    def matches(self, caller: Caller, tool: str) -> bool:
        if not any(glob.matches(tool) for glob in self.tools):
            return False
        return self.applies_to(caller)

    def applies_to(self, caller: Caller) -> bool:
        if self.users is not None and not (
            caller.sub in self.users
            or (caller.email is not None and caller.email.lower() in self.users)
        ):
            return False
        if self.email_domains is not None and caller.email_domain not in (
            self.email_domains
        ):
            return False
        if self.groups is not None and self.groups.isdisjoint(caller.groups):
            return False
        if self.clients is not None and not (
            caller.client_id in self.clients or caller.client_name in self.clients
        ):
            return False
        return self.catalogued is None or self.catalogued == caller.catalogued


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    #: The deciding rule's number; 0: the default decided.
    rule: int = 0

    @property
    def reason(self) -> str:
        """A closed set, used as the metric label: denied_by_rule, denied_by_default."""
        if self.allowed:
            return "allowed"
        return "denied_by_rule" if self.rule else "denied_by_default"


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    rules: tuple[Rule, ...] = ()
    default: Effect = Effect.ALLOW

    def decide(self, caller: Caller, tool: str) -> Decision:
        """First match wins (decision J50); no match: the default."""
        for rule in self.rules:
            if rule.matches(caller, tool):
                return Decision(rule.effect is Effect.ALLOW, rule.number)
        return Decision(self.default is Effect.ALLOW)

    def may_call(self, caller: Caller) -> t.Callable[[str], bool]:
        """A per-caller check for many tools (tools/list): subject conditions
        are evaluated once, so each tool costs only its globs."""
        applicable = [rule for rule in self.rules if rule.applies_to(caller)]
        default = self.default is Effect.ALLOW

        def allowed(tool: str) -> bool:
            for rule in applicable:
                if any(glob.matches(tool) for glob in rule.tools):
                    return rule.effect is Effect.ALLOW
            return default

        return allowed


_RULE_FIELDS = frozenset(
    {"effect", "tools", "users", "email_domains", "groups", "clients", "catalogued"}
)
_FIELDS = frozenset({"default", "rules"})


def parse_tool_policy(data: object) -> ToolPolicy:
    """A ToolPolicy from a decoded JSON/TOML document; RuleError says what is wrong."""
    if not isinstance(data, dict):
        raise RuleError("the document must be an object with 'default' and 'rules'")
    unknown = set(data) - _FIELDS
    if unknown:
        raise RuleError(f"unknown field {sorted(unknown)[0]!r} (known: default, rules)")
    default = _effect(data.get("default"), "default")
    rules = data.get("rules", [])
    if not isinstance(rules, list):
        raise RuleError("'rules' must be a list of tables")
    return ToolPolicy(
        rules=tuple(_rule(item, n) for n, item in enumerate(rules, start=1)),
        default=default,
    )


def _effect(value: object, where: str) -> Effect:
    if value not in ("allow", "deny"):
        raise RuleError(f'{where}: must be "allow" or "deny", not {value!r}')
    return Effect(value)


def _rule(item: object, number: int) -> Rule:
    where = f"rules[{number}]"
    if not isinstance(item, dict):
        raise RuleError(f"{where}: each rule must be a table")
    unknown = set(item) - _RULE_FIELDS
    if unknown:
        known = ", ".join(sorted(_RULE_FIELDS))
        raise RuleError(f"{where}: unknown field {sorted(unknown)[0]!r} ({known})")
    tools = _strings(item.get("tools"), f"{where}.tools")
    if tools is None:
        raise RuleError(f"{where}: 'tools' is required (\"*\" for every tool)")
    catalogued = item.get("catalogued")
    if catalogued is not None and not isinstance(catalogued, bool):
        raise RuleError(f"{where}.catalogued: must be true or false")
    users = _strings(item.get("users"), f"{where}.users")
    domains = _strings(item.get("email_domains"), f"{where}.email_domains")
    return Rule(
        effect=_effect(item.get("effect"), f"{where}.effect"),
        tools=tuple(_glob(g, f"{where}.tools") for g in tools),
        # An email compares case-insensitively; a sub exactly (kept as given).
        users=None
        if users is None
        else frozenset({*users, *(u.lower() for u in users if "@" in u)}),
        email_domains=None
        if domains is None
        else frozenset(d.lower().lstrip("@") for d in domains),
        groups=_frozen(_strings(item.get("groups"), f"{where}.groups")),
        clients=_frozen(_strings(item.get("clients"), f"{where}.clients")),
        catalogued=catalogued,
        number=number,
    )


def _glob(text: str, where: str) -> ToolGlob:
    try:
        return parse_glob(text)
    except RuleError as exc:
        raise RuleError(f"{where}: {exc}") from None


def _strings(value: object, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if (
        not isinstance(items, list)
        or not items
        or not all(isinstance(v, str) and v for v in items)
    ):
        raise RuleError(f"{where}: give a non-empty list of strings")
    return tuple(items)


def _frozen(values: tuple[str, ...] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)
