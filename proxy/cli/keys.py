"""`python -m proxy keys`: list, rotate and retire the JWT signing keys.

``keys list`` shows every stored key, its state now and which secret seals it;
``keys rotate`` publishes a new key that signs after an overlap
(KEY_ROTATION_OVERLAP_SECONDS, default one day, or ``--overlap``) and retires
the old one once the last token it signed has expired (ACCESS_TOKEN_TTL_SECONDS
after the switch); ``keys retire KID`` takes a key out of the JWKS at once (a
compromised key, or a cancelled rotation). Reads REDIS_URL, REDIS_KEY_PREFIX,
PROXY_SECRET_KEY and PROXY_SECRET_KEY_PREVIOUS like the proxy; with SIGNING_KEYS
pinned there is nothing in Redis to change, and rotate and retire refuse.
Each change is an audit event (``keys.rotated``, ``keys.retired``).
"""

from __future__ import annotations

import argparse
import typing as t

import redis

from proxy.cli.operands import dash_operands
from proxy.config.env import ConfigError
from proxy.config.env import EnvReader
from proxy.config.redis_topology import shared_store
from proxy.config.settings import DEFAULT_KEY_PREFIX
from proxy.config.settings import access_token_ttl
from proxy.keys.keyring import Keyring
from proxy.keys.rotation import DEFAULT_OVERLAP_SECONDS
from proxy.keys.rotation import SAFE_MIN_OVERLAP_SECONDS
from proxy.keys.rotation import KeyAdmin
from proxy.keys.rotation import KeysRefusedError
from proxy.keys.schedule import iso
from proxy.observability.audit import AuditLog
from proxy.observability.events import Events
from proxy.store import Store
from proxy.store import connection

if t.TYPE_CHECKING:
    from collections.abc import Callable
    from collections.abc import Mapping

#: KEY_ROTATION_OVERLAP_SECONDS may be at most this (30 days).
MAX_OVERLAP_SECONDS = 30 * 86400
_PINNED = ("SIGNING_KEYS", "SIGNING_KEYS_FILE", "SIGNING_KEY", "SIGNING_KEY_FILE")


def main(
    argv: list[str],
    environ: Mapping[str, str],
    out: t.TextIO,
    *,
    redis_client: redis.Redis | None = None,
    clock: Callable[[], float] | None = None,
    events: Events | None = None,
) -> int:
    keys_parser = _parser()
    args = keys_parser.parse_args(dash_operands(list(argv), keys_parser))
    env = EnvReader(environ)
    pinned = next((name for name in _PINNED if environ.get(name, "").strip()), None)
    if pinned is not None:
        out.write(
            f"{pinned} pins the signing keys: they are not stored in Redis, so "
            f"there is nothing to {args.command} here. Rotate them in {pinned}: "
            "put the new key first and keep the old one after it until "
            "ACCESS_TOKEN_TTL_SECONDS after the new one took over.\n"
        )
        return 0 if args.command == "list" else 2
    try:
        store_at = None if redis_client is not None else shared_store(env)
        # Required even without REDIS_URL (a test's client): it seals the keys.
        secret = env.secret_key("PROXY_SECRET_KEY", shared_store=True)
        previous = env.previous_secret_keys("PROXY_SECRET_KEY_PREVIOUS", secret)
        overlap: int = args.overlap
        if overlap is None:
            overlap = env.integer(
                "KEY_ROTATION_OVERLAP_SECONDS",
                DEFAULT_OVERLAP_SECONDS,
                0,
                MAX_OVERLAP_SECONDS,
            )
        lifetime: int = args.max_token_lifetime
        if lifetime is None:
            lifetime = access_token_ttl(env)
    except ConfigError as exc:
        out.write(f"{exc}\n")
        return 2
    if overlap < 0 or lifetime < 0:
        out.write("--overlap and --max-token-lifetime are seconds, 0 or more\n")
        return 2
    prefix = env.text("REDIS_KEY_PREFIX", DEFAULT_KEY_PREFIX)
    if events is None:
        events = Events()
        if env.flag("AUDIT_LOG", True):
            events.subscribe(AuditLog())
    keyring = Keyring(secret, previous)

    def run(client: redis.Redis) -> int:
        admin = KeyAdmin(Store(client, prefix), keyring, **_clocked(clock))
        try:
            return _COMMANDS[args.command](admin, args, out, events, overlap, lifetime)
        except KeysRefusedError as exc:
            out.write(f"refused: {exc}\n")
            return 1

    if redis_client is not None:
        return run(redis_client)
    with connection.connect(store_at) as own_client:
        return run(own_client)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m proxy keys",
        description="List, rotate and retire the JWT signing keys in Redis.",
    )
    # Only `rotate` takes these; the others see them unset.
    parser.set_defaults(overlap=None, max_token_lifetime=None)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every stored key, its state and schedule")
    rotate = commands.add_parser(
        "rotate", help="publish a new key now; it signs after the overlap"
    )
    rotate.add_argument(
        "--overlap",
        type=int,
        metavar="SECONDS",
        help="seconds between publishing and signing (default "
        f"KEY_ROTATION_OVERLAP_SECONDS, else {DEFAULT_OVERLAP_SECONDS})",
    )
    rotate.add_argument(
        "--max-token-lifetime",
        type=int,
        metavar="SECONDS",
        help="the longest access-token lifetime in use (default "
        "ACCESS_TOKEN_TTL_SECONDS): the old key retires this long after the switch",
    )
    retire = commands.add_parser(
        "retire", help="take a key out of the JWKS now (tokens it signed fail)"
    )
    retire.add_argument("kid", help="the key id, as `keys list` shows it")
    return parser


def _list(
    admin: KeyAdmin,
    args: argparse.Namespace,
    out: t.TextIO,
    events: Events,
    overlap: int,
    lifetime: int,
) -> int:
    rows = admin.rows()
    if not rows:
        out.write("no signing keys stored yet (the proxy makes one when it signs)\n")
        return 0
    out.write(
        f"{'kid':<44} {'state':<10} {'publish_at':<20} {'sign_from':<20} "
        f"{'retire_at':<20} sealed\n"
    )
    for row in rows:
        out.write(
            f"{row.kid:<44} {row.state:<10} {_when(row.publish_at):<20} "
            f"{_when(row.sign_from):<20} {_when(row.retire_at):<20} "
            f"{row.sealed_with}\n"
        )
    return 0


def _rotate(
    admin: KeyAdmin,
    args: argparse.Namespace,
    out: t.TextIO,
    events: Events,
    overlap: int,
    lifetime: int,
) -> int:
    if overlap < SAFE_MIN_OVERLAP_SECONDS:
        out.write(
            f"warning: an overlap under {SAFE_MIN_OVERLAP_SECONDS} s may let the "
            "new key sign before every worker and resource server has it\n"
        )
    rotation = admin.rotate(overlap=overlap, max_token_lifetime=lifetime)
    events.emit(
        "keys.rotated",
        kid=rotation.kid,
        previous_kid=rotation.previous_kid,
        publish_at=rotation.publish_at,
        sign_from=rotation.sign_from,
        previous_retire_at=rotation.previous_retire_at,
        overlap_seconds=overlap,
        max_token_lifetime_seconds=lifetime,
    )
    out.write(
        f"published key {rotation.kid} now; it signs from "
        f"{_when(rotation.sign_from)} (in {overlap} s).\n"
        f"key {rotation.previous_kid} signs until then and leaves the JWKS at "
        f"{_when(rotation.previous_retire_at)}.\n"
    )
    return 0


def _retire(
    admin: KeyAdmin,
    args: argparse.Namespace,
    out: t.TextIO,
    events: Events,
    overlap: int,
    lifetime: int,
) -> int:
    entry = admin.retire(args.kid)
    events.emit("keys.retired", kid=entry.kid)
    out.write(
        f"retired key {entry.kid}: it has left the JWKS, and tokens it signed "
        "no longer verify (each worker within 30 s)\n"
    )
    return 0


_COMMANDS: dict[str, t.Callable[..., int]] = {
    "list": _list,
    "rotate": _rotate,
    "retire": _retire,
}


def _clocked(clock: Callable[[], float] | None) -> dict[str, t.Any]:
    return {} if clock is None else {"clock": clock}


def _when(at: int | None) -> str:
    return "-" if at is None else iso(at)
