"""proxy/store/keys.py: the key schema in code matches the schema in prose."""

from __future__ import annotations

import ast
import inspect
import pathlib
import re

import pytest

from proxy.store.keys import Keys

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROXY = ROOT / "proxy"
SCHEMA_DOC = ROOT / "docs" / "storage-schema.md"
KEYS_MODULE = PROXY / "store" / "keys.py"


def _builders() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(Keys, inspect.isfunction)
        if not name.startswith("_")
    }


def _pattern(name: str) -> str:
    """The key a builder makes, with each argument shown as `{param}`."""
    params = [p for p in _builders()[name].parameters if p != "self"]
    key = getattr(Keys(""), name)(*[f"{{{p}}}" for p in params])
    # trace:{trN}:...: the bucket tag is made of the id's first character,
    # here the placeholder's brace.
    key = key.replace("{tr{}", "{trN}")
    # grant:{{grant_id}}: the hash-tag braces are the placeholder's own.
    return re.sub(r"\{\{(\w+)\}\}", r"{\1}", key)


def test_there_are_builders() -> None:
    assert {"client", "txn", "grant", "signing_keys"} <= set(_builders())


@pytest.mark.parametrize("name", sorted(_builders()))
def test_builder_docstring_opens_with_its_pattern(name: str) -> None:
    """Each builder's docstring names the key it builds."""
    doc = inspect.getdoc(getattr(Keys, name)) or ""
    match = re.match(r"``([^`]+)``", doc)
    assert match, f"Keys.{name} docstring must open with ``pattern``"
    assert match.group(1) == _pattern(name)


@pytest.mark.parametrize("name", sorted(_builders()))
def test_builder_is_in_the_storage_schema_document(name: str) -> None:
    """docs/storage-schema.md documents every key the code builds."""
    assert SCHEMA_DOC.exists(), "docs/storage-schema.md is missing"
    assert f"`{_pattern(name)}`" in SCHEMA_DOC.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(_builders()))
def test_builder_uses_the_prefix(name: str) -> None:
    params = [p for p in _builders()[name].parameters if p != "self"]
    key = getattr(Keys("pfx:"), name)(*["x"] * len(params))
    assert key.startswith("pfx:")


def test_grant_key_is_a_cluster_hash_tag() -> None:
    """Keys one script touches together share the `{grant_id}` hash tag."""
    assert Keys("p:").grant("abc") == "p:grant:{abc}"


# -- no key string is built outside keys.py --------------------------------------------

_KEY_PIECE = re.compile(r"(^|:)(client|txn|grant|code|rt):|mcpoauth:.")
_KEYS_RECORD = re.compile(r"(^|:)keys$")


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(
            node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
        ):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
            ):
                ids.add(id(body[0].value))
    return ids


def _strip_lua_comments(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def key_pieces(source: str) -> list[str]:
    """String literals in `source` that look like a piece of a Redis key."""
    tree = ast.parse(source)
    docstrings = _docstring_nodes(tree)
    found = []
    # `keys` alone is also a JSON member name; it is a key only when joined on.
    for node in ast.walk(tree):
        parts: list[ast.expr] = []
        if isinstance(node, ast.JoinedStr):
            parts = node.values
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            parts = [node.left, node.right]
        found += [
            part.value
            for part in parts
            if isinstance(part, ast.Constant)
            and isinstance(part.value, str)
            and _KEYS_RECORD.search(part.value)
        ]
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
            continue
        if id(node) in docstrings:
            continue
        text = node.value
        if "redis.call" in text:  # a Lua script: only its code counts
            text = _strip_lua_comments(text)
            found += [
                m.group(0)
                for m in re.finditer(r"'[^']*(client|txn|grant|code|rt):", text)
            ]
            continue
        if any(_KEY_PIECE.search(line.strip()) for line in text.splitlines() or [text]):
            found.append(text)
    return found


def _sources() -> list[pathlib.Path]:
    return sorted(p for p in PROXY.rglob("*.py") if p != KEYS_MODULE)


@pytest.mark.parametrize(
    "source",
    [
        'key = prefix + "client:" + client_id',
        'key = f"{prefix}grant:{{{grant_id}}}"',
        'key = f"{self.prefix}txn:{state}"',
        'key = "mcpoauth:keys"',
        'key = settings.key_prefix + "keys"',
        'SCRIPT = """\nredis.call(\'GET\', \'mcp:code:\' .. ARGV[1])\n"""',
    ],
)
def test_the_scan_finds_a_key_built_by_hand(source: str) -> None:
    """The scan below would catch each way of building a key elsewhere."""
    assert key_pieces(source)


def test_the_scan_ignores_docstrings_and_lua_comments() -> None:
    source = (
        '"""Reads ``grant:{grant_id}``."""\n'
        'S = """\n-- KEYS[1] = grant:{grant_id}\nredis.call(\'GET\', KEYS[1])\n"""\n'
        'KEYS_JSON = {"keys": []}\n'
    )
    assert key_pieces(source) == []


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_key_is_built_outside_keys_py(path: pathlib.Path) -> None:
    """proxy/store/keys.py is the only place a key string is built."""
    assert key_pieces(path.read_text(encoding="utf-8")) == []


def test_the_key_prefix_reaches_only_the_store() -> None:
    """Only create_app hands `settings.key_prefix` on (to Store, then Keys)."""
    users = [
        str(p.relative_to(ROOT))
        for p in _sources()
        if "key_prefix" in p.read_text(encoding="utf-8")
    ]
    assert sorted(users) == ["proxy/__init__.py", "proxy/config/settings.py"]
