"""`python -m proxy admin`: operate on the shared store, without the web app.

``clients list | show ID | disable ID | enable ID | delete ID``,
``grants list --user SUB | --client ID | --all``, ``grants revoke GRANT_ID |
--user SUB | --all --yes`` and ``stats``. A table by default, ``--json`` for
scripts. Exit codes: 0 done, 1 the client or grant named does not exist, 2
bad usage or configuration (REDIS_URL missing, Redis unreachable).

Reads REDIS_URL, REDIS_KEY_PREFIX, STATIC_CLIENTS_FILE, CLIENT_TTL_SECONDS
and AUDIT_LOG from the environment (``python -m proxy`` loads ``.env``
first). Every change is an ``admin.action`` audit event (with a
``grant.revoked`` per grant it ended), written to stderr as the app writes
its audit lines.
"""

from __future__ import annotations

import argparse
import typing as t

import redis
import redis.exceptions

from proxy.cli import admin_clients
from proxy.cli import admin_grants
from proxy.cli import admin_stats
from proxy.cli.admin_context import USAGE
from proxy.cli.admin_context import Admin
from proxy.cli.operands import dash_operands
from proxy.config.env import ConfigError
from proxy.config.env import EnvReader
from proxy.config.redis_topology import shared_store
from proxy.config.settings import DEFAULT_KEY_PREFIX
from proxy.config.settings import read_client_ttl
from proxy.observability.audit import AuditLog
from proxy.observability.events import Events
from proxy.store import Store
from proxy.store import connection
from proxy.store.inventory import Inventory

if t.TYPE_CHECKING:
    from collections.abc import Mapping


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON")
    root = argparse.ArgumentParser(
        prog="python -m proxy admin",
        description="Manage clients and grants in the shared store.",
    )
    commands = root.add_subparsers(dest="command", required=True)
    admin_clients.add_parser(commands, common)
    admin_grants.add_parser(commands, common)
    admin_stats.add_parser(commands, common)
    return root


def main(
    argv: list[str],
    environ: Mapping[str, str],
    out: t.TextIO,
    *,
    redis_client: redis.Redis | None = None,
    events: Events | None = None,
) -> int:
    try:
        admin_parser = parser()
        args = admin_parser.parse_args(dash_operands(list(argv), admin_parser))
    except SystemExit as exc:  # argparse has printed the usage or the help
        return exc.code if isinstance(exc.code, int) else USAGE
    env = EnvReader(environ)
    try:
        prefix = env.text("REDIS_KEY_PREFIX", DEFAULT_KEY_PREFIX)
        static = {c.client_id: c for c in env.static_clients("STATIC_CLIENTS_FILE")}
        client_ttl = read_client_ttl(env)
        hub = events if events is not None else _audit(env)
        store_at = None if redis_client is not None else shared_store(env)
    except ConfigError as exc:
        out.write(f"{exc}\n")
        return USAGE

    def run(client: redis.Redis) -> int:
        store = Store(client, prefix)
        admin = Admin(
            store=store,
            inventory=Inventory(client, store.keys),
            static=static,
            events=hub,
            out=out,
            json=args.json,
            client_ttl_seconds=client_ttl,
        )
        try:
            return int(args.run(admin, args))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            return admin.fail(USAGE, f"Redis did not answer: {exc.__class__.__name__}")

    if redis_client is not None:
        return run(redis_client)
    try:
        own_client = connection.connect(store_at)
    except ValueError as exc:  # a REDIS_URL redis-py cannot parse
        out.write(f"REDIS_URL: {exc}\n")
        return USAGE
    with own_client:
        return run(own_client)


def _audit(env: EnvReader) -> Events:
    """The hub the app would build: the audit log unless AUDIT_LOG=false."""
    hub = Events()
    if env.flag("AUDIT_LOG", True):
        hub.subscribe(AuditLog())
    return hub
