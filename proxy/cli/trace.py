"""`python -m proxy trace`: print the flow traces, one step per line.

``--client ID`` or ``--user SUB`` print that client's or user's newest
traces, ``--last N`` the newest N of all, ``--id TRACE`` one trace (the id an
error page showed the user). Reads REDIS_URL (and the rest of REDIS_*: TLS,
ACL, Sentinel, Cluster) and REDIS_KEY_PREFIX.
"""

from __future__ import annotations

import argparse
import json
import time
import typing as t

import redis

from proxy.config.env import ConfigError
from proxy.config.env import EnvReader
from proxy.config.redis_topology import shared_store
from proxy.config.settings import DEFAULT_KEY_PREFIX
from proxy.observability.trace import is_trace_id
from proxy.store import connection
from proxy.store.keys import Keys
from proxy.store.traces import TraceRecords

if t.TYPE_CHECKING:
    from collections.abc import Mapping

#: Printed first on every line, in this order; the other fields follow.
_HEAD = ("at", "step", "outcome", "rid")
DEFAULT_COUNT = 10


def main(
    argv: list[str],
    environ: Mapping[str, str],
    out: t.TextIO,
    *,
    redis_client: redis.Redis | None = None,
) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m proxy trace",
        description="Print flow traces: why did a connection fail?",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--client", metavar="ID", help="a client's newest traces")
    which.add_argument("--user", metavar="SUB", help="a user's newest traces")
    which.add_argument("--last", metavar="N", type=int, help="the newest N traces")
    which.add_argument("--id", metavar="TRACE", help="one trace, by its id")
    parser.add_argument(
        "-n",
        type=int,
        default=DEFAULT_COUNT,
        help=f"how many traces with --client/--user (default {DEFAULT_COUNT})",
    )
    args = parser.parse_args(argv)
    env = EnvReader(environ)
    prefix = env.text("REDIS_KEY_PREFIX", DEFAULT_KEY_PREFIX)
    if redis_client is not None:
        return _print(args, TraceRecords(redis_client, Keys(prefix)), out)
    try:
        options = shared_store(env)
    except ConfigError as exc:
        out.write(f"{exc}\n")
        return 2
    with connection.connect(options) as own_client:
        return _print(args, TraceRecords(own_client, Keys(prefix)), out)


def _print(args: argparse.Namespace, records: TraceRecords, out: t.TextIO) -> int:
    if args.id is not None:
        if not is_trace_id(args.id):
            out.write("a trace id is 16 hex digits, as the error page shows it\n")
            return 2
        ids = [args.id]
    elif args.client is not None:
        ids = records.newest("client", args.client, args.n)
    elif args.user is not None:
        ids = records.newest("user", args.user, args.n)
    else:
        ids = records.newest(None, None, max(1, args.last))
    traces = records.steps(ids) if ids else {}
    if not traces:
        out.write("no traces found (they are kept TRACE_TTL_SECONDS, 24 h default)\n")
        return 1
    for trace_id in ids:
        if trace_id in traces:
            out.write(render(trace_id, [json.loads(s) for s in traces[trace_id]]))
    return 0


def render(trace_id: str, steps: list[dict[str, t.Any]]) -> str:
    """One trace: a header, one line per step, and the step that failed."""
    client = next((s["client_id"] for s in steps if s.get("client_id")), "-")
    user = next((s["sub"] for s in steps if s.get("sub")), "-")
    started = _when(steps[0].get("at")) if steps else "-"
    lines = [f"trace {trace_id}  client={client}  user={user}  started={started}"]
    for step in steps:
        details = " ".join(
            f"{name}={_value(value)}"
            for name, value in step.items()
            if name not in _HEAD
        )
        lines.append(
            f"  {_when(step.get('at'))}  {step.get('step', '?'):<24} "
            f"{str(step.get('outcome', '?')).upper():<6} {details}".rstrip()
        )
    failed = [s for s in steps if s.get("outcome") in ("error", "refused")]
    if failed:
        first = failed[0]
        lines.append(
            f"  => failed at {first.get('step')}: "
            f"{first.get('reason') or first.get('upstream_error') or '-'}"
        )
    elif steps:
        lines.append(f"  => last step {steps[-1].get('step')}: no failure recorded")
    return "\n".join(lines) + "\n\n"


def _when(at: object) -> str:
    if not isinstance(at, (int, float)):
        return "-"
    millis = int((at % 1) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{millis:03d}Z"


def _value(value: object) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text
