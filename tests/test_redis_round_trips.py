"""The round-trip counter other tests rely on counts what it says."""

from __future__ import annotations

import threading

import fakeredis
import pytest

from tests.redis_round_trips import RoundTrips
from tests.redis_round_trips import idle_connection


@pytest.fixture
def connected() -> fakeredis.FakeRedis:
    """A client whose pool holds one connection, already made."""
    client = fakeredis.FakeRedis()
    client.ping()
    return client


def test_each_command_and_each_pipeline_is_one_round_trip(
    connected: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = connected
    trips = RoundTrips(monkeypatch)

    def pipelined() -> None:
        with client.pipeline(transaction=False) as pipe:
            pipe.set("a", 1).get("a").delete("a")
            pipe.execute()

    assert trips.of(lambda: client.set("b", 1))[0] == 1
    assert trips.of(pipelined)[0] == 1


def test_another_threads_sends_are_not_the_requests(
    connected: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = connected
    trips = RoundTrips(monkeypatch)

    def background() -> None:
        worker = threading.Thread(target=lambda: client.set("flushed", 1))
        worker.start()
        worker.join()
        client.get("flushed")

    assert trips.of(background)[0] == 1


def test_a_new_connections_handshake_is_not_counted(
    connected: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another thread holds the pool's idle connection, a command opens
    a second one: its handshake (CLIENT SETINFO...) is not the command's."""
    client = connected
    trips = RoundTrips(monkeypatch)
    pool = client.connection_pool
    held = idle_connection(pool)
    try:
        sends, _ = trips.of(lambda: client.get("x"))
    finally:
        pool.release(held)
    assert sends == 1
    assert trips.handshake_sends > 0  # a handshake was sent, and not counted
    assert len(pool._available_connections) == 2  # a second one was opened


def test_a_reconnects_handshake_is_the_requests_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection that lost its socket and connects again is counted whole:
    the exclusion is for a connection the pool has just made."""
    client = fakeredis.FakeRedis()
    trips = RoundTrips(monkeypatch)
    client.ping()  # the pool's first connection, its handshake uncounted
    first_handshake = trips.handshake_sends
    assert first_handshake > 0
    pool = client.connection_pool
    connection = idle_connection(pool)
    connection.disconnect()
    pool.release(connection)
    sends, _ = trips.of(lambda: client.get("x"))
    assert sends > 1  # the handshake again, then GET
    assert trips.handshake_sends == first_handshake
