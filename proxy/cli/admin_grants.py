"""``python -m proxy admin grants``: list and revoke grants.

By user, by client (the ``grants:user`` / ``grants:client`` indexes, pruned as
they are read) or all of them (SCAN). Revoking deletes the grant: the gateway
refuses its access tokens on their next request and the token endpoint its
refresh token (``invalid_grant``), on every worker at once.
"""

from __future__ import annotations

import argparse
import typing as t
from dataclasses import asdict

from proxy.cli import tables
from proxy.cli.admin_context import NOT_FOUND
from proxy.cli.admin_context import OK
from proxy.cli.admin_context import USAGE
from proxy.cli.admin_context import Admin

if t.TYPE_CHECKING:
    from proxy.store.records import Grant
    from proxy.store.records import GrantSummary

COLUMNS: list[tables.Column] = [
    ("GRANT", "grant_id", tables.text),
    ("CLIENT ID", "client_id", tables.text),
    ("USER", "sub", tables.text),
    ("EMAIL", "email", tables.text),
    ("SCOPE", "scope", tables.text),
    ("CREATED", "created_at", tables.when),
    ("LAST USE", "last_used_at", tables.when),
]


def add_parser(commands: t.Any, common: argparse.ArgumentParser) -> None:
    grants = commands.add_parser("grants", help="list and revoke grants")
    actions = grants.add_subparsers(dest="action", required=True)

    listing = actions.add_parser("list", parents=[common], help="list grants")
    which = listing.add_mutually_exclusive_group(required=True)
    which.add_argument("--user", metavar="SUB", help="one user's grants")
    which.add_argument("--client", metavar="ID", help="one client's grants")
    which.add_argument("--all", action="store_true", help="every grant (SCAN)")
    _scan_option(listing)
    listing.set_defaults(run=list_grants)

    revoke = actions.add_parser(
        "revoke", parents=[common], help="end one grant, a user's, or all"
    )
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("grant_id", nargs="?", metavar="GRANT_ID")
    target.add_argument("--user", metavar="SUB", help="every grant of a user")
    target.add_argument("--all", action="store_true", help="every grant (needs --yes)")
    revoke.add_argument("--yes", action="store_true", help="confirm --all")
    _scan_option(revoke)
    revoke.set_defaults(run=revoke_grants)


def _scan_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scan",
        action="store_true",
        # J37: grants older than the indexes are in none of them.
        help="with --user/--client: also walk every grant (finds grants made "
        "before the indexes existed)",
    )


def summary_dict(summary: GrantSummary) -> dict[str, t.Any]:
    return asdict(summary)


def _selected(admin: Admin, args: argparse.Namespace) -> list[Grant]:
    """The grants `args` name: by index, plus a walk of every grant with --scan."""
    index = admin.store.grant_index
    if args.all:
        return list(index.every_grant())
    if args.user is not None:
        found, field, value = index.of_user(args.user), "sub", args.user
    else:
        found, field, value = index.of_client(args.client), "client_id", args.client
    if args.scan:
        known = {g.grant_id for g in found}
        found += [
            g
            for g in index.every_grant()
            if getattr(g, field) == value and g.grant_id not in known
        ]
    return found


def list_grants(admin: Admin, args: argparse.Namespace) -> int:
    rows = [
        summary_dict(g.summary())
        for g in sorted(_selected(admin, args), key=lambda g: -g.created_at)
    ]
    if admin.json:
        admin.out.write(tables.as_json(rows))
    else:
        admin.out.write(tables.table(rows, COLUMNS))
    return OK


def revoke_grants(admin: Admin, args: argparse.Namespace) -> int:
    if args.grant_id is not None:
        grant = admin.store.load_grant(args.grant_id)
        if grant is None:
            return admin.fail(NOT_FOUND, f"no live grant {args.grant_id!r}")
        ended = admin.end_grants([grant])
        admin.acted(
            "grants.revoke",
            grant.grant_id[:8],
            ended,
            client_id=grant.client_id,
            sub=grant.sub,
        )
        return _done(admin, f"revoked grant {grant.grant_id}", ended)
    if args.all and not args.yes:
        return admin.fail(USAGE, "revoking every grant needs --yes")
    grants = _selected(admin, args)
    ended = admin.end_grants(grants)
    if args.all:
        admin.acted("grants.revoke_all", "*", ended)
        return _done(admin, f"revoked all {ended} grant(s)", ended)
    admin.acted("grants.revoke_user", args.user, ended, sub=args.user)
    return _done(admin, f"revoked {ended} grant(s) of user {args.user}", ended)


def _done(admin: Admin, message: str, count: int) -> int:
    admin.say(message, action="grants.revoke", count=count)
    return OK
