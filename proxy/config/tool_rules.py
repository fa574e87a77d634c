"""MCP_TOOL_SCOPES and MCP_TOOL_POLICY: reading the operator's rule files.

Each variable holds a path to a `.toml` or `.json` file, or the JSON itself
(a value starting with `{`). A file that cannot be read or does not hold valid
rules is a :class:`ConfigError` naming the variable, the file and the problem;
the gateway re-reads a changed policy file through :func:`read_policy` and
keeps the last good policy when the new one is bad.
"""

from __future__ import annotations

import json
import os
import tomllib
import typing as t
from dataclasses import dataclass

from proxy.config.env import ConfigError
from proxy.oauth.tool_globs import RuleError
from proxy.oauth.tool_policy import ToolPolicy
from proxy.oauth.tool_policy import parse_tool_policy
from proxy.oauth.tool_scopes import ToolScopes
from proxy.oauth.tool_scopes import parse_tool_scopes

MAX_RULES_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RulesSource:
    """Where a rule document comes from: a file (re-readable) or inline JSON."""

    variable: str
    path: str | None = None
    inline: str | None = None

    @classmethod
    def of(cls, variable: str, value: str) -> RulesSource | None:
        value = value.strip()
        if not value:
            return None
        if value.startswith("{"):
            return cls(variable, inline=value)
        return cls(variable, path=value)

    @property
    def where(self) -> str:
        return f"{self.variable}={self.path}" if self.path else self.variable

    def stamp(self) -> tuple[int, int] | None:
        """(mtime_ns, size) of the file: a change means re-read. None: inline/gone."""
        if self.path is None:
            return None
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size)

    def document(self) -> object:
        """The decoded document; ConfigError naming the variable otherwise."""
        if self.inline is not None:
            return decode_json(self.inline.encode(), self.where)
        return read_document(t.cast(str, self.path), self.where)


def read_document(path: str, where: str) -> object:
    """A .toml or .json file of settings, decoded; ConfigError naming `where`
    (the variable, and the path) otherwise. Read no further than
    MAX_RULES_FILE_BYTES."""
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_RULES_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"{where}: cannot be read ({exc.strerror or exc}); give a "
            ".toml or .json file, or the JSON itself"
        ) from None
    if len(raw) > MAX_RULES_FILE_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_RULES_FILE_BYTES} bytes")
    if path.endswith(".toml"):
        try:
            return tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}: not valid TOML ({exc})") from None
    return decode_json(raw, where)


def decode_json(raw: bytes, where: str) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc})") from None


def read_tool_scopes(source: RulesSource) -> ToolScopes:
    try:
        return parse_tool_scopes(source.document())
    except RuleError as exc:
        raise ConfigError(f"{source.where}: {exc}") from None


def read_policy(source: RulesSource) -> ToolPolicy:
    try:
        return parse_tool_policy(source.document())
    except RuleError as exc:
        raise ConfigError(f"{source.where}: {exc}") from None
