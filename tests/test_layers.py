"""The layering of docs/architecture.md, enforced by reading every module's imports.

Rooms import downwards only: endpoints → the role rooms → store. Pure rules in
`proxy/oauth/` import neither Flask nor Redis, and no module-level import cycle
exists anywhere in the package.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROXY = ROOT / "proxy"
ROOMS = {
    "cli",
    "clients",
    "config",
    "endpoints",
    "front_channel",
    "grants",
    "keys",
    "observability",
    "oauth",
    "resource_server",
    "store",
    "upstream",
    "web",
}
TOP_LEVEL_FILES = {"__init__.py", "__main__.py", "app_state.py"}
WEB_FRAMEWORKS = ("flask", "redis")


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PROXY.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def imported_names(source: str, *, runtime_top_level: bool = False) -> list[str]:
    """Absolute names `source` imports (`from a import b` gives `a.b` and `a`).

    With ``runtime_top_level``, only what runs at import time: module-level
    statements outside ``if TYPE_CHECKING:`` (what can form an import cycle).
    """
    tree = ast.parse(source)
    if runtime_top_level:
        nodes: list[ast.AST] = []
        for node in tree.body:
            if isinstance(node, ast.If) and _is_type_checking(node):
                continue
            nodes.append(node)
    else:
        nodes = list(ast.walk(tree))
    found: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                raise AssertionError(f"relative import of {node.module!r}")
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def proxy_modules_imported(path: pathlib.Path, **kw: bool) -> set[str]:
    """Modules of this package that `path` imports (names that are modules)."""
    source = path.read_text(encoding="utf-8")
    return {name for name in imported_names(source, **kw) if name in MODULES}


def framework_imports(path: pathlib.Path) -> list[str]:
    names = imported_names(path.read_text(encoding="utf-8"))
    return [n for n in names if n.split(".")[0] in WEB_FRAMEWORKS and "." not in n]


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or module.endswith(".store") else module


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import flask", ["flask"]),
        ("import os, redis as r", ["os", "redis"]),
        ("from flask import request", ["flask", "flask.request"]),
        ("def f():\n    import flask\n", ["flask"]),
        (
            "import typing as t\nif t.TYPE_CHECKING:\n    from flask import Request\n",
            ["typing", "flask", "flask.Request"],
        ),
    ],
)
def test_the_scan_finds_every_import_form(source: str, expected: list[str]) -> None:
    assert imported_names(source) == expected


def test_the_runtime_scan_skips_type_checking_and_function_imports() -> None:
    source = (
        "import typing as t\nif t.TYPE_CHECKING:\n    import flask\n"
        "def f():\n    import redis\n"
    )
    assert imported_names(source, runtime_top_level=True) == ["typing"]


def test_top_level_holds_only_the_factory_the_shim_and_app_state() -> None:
    files = {p.name for p in PROXY.iterdir() if p.is_file() and p.suffix == ".py"}
    folders = {
        p.name for p in PROXY.iterdir() if p.is_dir() and p.name != "__pycache__"
    }
    assert files == TOP_LEVEL_FILES
    assert folders <= ROOMS
    assert all((PROXY / room / "__init__.py").exists() for room in folders)


def test_imports_are_absolute() -> None:
    for path in MODULES.values():
        imported_names(path.read_text(encoding="utf-8"))  # raises on a relative one


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if m.startswith("proxy.oauth."))
)
def test_oauth_rules_import_neither_flask_nor_redis(module: str) -> None:
    """Pure rules take plain values: no Flask, no Redis, even for type hints."""
    assert framework_imports(MODULES[module]) == []


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if m.startswith("proxy.oauth."))
)
def test_oauth_rules_import_only_rules_and_primitives(module: str) -> None:
    imported = proxy_modules_imported(MODULES[module], runtime_top_level=True)
    allowed = {m for m in imported if m.startswith("proxy.oauth")}
    allowed.add("proxy.keys.keyring")
    assert imported <= allowed | {"proxy.oauth", "proxy.keys"}


def test_the_keyring_is_a_leaf() -> None:
    assert proxy_modules_imported(MODULES["proxy.keys.keyring"]) == set()


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if m.startswith("proxy.store"))
)
def test_the_store_imports_only_itself_and_the_keyring(module: str) -> None:
    imported = proxy_modules_imported(MODULES[module])
    assert all(
        m.startswith("proxy.store") or m in {"proxy.keys", "proxy.keys.keyring"}
        for m in imported
    ), imported
    assert "flask" not in framework_imports(MODULES[module])


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if m.startswith("proxy.upstream."))
)
def test_upstream_providers_know_nothing_of_http_serving(module: str) -> None:
    """The IdP leg is plain HTTP client code: no Flask, no Redis, no app state."""
    assert framework_imports(MODULES[module]) == []
    imported = proxy_modules_imported(MODULES[module])
    assert not {m for m in imported if room_of(m) == "endpoints"}
    assert "proxy.app_state" not in imported


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_factory_imports_endpoints_and_only_the_shim_imports_cli(
    module: str,
) -> None:
    imported = proxy_modules_imported(MODULES[module])
    if not module.startswith("proxy.endpoints") and module != "proxy":
        assert not {m for m in imported if m.startswith("proxy.endpoints.")}
    if not module.startswith("proxy.cli.") and module != "proxy.__main__":
        assert not {m for m in imported if m.startswith("proxy.cli.")}


def _cycle() -> list[str] | None:
    """One module-level import cycle, if there is any (depth-first search)."""
    graph = {
        name: {m for m in proxy_modules_imported(path, runtime_top_level=True)}
        for name, path in MODULES.items()
    }
    # Importing `proxy.a.b` first runs the package __init__s; those are
    # initialised before their children, so they are not cycle edges.
    for name, deps in graph.items():
        graph[name] = {d for d in deps if not name.startswith(d + ".") and d != name}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return visiting[visiting.index(node) :] + [node]
        if node in done:
            return None
        visiting.append(node)
        for dep in sorted(graph[node]):
            found = visit(dep)
            if found:
                return found
        visiting.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start)
        if found:
            return found
    return None


def test_no_module_level_import_cycle() -> None:
    assert _cycle() is None
