"""``python -m proxy admin clients``: list, show, disable, enable, delete.

A client is found in four places: STATIC_CLIENTS_FILE (static), its
``client:`` registration (DCR), its cached metadata document (CIMD: a URL
client id has no registration), and the grants that name it. Disabling one
marks it (refused at authorize, consent, token, revoke, introspect) and then
ends its grants, in that order: a code minted meanwhile cannot be redeemed.
"""

from __future__ import annotations

import argparse
import typing as t
from urllib.parse import urlsplit

from proxy.cli import tables
from proxy.cli.admin_context import NOT_FOUND
from proxy.cli.admin_context import OK
from proxy.cli.admin_context import USAGE
from proxy.cli.admin_context import Admin
from proxy.cli.admin_context import now
from proxy.cli.admin_grants import COLUMNS as GRANT_COLUMNS
from proxy.cli.admin_grants import summary_dict
from proxy.clients.documents import CachedDocument
from proxy.store.documents import document_id

if t.TYPE_CHECKING:
    from proxy.store.records import Grant

COLUMNS: list[tables.Column] = [
    ("KIND", "kind", tables.text),
    ("CLIENT ID", "client_id", tables.text),
    ("NAME", "name", tables.text),
    ("REDIRECT HOSTS", "redirect_hosts", tables.text),
    ("GRANTS", "grants", tables.text),
    ("LAST USE", "last_used_at", tables.when),
    ("STATUS", "status", tables.text),
]

DETAILS: list[tables.Column] = [
    ("client id", "client_id", tables.text),
    ("kind", "kind", tables.text),
    ("name", "name", tables.text),
    ("status", "status", tables.text),
    ("disabled at", "disabled_at", tables.when),
    ("redirect uris", "redirect_uris", tables.text),
    ("auth method", "auth_method", tables.text),
    ("registered at", "registered_at", tables.when),
    ("expires in (s)", "expires_in", tables.text),
    ("grants", "grants", tables.text),
    ("last use", "last_used_at", tables.when),
]


def add_parser(commands: t.Any, common: argparse.ArgumentParser) -> None:
    clients = commands.add_parser("clients", help="static, DCR and CIMD clients")
    actions = clients.add_subparsers(dest="action", required=True)
    actions.add_parser(
        "list", parents=[common], help="every client, its grants and last use"
    ).set_defaults(run=list_clients)
    for name, run, text in (
        ("show", show_client, "one client in full, with its grants"),
        ("enable", enable_client, "let a disabled client in again"),
    ):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("client_id", metavar="ID")
        action.set_defaults(run=run)
    disable = actions.add_parser(
        "disable",
        parents=[common],
        help="refuse the client everywhere and end its grants",
    )
    disable.add_argument("client_id", metavar="ID")
    _scan_option(disable)
    disable.set_defaults(run=disable_client)
    delete = actions.add_parser(
        "delete", parents=[common], help="delete a DCR registration and its grants"
    )
    delete.add_argument("client_id", metavar="ID")
    _scan_option(delete)
    delete.set_defaults(run=delete_client)


def _scan_option(parser: argparse.ArgumentParser) -> None:
    # J37: grants older than the indexes are in none of them.
    parser.add_argument(
        "--scan",
        action="store_true",
        help="also walk every grant (finds grants made before the indexes existed)",
    )


# -- reading ---------------------------------------------------------------------------


def _row(
    admin: Admin,
    client_id: str,
    *,
    name: str | None = None,
    redirect_uris: t.Iterable[str] = (),
    **extra: t.Any,
) -> dict[str, t.Any]:
    uris = list(redirect_uris)
    return {
        "client_id": client_id,
        "kind": admin.kind_of(client_id),
        "name": name,
        "redirect_uris": uris,
        "redirect_hosts": sorted({urlsplit(u).hostname or u for u in uris}),
        "grants": 0,
        "last_used_at": None,
        "disabled_at": None,
        "status": "enabled",
        **extra,
    }


def _document_row(admin: Admin, raw: str | None) -> dict[str, t.Any] | None:
    cached = CachedDocument.from_json(raw)
    if cached is None or not isinstance(cached.body.get("client_id"), str):
        return None
    body = cached.body
    return _row(
        admin,
        body["client_id"],
        name=body.get("client_name"),
        redirect_uris=body.get("redirect_uris") or (),
        auth_method=body.get("token_endpoint_auth_method", "none"),
        fetched_at=int(cached.fetched_at),
    )


def inventory(admin: Admin) -> dict[str, dict[str, t.Any]]:
    """Every client the proxy knows of, by id, with its grant count and last use."""
    rows: dict[str, dict[str, t.Any]] = {}
    for static in admin.static.values():
        rows[static.client_id] = _row(
            admin,
            static.client_id,
            name=static.client_name,
            redirect_uris=static.redirect_uris,
        )
    for stored in admin.inventory.registered_clients():
        record = stored.record
        rows[record.client_id] = _row(
            admin,
            record.client_id,
            name=record.metadata.get("client_name"),
            redirect_uris=record.redirect_uris,
            auth_method=record.token_endpoint_auth_method,
            registered_at=record.client_id_issued_at,
            expires_in=stored.ttl_seconds,
        )
    for raw in admin.inventory.client_documents():
        row = _document_row(admin, raw)
        if row is not None:
            rows.setdefault(row["client_id"], row)
    for grant in admin.store.grant_index.every_grant():
        _count(rows.setdefault(grant.client_id, _row(admin, grant.client_id)), grant)
    for mark in admin.store.disabled_clients.every():
        row = rows.setdefault(mark.client_id, _row(admin, mark.client_id))
        row.update(disabled_at=mark.disabled_at, status="disabled")
    return rows


def _count(row: dict[str, t.Any], grant: Grant) -> None:
    row["grants"] += 1
    if grant.last_used_at and grant.last_used_at > (row["last_used_at"] or 0):
        row["last_used_at"] = grant.last_used_at


def one_client(admin: Admin, client_id: str) -> dict[str, t.Any] | None:
    """One client's row, from its own keys and indexes (no SCAN); None if the
    proxy knows nothing of it."""
    row: dict[str, t.Any] | None = None
    static = admin.static.get(client_id)
    if static is not None:
        row = _row(
            admin,
            client_id,
            name=static.client_name,
            redirect_uris=static.redirect_uris,
        )
    elif admin.kind_of(client_id) == "cimd":
        raw, _ = admin.store.documents.read(document_id("client_metadata", client_id))
        row = _document_row(admin, raw)
    else:
        stored = admin.inventory.registered_client(client_id)
        if stored is not None:
            record = stored.record
            row = _row(
                admin,
                client_id,
                name=record.metadata.get("client_name"),
                redirect_uris=record.redirect_uris,
                auth_method=record.token_endpoint_auth_method,
                registered_at=record.client_id_issued_at,
                expires_in=stored.ttl_seconds,
            )
    grants = admin.store.grant_index.of_client(client_id)
    mark = admin.store.disabled_clients.load(client_id)
    if row is None and not grants and mark is None:
        return None
    row = row or _row(admin, client_id)
    for grant in grants:
        _count(row, grant)
    row["grant_list"] = [grant.summary() for grant in grants]
    if mark is not None:
        row.update(disabled_at=mark.disabled_at, status="disabled")
    return row


def list_clients(admin: Admin, args: argparse.Namespace) -> int:
    rows = sorted(inventory(admin).values(), key=lambda r: (r["kind"], r["client_id"]))
    if admin.json:
        admin.out.write(tables.as_json(rows))
    else:
        admin.out.write(tables.table(rows, COLUMNS))
    return OK


def show_client(admin: Admin, args: argparse.Namespace) -> int:
    row = one_client(admin, args.client_id)
    if row is None:
        return admin.fail(NOT_FOUND, f"no client {args.client_id!r} is known")
    grants = [summary_dict(s) for s in row.pop("grant_list")]
    if admin.json:
        admin.out.write(tables.as_json({**row, "grant_list": grants}))
        return OK
    admin.out.write(tables.pairs(row, DETAILS))
    if grants:
        admin.out.write("\n" + tables.table(grants, GRANT_COLUMNS))
    return OK


# -- changing --------------------------------------------------------------------------


def _grants_of(admin: Admin, client_id: str, *, scan: bool) -> list[Grant]:
    grants = {g.grant_id: g for g in admin.store.grant_index.of_client(client_id)}
    if scan:
        for grant in admin.store.grant_index.every_grant():
            if grant.client_id == client_id:
                grants.setdefault(grant.grant_id, grant)
    return list(grants.values())


#: A token request that read no mark just before `disable` wrote it may still
#: slide the registration to its full TTL (it happens within seconds).
SLIDE_MARGIN_SECONDS = 60


def mark_ttl(remaining: int | None, client_ttl: int) -> int | None:
    """How long a registered client's mark lives: as long as the registration
    could, so it never lapses while the client still exists (None: for ever).
    """
    if remaining is None or client_ttl == 0:
        return None
    return max(remaining, client_ttl) + SLIDE_MARGIN_SECONDS


def disable_client(admin: Admin, args: argparse.Namespace) -> int:
    client_id = args.client_id
    kind = admin.kind_of(client_id)
    ttl: int | None = None
    if kind == "dcr":
        stored = admin.inventory.registered_client(client_id)
        if stored is None:
            return admin.fail(
                NOT_FOUND,
                f"no client {client_id!r} is registered (a static client is known "
                "only with STATIC_CLIENTS_FILE set)",
            )
        ttl = mark_ttl(stored.ttl_seconds, admin.client_ttl_seconds)
    # The mark first: from now on no code is redeemed and no token refreshed,
    # so a grant created while its siblings are revoked below is dead on arrival.
    admin.store.disabled_clients.disable(client_id, now=now(), ttl=ttl)
    ended = admin.end_grants(_grants_of(admin, client_id, scan=args.scan))
    admin.acted("clients.disable", client_id, ended, client_id=client_id)
    admin.say(
        f"disabled {kind} client {client_id}; {ended} grant(s) ended",
        action="clients.disable",
        client_id=client_id,
        count=ended,
    )
    return OK


def enable_client(admin: Admin, args: argparse.Namespace) -> int:
    client_id = args.client_id
    if admin.store.disabled_clients.enable(client_id):
        admin.acted("clients.enable", client_id, 1, client_id=client_id)
        admin.say(
            f"enabled client {client_id} (its ended grants stay ended)",
            action="clients.enable",
            client_id=client_id,
            count=1,
        )
        return OK
    if one_client(admin, client_id) is None:
        return admin.fail(NOT_FOUND, f"no client {client_id!r} is known")
    admin.say(
        f"client {client_id} was not disabled",
        action="clients.enable",
        client_id=client_id,
        count=0,
    )
    return OK


def delete_client(admin: Admin, args: argparse.Namespace) -> int:
    client_id = args.client_id
    kind = admin.kind_of(client_id)
    if kind != "dcr":
        where = (
            "STATIC_CLIENTS_FILE"
            if kind == "static"
            else "its own document; disable it instead"
        )
        return admin.fail(USAGE, f"a {kind} client is not registered here: see {where}")
    if admin.inventory.registered_client(client_id) is None:
        return admin.fail(NOT_FOUND, f"no client {client_id!r} is registered")
    # Refused first, as for disable: nothing it starts now can finish.
    admin.store.disabled_clients.disable(client_id, now=now(), ttl=60)
    ended = admin.end_grants(_grants_of(admin, client_id, scan=args.scan))
    admin.inventory.delete_client(client_id)
    admin.acted("clients.delete", client_id, ended, client_id=client_id)
    admin.say(
        f"deleted client {client_id}; {ended} grant(s) ended",
        action="clients.delete",
        client_id=client_id,
        count=ended,
    )
    return OK
