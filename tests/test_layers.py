"""Layering (style 7.1): rule modules import neither flask nor redis."""

from __future__ import annotations

import ast
import pathlib

import pytest

PROXY = pathlib.Path(__file__).resolve().parents[1] / "proxy"
RULE_MODULES = (
    "pkce",
    "redirect_uris",
    "scopes",
    "client_metadata",
    "resources",
    "crypto",
    "tokens",
)
FORBIDDEN = ("flask", "redis")


def forbidden_imports(source: str) -> list[str]:
    """Top-level names of forbidden packages that `source` imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [name for name in names if name.split(".")[0] in FORBIDDEN]
    return found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import flask", ["flask"]),
        ("import redis.exceptions", ["redis.exceptions"]),
        ("import os, redis as r", ["redis"]),
        ("from flask import request", ["flask"]),
        ("from redis.exceptions import ConnectionError", ["redis.exceptions"]),
        ("def f():\n    import flask\n", ["flask"]),
        (
            "import typing as t\nif t.TYPE_CHECKING:\n    from flask import Request\n",
            ["flask"],
        ),
        ("from . import redis_helpers\nimport flask_cors_like", []),
        ("import redisx\nfrom .store import redis", []),
    ],
)
def test_the_scan_finds_every_import_form(source: str, expected: list[str]) -> None:
    assert forbidden_imports(source) == expected


@pytest.mark.parametrize("module", RULE_MODULES)
def test_rule_module_imports_neither_flask_nor_redis(module: str) -> None:
    """Style 7.1: rule modules take plain values; tests/test_layers.py guards it."""
    path = PROXY / f"{module}.py"
    assert forbidden_imports(path.read_text(encoding="utf-8")) == []


def _local_imports(path: pathlib.Path) -> list[pathlib.Path]:
    """Modules of this package that `path` imports (package __init__s excluded)."""
    package = path.parent
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = package
        for _ in range(node.level - 1):
            base = base.parent
        parts = node.module.split(".") if node.module else []
        target = base.joinpath(*parts)
        candidates = [target.with_suffix(".py")] if parts else []
        candidates += [target / f"{alias.name}.py" for alias in node.names]
        found += [c for c in candidates if c.exists()]
    return found


def transitive_forbidden_imports(path: pathlib.Path) -> dict[str, list[str]]:
    seen: set[pathlib.Path] = set()
    todo = [path]
    offenders = {}
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        names = forbidden_imports(current.read_text(encoding="utf-8"))
        if names:
            offenders[current.name] = names
        todo += _local_imports(current)
    return offenders


@pytest.mark.parametrize("module", ["client_metadata", "tokens"])
def test_rule_module_does_not_reach_flask_or_redis_through_errors(module: str) -> None:
    assert transitive_forbidden_imports(PROXY / f"{module}.py") == {}


@pytest.mark.parametrize(
    "module", ["pkce", "redirect_uris", "scopes", "resources", "crypto"]
)
def test_rule_module_does_not_reach_flask_or_redis_at_all(module: str) -> None:
    assert transitive_forbidden_imports(PROXY / f"{module}.py") == {}
