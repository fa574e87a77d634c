"""proxy/web/hangup_watcher.py: one thread notices clients hanging up."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from proxy.web.hangup_watcher import HangupWatcher

WAIT_SECONDS = 5.0


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def test_a_client_that_hangs_up_is_noticed(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    gone = threading.Event()
    HangupWatcher().watch(server, gone.set)
    client.close()
    assert gone.wait(WAIT_SECONDS)


def test_bytes_from_the_client_end_the_watch_without_a_hang_up(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    gone = threading.Event()
    watcher = HangupWatcher()
    watcher.watch(server, gone.set)
    client.sendall(b"GET / HTTP/1.1\r\n")  # a pipelined request
    client.close()  # too late: the watch has ended
    assert not gone.wait(1.5)
    assert server.recv(3) == b"GET"  # the bytes are left for gunicorn


def test_a_stopped_watch_never_fires(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    gone = threading.Event()
    stop = HangupWatcher().watch(server, gone.set)
    stop()
    client.close()
    assert not gone.wait(1.5)
