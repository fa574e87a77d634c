"""Counting what reaches Redis, for tests that promise no extra round trip."""

from __future__ import annotations

import threading
import typing as t

import pytest
import redis.connection

#: The handshake of a new connection (CLIENT SETINFO, HELLO, AUTH, SELECT):
#: redis-py 5 runs it in ``on_connect``, later versions in
#: ``on_connect_check_health``.
_HANDSHAKES = ("on_connect", "on_connect_check_health")


class RoundTrips:
    """One count per packed send: a command, or a whole pipeline.

    Counted: the sends of the thread that runs the requests (the Flask test
    client's), outside a new connection's handshake. The trace flusher, stream
    lease renewal and release senders are background threads, never a
    request's round trip, and they would land in whichever request the clock
    puts them. While one of them holds the pool's idle connection, the request
    opens another one; its handshake is the pool's cost, paid once per
    connection, and which request pays it is the same accident of timing.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sends = 0
        counted = threading.current_thread()
        connecting = threading.local()
        connection = redis.connection.AbstractConnection
        original_send = connection.send_packed_command

        def counting(conn: t.Any, command: t.Any, check_health: bool = True) -> None:
            if threading.current_thread() is counted and not getattr(
                connecting, "depth", 0
            ):
                self.sends += 1
            original_send(conn, command, check_health)

        monkeypatch.setattr(connection, "send_packed_command", counting)
        for name in _HANDSHAKES:
            if hasattr(connection, name):
                monkeypatch.setattr(
                    connection, name, _uncounted(getattr(connection, name), connecting)
                )

    def of(self, call: t.Callable[[], t.Any]) -> tuple[int, t.Any]:
        """The round trips `call` makes, and what it returned."""
        self.sends = 0
        result = call()
        return self.sends, result


def _uncounted(handshake: t.Any, connecting: threading.local) -> t.Any:
    def wrapped(conn: t.Any, *args: t.Any, **kwargs: t.Any) -> t.Any:
        connecting.depth = getattr(connecting, "depth", 0) + 1
        try:
            return handshake(conn, *args, **kwargs)
        finally:
            connecting.depth -= 1

    return wrapped


def idle_connection(pool: t.Any) -> t.Any:
    """Take a connection out of `pool`, as a background thread would (redis-py
    before 5.3 requires a command name, later versions deprecate it)."""
    try:
        return pool.get_connection()
    except TypeError:
        return pool.get_connection("PING")
