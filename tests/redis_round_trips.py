"""Counting what reaches Redis, for tests that promise no extra round trip."""

from __future__ import annotations

import threading
import typing as t

import pytest
import redis.connection


class RoundTrips:
    """One count per packed send: a command, or a whole pipeline."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sends = 0
        original = redis.connection.AbstractConnection.send_packed_command

        counted = threading.current_thread()

        def counting(conn: t.Any, command: t.Any, check_health: bool = True) -> None:
            # Only the thread that runs the requests (the Flask test client's):
            # the trace flusher, stream lease renewal and release senders are
            # background threads, never a request's round trip, and they would
            # land in whichever request the clock puts them.
            if threading.current_thread() is counted:
                self.sends += 1
            original(conn, command, check_health)

        monkeypatch.setattr(
            redis.connection.AbstractConnection, "send_packed_command", counting
        )

    def of(self, call: t.Callable[[], t.Any]) -> tuple[int, t.Any]:
        """The round trips `call` makes, and what it returned."""
        self.sends = 0
        result = call()
        return self.sends, result
