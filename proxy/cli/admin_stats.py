"""``python -m proxy admin stats``: clients by kind, live grants, memory, keys.

Memory comes from Redis' INFO (not CONFIG GET, which managed Redis services
often refuse); key counts from SCAN with COUNT, never KEYS.
"""

from __future__ import annotations

import argparse
import typing as t
from collections import Counter
from dataclasses import asdict

from proxy.cli import tables
from proxy.cli.admin_clients import inventory
from proxy.cli.admin_context import OK
from proxy.cli.admin_context import Admin

KEY_COLUMNS: list[tables.Column] = [
    ("KEY KIND", "kind", tables.text),
    ("KEYS", "count", tables.text),
]


def add_parser(commands: t.Any, common: argparse.ArgumentParser) -> None:
    commands.add_parser(
        "stats", parents=[common], help="clients, grants, Redis memory and keys"
    ).set_defaults(run=show_stats)


def stats(admin: Admin) -> dict[str, t.Any]:
    clients = inventory(admin).values()
    by_kind = Counter(row["kind"] for row in clients)
    keys = admin.inventory.key_counts()
    memory = admin.inventory.memory()
    return {
        "clients": {
            "static": by_kind["static"],
            "dcr": by_kind["dcr"],
            "cimd": by_kind["cimd"],
            "disabled": sum(1 for row in clients if row["status"] == "disabled"),
        },
        "live_grants": keys.get("grant", 0),
        "memory": asdict(memory) if memory is not None else None,
        "keys": keys,
    }


def show_stats(admin: Admin, args: argparse.Namespace) -> int:
    report = stats(admin)
    if admin.json:
        admin.out.write(tables.as_json(report))
        return OK
    clients = report["clients"]
    lines = [
        "clients:      " + ", ".join(f"{n} {kind}" for kind, n in clients.items()),
        f"live grants:  {report['live_grants']}",
        f"redis memory: {_memory(report['memory'])}",
        "",
    ]
    admin.out.write("\n".join(lines))
    rows = [{"kind": kind, "count": n} for kind, n in report["keys"].items()]
    admin.out.write(tables.table(rows, KEY_COLUMNS))
    return OK


def _memory(memory: dict[str, t.Any] | None) -> str:
    if memory is None:
        return "unknown (INFO refused)"
    limit = _bytes(memory["max_bytes"]) if memory["max_bytes"] else "no limit"
    return (
        f"{_bytes(memory['used_bytes'])} used of {limit}"
        f" (maxmemory-policy {memory['policy']})"
    )


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
