"""A kept-alive connection to the IdP that was closed under us (proxy.upstream.http).

The IdP, or a load balancer before it, closes idle keep-alive connections; the
pool can hand one out just as the close arrives, and the request then fails at
once with no status line. Such a request is sent once more. Any other failure
(part of an answer, or a close after the IdP worked on it) is never repeated:
a code exchange sent twice would spend the code.

The server is a real socket that answers each connection as scripted.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator

import pytest
import requests

from proxy.upstream import http as upstream_http
from proxy.upstream.http import observed
from proxy.upstream.http import pooled_session

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
PARTIAL = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"

Answer = Callable[[socket.socket], None]


def close_at_once(conn: socket.socket) -> None:
    conn.close()


def answer(conn: socket.socket) -> None:
    conn.sendall(OK)
    conn.close()


def answer_partly(conn: socket.socket) -> None:
    conn.sendall(PARTIAL)
    conn.close()


def close_after(seconds: float) -> Answer:
    def close_late(conn: socket.socket) -> None:
        time.sleep(seconds)
        conn.close()

    return close_late


class ScriptedServer:
    """Reads each connection's request, then answers it with the next script
    entry (the last one repeats); counts the requests it read."""

    def __init__(self, script: list[Answer]) -> None:
        self.script = script
        self.requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/token"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if not data:
                    continue
                step = self.script[min(self.requests, len(self.script) - 1)]
                self.requests += 1
                step(conn)

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[[list[Answer]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: list[Answer]) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _post(server: ScriptedServer) -> requests.Response:
    session = pooled_session()
    return observed(
        "token",
        lambda: session.post(server.url, data={"code": "c"}, timeout=5),
    )


def test_a_connection_closed_before_any_answer_is_sent_again(
    serve: Callable[[list[Answer]], ScriptedServer],
) -> None:
    server = serve([close_at_once, answer])
    assert _post(server).json() == {}
    assert server.requests == 2


def test_it_is_sent_again_once_only(
    serve: Callable[[list[Answer]], ScriptedServer],
) -> None:
    server = serve([close_at_once])
    with pytest.raises(requests.ConnectionError):
        _post(server)
    assert server.requests == 2


def test_a_part_of_an_answer_is_never_sent_again(
    serve: Callable[[list[Answer]], ScriptedServer],
) -> None:
    server = serve([answer_partly, answer])
    with pytest.raises(requests.RequestException):
        _post(server)
    assert server.requests == 1


def test_a_close_after_the_idp_worked_on_it_is_never_sent_again(
    serve: Callable[[list[Answer]], ScriptedServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(upstream_http, "STALE_CONNECTION_SECONDS", 0.2)
    server = serve([close_after(0.4), answer])
    with pytest.raises(requests.ConnectionError):
        _post(server)
    assert server.requests == 1


def test_an_idle_connection_the_idp_closed_is_replaced(
    serve: Callable[[list[Answer]], ScriptedServer],
) -> None:
    """The pool's own check finds a connection closed long ago: one request."""
    server = serve([answer])
    session = pooled_session()
    for _ in range(2):
        response = observed(
            "token", lambda: session.post(server.url, data={"code": "c"}, timeout=5)
        )
        assert response.json() == {}
        time.sleep(0.1)  # the server closed after answering; the pool sees it
    assert server.requests == 2
