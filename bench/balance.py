"""How a server's keep-alive connections fell on its gunicorn workers.

A gevent worker that is awake accepts a burst of new connections before its
sibling wakes: 16 connections landed 16/0, 15/1, 13/3 or 8/8 on two workers,
run after run, and with keep-alive the split holds for as long as the
connections do, so a measurement used one core or two by chance. The phases
that open connections read the split here and open new ones until it is even.
"""

from __future__ import annotations

import shutil
import subprocess

from support.processes import ManagedProcess

#: Connections per one a worker may hold above another's and still count as
#: even: 2 of the loops' 16, 1 of the flows' 8 (5/3 is a worker with 63 %).
SPLIT_SLACK_PER = 8
#: Tries at an even split before a phase goes on with an uneven one.
BALANCE_ATTEMPTS = 12


def worker_split(server: ManagedProcess) -> list[int] | None:
    """Established connections on the server's port, per worker process
    (sorted); None without ``ss`` (iproute2) or with fewer than two workers."""
    ss = shutil.which("ss")
    workers = [pid for pid in server.pids() if pid != server.popen.pid]
    if ss is None or len(workers) < 2:
        return None
    listing = subprocess.run(  # noqa: S603 - fixed argv
        [ss, "-tnpH", "state", "established", f"( sport = :{server.port} )"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    counts = dict.fromkeys(workers, 0)
    for line in listing.splitlines():
        for pid in counts:
            if f"pid={pid}," in line:
                counts[pid] += 1
    return sorted(counts.values())


def is_even(split: list[int] | None, connections: int) -> bool:
    """Within a slack of even (one connection per SPLIT_SLACK_PER, at least
    one), with (nearly) all ``connections`` open; True when the split cannot
    be known."""
    if split is None:
        return True
    slack = max(1, connections // SPLIT_SLACK_PER)
    return max(split) - min(split) <= slack and sum(split) >= connections - 1
