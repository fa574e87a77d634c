"""gunicorn's gevent worker, with total deadlines for slow clients.

Under gevent a waiting connection costs a greenlet, not a thread, so slow and
long-lived clients (MCP SSE streams) no longer starve everyone else. What
gevent alone does not bound is how long a client may hold its connection
while sending a request, so this worker adds:

- a total deadline for the request line and headers (slowloris):
  ``header_timeout`` seconds from the connection's accept for its first
  request, and from the first byte of each later one;
- keep-alive: a connection idle between requests is closed after
  ``cfg.keepalive`` seconds;
- a total deadline for the request body, ``body_timeout`` seconds from the
  end of its headers. Bodies up to ``BUFFERED_BODY_BYTES`` (the app's
  MAX_CONTENT_LENGTH) are read in full before the app runs; a slow one is
  answered 408 and its connection closed. Larger ones (the gateway's MCP
  messages) are read by the app through a stream whose reads share the same
  deadline and raise a 408 once it has passed.

config/gunicorn.conf.py loads this file by path, in the arbiter, before any
worker exists: it must import nothing of the ``proxy`` package, nor requests,
urllib3 or redis. Those bind ``ssl``, ``socket`` and ``threading`` objects at
import time, so they must be imported after gevent has patched the worker
(with ``preload_app`` they would not be, and are refused).
"""

from __future__ import annotations

import functools
import io
import socket
import sys
import time
import typing as t

import gevent  # type: ignore[import-untyped]
from gevent import socket as gevent_socket
from gunicorn.workers.ggevent import GeventWorker  # type: ignore[import-untyped]

#: Bodies up to this size are read before the app runs. Matches the app's
#: MAX_CONTENT_LENGTH: only the gateway's MCP messages may be larger.
BUFFERED_BODY_BYTES = 64 * 1024
#: Modules that must not have been imported before gevent patched the worker.
MUST_FOLLOW_PATCHING = ("requests", "urllib3", "redis", "proxy")

_TIMEOUT_BODY = (
    b'{"error": "invalid_request", '
    b'"error_description": "The request body did not arrive in time."}'
)
REQUEST_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"Content-Type: application/json\r\n"
    b"Cache-Control: no-store\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class _Expired(BaseException):
    """One of our deadlines passed. Raised into the connection's greenlet by its
    timer; a BaseException, like gevent.Timeout, so no `except Exception`
    between the read and the deadline's owner swallows it."""


class _ClientSocket(gevent_socket.socket):  # type: ignore[misc]
    """A client connection that says when bytes arrive (see ``_HeadDeadline``)."""

    __slots__ = ("on_bytes",)

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_bytes: t.Callable[[], None] | None = None

    def recv(self, *args: t.Any) -> bytes:
        data: bytes = super().recv(*args)
        if data and self.on_bytes is not None:
            self.on_bytes()
        return data


class _Connection:
    __slots__ = ("heads", "sock")

    def __init__(self, sock: _ClientSocket) -> None:
        self.sock = sock
        self.heads = 0


class _HeadDeadline:
    """Bounds one ``next(parser)``: reading a request head.

    The first request of a connection gets ``head`` seconds from the accept.
    A later one gets ``idle`` seconds for its first byte to arrive (keep-alive),
    then ``head`` seconds from that byte. A passed deadline is swallowed here:
    gunicorn then sees no request and closes the connection without an answer.
    So is a body deadline that passes while gunicorn drains what the app left
    unread of the previous request (``next(parser)`` does that first).
    """

    def __init__(self, connection: _Connection, idle: float, head: float) -> None:
        self._connection = connection
        self._idle = idle
        self._head = head
        self._expired = _Expired()
        self._timer: t.Any = None

    def __enter__(self) -> _HeadDeadline:
        connection = self._connection
        connection.heads += 1
        if connection.heads == 1:
            self._arm(self._head)
        else:
            self._arm(self._idle)
            connection.sock.on_bytes = self._head_started
        return self

    def _arm(self, seconds: float) -> None:
        if self._timer is not None:
            self._timer.close()
        self._timer = gevent.Timeout.start_new(seconds, self._expired)

    def _head_started(self) -> None:
        self._connection.sock.on_bytes = None
        self._arm(self._head)

    def __exit__(self, kind: object, value: object, traceback: object) -> bool:
        self._connection.sock.on_bytes = None
        if self._timer is not None:
            self._timer.close()
        return value is self._expired or getattr(value, "body_deadline_passed", False)


@functools.cache
def _body_timeout_error() -> type[Exception]:
    """A 408 for the app: werkzeug's RequestTimeout, so Flask answers it like any
    HTTP error (not an OSError, which werkzeug would turn into a 400). Built on
    first use: werkzeug is imported after patching, with the app."""
    from werkzeug.exceptions import RequestTimeout

    class BodyTimeoutError(RequestTimeout):
        description = "The request body did not arrive in time."
        #: Read by _HeadDeadline: gunicorn draining the body hit the deadline.
        body_deadline_passed = True

    return BodyTimeoutError


class _DeadlineBody:
    """A request body the app reads itself: every read is bounded by what is
    left of the body's deadline, and reads past it raise a 408 (RequestTimeout).

    ``prefix`` is what was already read ahead (a chunked body that turned out
    larger than ``BUFFERED_BODY_BYTES``). ``failed`` tells gunicorn not to reuse
    the connection once a deadline has passed.
    """

    def __init__(self, body: t.Any, deadline: float, prefix: bytes = b"") -> None:
        self._body = body
        self._deadline = deadline
        self._prefix = io.BytesIO(prefix)
        self.failed = False

    def _within_deadline(self, read: t.Callable[..., bytes], *args: t.Any) -> bytes:
        expired = _Expired()
        try:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise expired
            with gevent.Timeout(remaining, expired):
                return read(*args)
        except _Expired as exc:
            if exc is not expired:
                raise
            self.failed = True
            raise _body_timeout_error()() from None

    def read(self, size: int | None = None) -> bytes:
        if size is None or size < 0:
            return self._prefix.read() + self._within_deadline(self._body.read)
        data = self._prefix.read(size)
        if len(data) < size:
            data += self._within_deadline(self._body.read, size - len(data))
        return data

    def readline(self, size: int | None = None) -> bytes:
        limit = -1 if size is None or size < 0 else size
        line = self._prefix.readline(limit)
        if line.endswith(b"\n") or 0 <= limit <= len(line):
            return line
        rest = None if limit < 0 else limit - len(line)
        return line + self._within_deadline(self._body.readline, rest)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> _DeadlineBody:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def _body_framing(req: t.Any) -> tuple[int | None, bool, bool] | None:
    """(Content-Length, chunked, expects 100-continue), or None without a body."""
    length: int | None = None
    chunked = expect_continue = False
    for name, value in req.headers:
        if name == "CONTENT-LENGTH":
            length = int(value)  # gunicorn has validated it
        elif name == "TRANSFER-ENCODING":
            chunked = "chunked" in value.lower()
        elif name == "EXPECT":
            expect_continue = value.strip().lower() == "100-continue"
    if req.body is None or (not chunked and not length):
        return None
    return length, chunked, expect_continue


def _read_up_to(body: t.Any, size: int) -> bytes:
    """Up to ``size`` bytes: fewer only when the body ends first."""
    data = b""
    while len(data) < size:
        chunk: bytes = body.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


class DeadlineGeventWorker(GeventWorker):  # type: ignore[misc]
    """gunicorn's ``gevent`` worker plus the deadlines described above."""

    #: Seconds for a request line and headers; set by ``configure``.
    header_timeout: float = 10.0
    #: Seconds for a request body; set by ``configure``.
    body_timeout: float = 15.0

    @classmethod
    def configure(
        cls, *, header_timeout: float, body_timeout: float
    ) -> type[DeadlineGeventWorker]:
        """This worker class with the given deadlines (for worker_class)."""
        if header_timeout <= 0 or body_timeout <= 0:
            raise ValueError("deadlines must be positive")
        return type(
            cls.__name__,
            (cls,),
            {"header_timeout": header_timeout, "body_timeout": body_timeout},
        )

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections: dict[t.Any, _Connection] = {}

    def init_process(self) -> None:
        early = [name for name in MUST_FOLLOW_PATCHING if name in sys.modules]
        if early:
            raise RuntimeError(
                f"{', '.join(early)} imported before gevent patched the worker "
                "(preload_app?): their sockets, TLS and locks would block the "
                "whole worker. Import the app in the worker (no --preload)."
            )
        super().init_process()

    def handle(self, listener: t.Any, client: t.Any, addr: t.Any) -> None:
        sock = _ClientSocket(
            client.family, client.type, client.proto, fileno=client.detach()
        )
        current = gevent.getcurrent()
        self._connections[current] = _Connection(sock)
        try:
            super().handle(listener, sock, addr)
        finally:
            del self._connections[current]

    def timeout_ctx(self) -> t.Any:
        """The deadline around each request head (gunicorn's keep-alive loop)."""
        connection = self._connections.get(gevent.getcurrent())
        if connection is None:
            return super().timeout_ctx()
        return _HeadDeadline(connection, self.cfg.keepalive, self.header_timeout)

    def handle_request(
        self, listener_name: t.Any, req: t.Any, sock: t.Any, addr: t.Any
    ) -> None:
        framing = _body_framing(req)
        if framing is not None:
            length, chunked, expect_continue = framing
            deadline = time.monotonic() + self.body_timeout
            small = chunked or (length is not None and length <= BUFFERED_BODY_BYTES)
            if small and not expect_continue:
                req.body = self._read_ahead(req, sock, addr, deadline, length)
            else:
                # Large, or the client waits for gunicorn's 100 Continue.
                req.body = _DeadlineBody(req.body, deadline)
        super().handle_request(listener_name, req, sock, addr)

    def _read_ahead(
        self, req: t.Any, sock: t.Any, addr: t.Any, deadline: float, length: int | None
    ) -> t.Any:
        """The whole body, read under the deadline; 408 and close if it is late."""
        wanted = length if length is not None else BUFFERED_BODY_BYTES + 1
        expired = _Expired()
        try:
            with gevent.Timeout(max(0.0, deadline - time.monotonic()), expired):
                data = _read_up_to(req.body, wanted)
        except _Expired as exc:
            if exc is not expired:
                raise
            self.log.info(
                "408: request body from %s not received within %ss",
                addr[0] if isinstance(addr, tuple) else addr,
                self.body_timeout,
            )
            self._refuse_late_body(sock)
            raise StopIteration from None  # gunicorn closes the connection
        if length is None and len(data) > BUFFERED_BODY_BYTES:
            return _DeadlineBody(req.body, deadline, prefix=data)
        return io.BytesIO(data)

    @staticmethod
    def _refuse_late_body(sock: t.Any) -> None:
        # The client may not be reading: give the answer one second at most.
        with gevent.Timeout(1.0, False):
            try:
                sock.sendall(REQUEST_TIMEOUT_RESPONSE)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
