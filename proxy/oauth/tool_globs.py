"""Tool-name globs (`delete_*`, `files.?`), compiled once, matched per call.

Shell-style, case-sensitive (tool names are), `*` and `?` only: a character
class (`[...]`) in an operator's file is refused rather than half-understood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class RuleError(ValueError):
    """A rule file that cannot be used: the message says where and why."""


@dataclass(frozen=True, slots=True)
class ToolGlob:
    text: str
    pattern: re.Pattern[str] | None  # None: an exact name, compared as a string

    def matches(self, tool: str) -> bool:
        if self.pattern is None:
            return tool == self.text
        return self.pattern.fullmatch(tool) is not None

    @property
    def exact(self) -> bool:
        return self.pattern is None


def parse_glob(text: object) -> ToolGlob:
    """A glob from a rule file; RuleError unless a non-empty string of `*`, `?`."""
    if not isinstance(text, str) or not text or len(text) > 128:
        raise RuleError(f"{text!r} is not a tool name or glob (1-128 characters)")
    if "[" in text or "]" in text:
        raise RuleError(f"{text!r}: only '*' and '?' are wildcards; drop '[' and ']'")
    if "*" not in text and "?" not in text:
        return ToolGlob(text, None)
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text
    )
    return ToolGlob(text, re.compile(regex, re.DOTALL))
