"""Notice a client that hangs up while its response waits on someone else.

An SSE stream relayed from the backend spends most of its life blocked on the
backend's socket; a client that left is noticed only at the next write, which
on an idle stream may be minutes away, and all that time its stream slot,
greenlet and backend connection stay taken. Under gunicorn's gevent worker a
small greenlet waits for the client's socket to become readable instead: a
client that sent its whole request has nothing more to say, so readable with
nothing to read is the hang-up. Under threaded workers (gthread) one thread per
process watches every stream's client socket (proxy/web/hangup_watcher.py).
Where there is no socket (the Flask test client) the next write notices.
"""

from __future__ import annotations

import socket
import sys
import typing as t
from collections.abc import Callable

from proxy.web.hangup_watcher import WATCHER

#: Seconds a stream runs before its client's socket is watched (gevent). Most
#: streams are tool calls answered as a one-event stream within milliseconds:
#: they end before a watcher starts. A greenlet started, parked on the socket
#: and killed cost about 4% of such a call's CPU (A/B under gunicorn). A client
#: that leaves in this time is noticed once the watch starts.
WATCH_AFTER_SECONDS = 0.05


def _nothing() -> None:
    return None


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("socket"))


def watch(
    environ: t.Mapping[str, t.Any], on_gone: Callable[[], None]
) -> Callable[[], None]:
    """Call ``on_gone`` once the client hangs up; returns the watch's stop function.

    Stop it before the response ends: the connection's next request is read by
    gunicorn, not by this watch. Bytes the client sends (a pipelined request)
    end the watch without calling ``on_gone``.
    """
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return _nothing
    if not _gevent_patched():
        return WATCHER.watch(sock, on_gone)
    import gevent  # type: ignore[import-untyped]
    from gevent.socket import wait_read  # type: ignore[import-untyped]

    def wait() -> None:
        try:
            wait_read(sock.fileno())
            gone = not sock.recv(1, socket.MSG_PEEK)
        except OSError:
            gone = True
        if gone:
            on_gone()

    watcher = gevent.spawn_later(WATCH_AFTER_SECONDS, wait)

    def stop() -> None:
        if gevent.getcurrent() is not watcher:  # on_gone may end the relay
            watcher.kill(block=False)

    return stop
