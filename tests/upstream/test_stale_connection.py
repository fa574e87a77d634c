"""A kept-alive connection to the IdP that was closed under us (proxy.upstream.http).

The IdP, or a load balancer before it, closes idle keep-alive connections; the
pool can hand one out just as the close arrives, and the request then fails at
once with no status line. Such a request is sent once more. Any other failure
(part of an answer, or a close after the IdP worked on it) is never repeated:
a code exchange sent twice would spend the code.

The server is a real socket that answers each connection as scripted. Last,
how each failure is named in the operator's WARNING (``network_failure``).
"""

from __future__ import annotations

import http.client
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator

import pytest
import requests

from proxy.upstream import http as upstream_http
from proxy.upstream.http import network_failure
from proxy.upstream.http import observed
from proxy.upstream.http import pooled_session

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
PARTIAL = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"

#: What the server does with one request it read: True keeps the connection
#: open for the next request on it.
Answer = Callable[[socket.socket], bool]


def close_at_once(conn: socket.socket) -> bool:
    return False


def reset_at_once(conn: socket.socket) -> bool:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return False


def answer(conn: socket.socket) -> bool:
    conn.sendall(OK)
    return False


def answer_and_keep_alive(conn: socket.socket) -> bool:
    conn.sendall(OK)
    return True


def answer_partly(conn: socket.socket) -> bool:
    conn.sendall(PARTIAL)
    return False


def half_a_status_line(conn: socket.socket) -> bool:
    conn.sendall(b"HTTP/1.1 2")
    return False


def close_after(seconds: float) -> Answer:
    def close_late(conn: socket.socket) -> bool:
        time.sleep(seconds)
        return False

    return close_late


class ScriptedServer:
    """Reads each request whole (head and body), then handles it with the
    next script entry (the last one repeats); counts the requests it read.

    The body is read before any close: closing a socket with unread bytes
    sends a reset, not the plain close these tests are about.
    """

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
                while self._read_request(conn):
                    step = self.script[min(self.requests, len(self.script) - 1)]
                    self.requests += 1
                    if not step(conn):
                        break

    @staticmethod
    def _read_request(conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            body += chunk
        return True

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


def _post(
    server: ScriptedServer, session: requests.Session | None = None
) -> requests.Response:
    """A code exchange as the providers send it: through ``observed``, on
    ``session`` (its pooled connections), else on a new one."""
    on = session or pooled_session()
    return observed("token", lambda: on.post(server.url, data={"code": "c"}, timeout=5))


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


def test_a_reused_keep_alive_connection_closed_under_us_is_sent_again(
    serve: Callable[[list[Answer]], ScriptedServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """J70's case: the second request goes out on the kept-alive connection,
    which the server closes without answering; it is sent again on another."""
    server = serve([answer_and_keep_alive, close_at_once, answer])
    session = pooled_session()
    with caplog.at_level(logging.INFO, logger="proxy.upstream.http"):
        for _ in range(2):
            assert _post(server, session).json() == {}
    assert server.requests == 3
    assert "sent again" in caplog.text


@pytest.mark.parametrize(
    "failure",
    [answer_partly, half_a_status_line, reset_at_once],
    ids=["part of an answer", "half a status line", "a reset"],
)
def test_any_other_failure_is_never_sent_again(
    serve: Callable[[list[Answer]], ScriptedServer], failure: Answer
) -> None:
    server = serve([failure, answer])
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


def test_an_earlier_error_being_handled_does_not_count(
    serve: Callable[[list[Answer]], ScriptedServer],
) -> None:
    """A reset raised while the caller handles an earlier RemoteDisconnected
    inherits it as ``__context__``: still not sent again."""
    server = serve([reset_at_once, answer])

    def post_while_handling_another() -> None:
        try:
            raise http.client.RemoteDisconnected("an earlier one")
        except http.client.RemoteDisconnected:
            _post(server)

    with pytest.raises(requests.ConnectionError):
        post_while_handling_another()
    assert server.requests == 1


def test_a_connection_the_pool_finds_closed_is_never_counted_as_a_retry(
    serve: Callable[[list[Answer]], ScriptedServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The pool's own check finds a connection the server closed long ago
    and opens another: no failure, no second sending."""
    server = serve([answer])
    session = pooled_session()
    with caplog.at_level(logging.INFO, logger="proxy.upstream.http"):
        for _ in range(2):
            assert _post(server, session).json() == {}
            time.sleep(0.1)  # the server closed after answering
    assert server.requests == 2
    assert "sent again" not in caplog.text


@pytest.mark.parametrize(
    ("failure", "named"),
    [
        (reset_at_once, "ConnectionError (ConnectionResetError)"),
        (close_after(0.4), "ConnectionError (RemoteDisconnected)"),
        (answer_partly, "ChunkedEncodingError (IncompleteRead)"),
    ],
    ids=["reset", "closed late", "part of an answer"],
)
def test_a_failure_names_its_innermost_cause(
    serve: Callable[[list[Answer]], ScriptedServer],
    monkeypatch: pytest.MonkeyPatch,
    failure: Answer,
    named: str,
) -> None:
    """What the operator's WARNING says (``token endpoint: ...``)."""
    monkeypatch.setattr(upstream_http, "STALE_CONNECTION_SECONDS", 0.2)
    server = serve([failure])
    with pytest.raises(requests.RequestException) as raised:
        _post(server)
    assert network_failure(raised.value) == named


def test_a_refused_connection_names_its_cause() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with pytest.raises(requests.ConnectionError) as raised:
        pooled_session().post(f"http://127.0.0.1:{port}/token", timeout=5)
    assert network_failure(raised.value) == "ConnectionError (ConnectionRefusedError)"
