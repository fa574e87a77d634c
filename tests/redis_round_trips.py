"""Counting what reaches Redis, for tests that promise no extra round trip."""

from __future__ import annotations

import threading
import typing as t
import weakref

import pytest
import redis.connection

#: The handshake of a new connection (CLIENT SETINFO, HELLO, AUTH, SELECT):
#: redis-py 5 runs it in ``on_connect``, later versions in
#: ``on_connect_check_health`` (which ``on_connect`` calls).
_HANDSHAKES = ("on_connect", "on_connect_check_health")


class RoundTrips:
    """One count per packed send: a command, or a whole pipeline.

    Counted: the sends of the thread that runs the requests (the Flask test
    client's). The trace flusher, stream lease renewal and release senders
    are background threads, never a request's round trip, and they would land
    in whichever request the clock puts them.

    Not counted: the handshake of a connection the pool has just made
    (``handshake_sends`` holds those). While a background thread holds the
    pool's idle connection, the request opens another one; the pool pays
    that once per connection, and which request pays it is the same accident
    of timing. A connection's later handshakes are counted: a reconnect after
    an error or a dropped socket is the request's own cost. (With Sentinel,
    asking a sentinel for the primary precedes the handshake and is counted.)
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sends = 0
        self.handshake_sends = 0
        counted = threading.current_thread()
        connecting = threading.local()
        connection = redis.connection.AbstractConnection
        original_send = connection.send_packed_command

        def counting(conn: t.Any, command: t.Any, check_health: bool = True) -> None:
            if threading.current_thread() is counted:
                if getattr(connecting, "depth", 0):
                    self.handshake_sends += 1
                else:
                    self.sends += 1
            original_send(conn, command, check_health)

        monkeypatch.setattr(connection, "send_packed_command", counting)
        names = [name for name in _HANDSHAKES if hasattr(connection, name)]
        # A redis-py that renamed both would bring the timing flake back.
        assert names, f"redis-py has none of {_HANDSHAKES}"
        handshaken: weakref.WeakSet[t.Any] = weakref.WeakSet()
        for name in names:
            wrapped = _first_uncounted(
                getattr(connection, name), connecting, handshaken
            )
            monkeypatch.setattr(connection, name, wrapped)

    def of(self, call: t.Callable[[], t.Any]) -> tuple[int, t.Any]:
        """The round trips `call` makes, and what it returned."""
        self.sends = 0
        result = call()
        return self.sends, result


def _first_uncounted(
    handshake: t.Any, connecting: threading.local, handshaken: weakref.WeakSet[t.Any]
) -> t.Any:
    """``handshake`` with its sends uncounted the first time a connection runs it."""

    def wrapped(conn: t.Any, *args: t.Any, **kwargs: t.Any) -> t.Any:
        depth = getattr(connecting, "depth", 0)
        if depth == 0 and conn in handshaken:
            return handshake(conn, *args, **kwargs)  # a reconnect: counted
        handshaken.add(conn)
        connecting.depth = depth + 1
        try:
            return handshake(conn, *args, **kwargs)
        finally:
            connecting.depth = depth

    return wrapped


def idle_connection(pool: t.Any) -> t.Any:
    """Take a connection out of `pool`, as a background thread would (redis-py
    before 5.3 requires a command name, later versions deprecate it)."""
    try:
        return pool.get_connection()
    except TypeError:
        return pool.get_connection("PING")
