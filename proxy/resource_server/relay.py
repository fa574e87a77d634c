"""Relaying one MCP request to the backend and its response back, chunk by chunk.

What crosses the gateway is decided here: the client's credentials and any
header a backend could read as identity never pass (MCP forbids token
passthrough); the verified identity is added instead. Bodies, JSON or
`text/event-stream`, are streamed as they arrive and never buffered.
"""

from __future__ import annotations

import logging
import socket
import time
import typing as t
from collections.abc import Callable
from collections.abc import Iterator

import urllib3
import urllib3.connection

from proxy.oauth.errors import BadGatewayError
from proxy.oauth.errors import GatewayTimeoutError
from proxy.observability import metrics

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from proxy.config.settings import Settings

log = logging.getLogger(__name__)

CHUNK_BYTES = 65536
# RFC 9110 §7.6.1 hop-by-hop headers, plus what the gateway owns itself.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# Never from the client: its token (no passthrough), its cookies, and any
# header a backend might read as identity or origin (we set those ourselves).
_NEVER_FORWARDED = frozenset(
    {"authorization", "cookie", "origin", "forwarded", "x-real-ip", "remote-user"}
)
# Whole families that auth proxies (oauth2-proxy, Apache, Authelia...) and the
# backends behind them read as identity.
_NEVER_FORWARDED_PREFIXES = ("x-forwarded-", "x-remote-", "x-auth-request-")


def backend_pool(
    settings: Settings, backend_url: str, pool_size: int = 64
) -> urllib3.HTTPConnectionPool:
    """Pooled connections to one backend's origin (HTTPS ones verified).

    urllib3 directly: requests' layers cost ~15% of a relayed call, and a
    PoolManager's per-call URL parsing and pool lookup another ~4% (both
    profiled), for nothing, since each backend gets a pool of its own.
    """
    pool = urllib3.connection_from_url(
        backend_url,
        maxsize=pool_size,
        block=False,
        retries=False,
        timeout=urllib3.Timeout(
            connect=settings.backend_connect_timeout_seconds,
            read=settings.backend_read_timeout_seconds,
        ),
    )
    secure = isinstance(pool, urllib3.HTTPSConnectionPool)
    pool.ConnectionCls = OneSendHTTPSConnection if secure else OneSendHTTPConnection
    return pool


#: The largest body sent in one write with its head (an MCP message is
#: usually a few hundred bytes; joining a larger one would copy it).
ONE_SEND_MAX_BODY = 64 * 1024


class _OneSend:
    """Sends a request's head and its body together.

    urllib3 sends them with two writes; on a loopback backend each write
    wakes the backend, which reads a head and then waits for the body: about
    4% of a relayed call's CPU, and the backend's too (py-spy, sequential
    `tools/call`). The head is held by ``send`` until the body comes; a
    request without a body, or with one over ``ONE_SEND_MAX_BODY``, is sent
    as before.
    """

    _held: bytes | None = None

    def request(
        self, method: str, url: str, body: t.Any = None, *args: t.Any, **kwargs: t.Any
    ) -> None:
        # Set anew by every request: a failed one leaves nothing for the next.
        # Only a small body is joined to the head: a large one would be copied.
        small = isinstance(body, bytes) and 0 < len(body) <= ONE_SEND_MAX_BODY
        self._held = b"" if small else None
        super().request(method, url, body, *args, **kwargs)  # type: ignore[misc]
        held, self._held = self._held, None
        if held:  # the body never came (urllib3 sent none after all)
            super().send(held)  # type: ignore[misc]

    def send(self, data: t.Any) -> None:
        held = self._held
        if held is None:
            super().send(data)  # type: ignore[misc]
        elif not held:
            self._held = bytes(data)  # the head: wait for the body
        else:
            self._held = None
            super().send(held + bytes(data))  # type: ignore[misc]


class OneSendHTTPConnection(_OneSend, urllib3.connection.HTTPConnection):
    """An HTTP backend connection that sends head and body in one write."""


class OneSendHTTPSConnection(_OneSend, urllib3.connection.HTTPSConnection):
    """An HTTPS backend connection that sends head and body in one write."""


def backend_request_headers(
    client_headers: Iterable[tuple[str, str]],
    identity: dict[str, str],
    remote_addr: str | None,
    *,
    own: frozenset[str],
) -> dict[str, str]:
    """The client's headers minus what never passes, plus the verified identity.

    ``own`` names every identity header the proxy may set (lower-case).
    """
    headers = {
        name: value for name, value in client_headers if _forwardable(name.lower(), own)
    }
    headers.update(identity)
    if remote_addr:
        headers["X-Forwarded-For"] = remote_addr
    return headers


def open_backend(
    pool: urllib3.HTTPConnectionPool,
    method: str,
    target: str,
    *,
    body: bytes,
    headers: dict[str, str],
) -> urllib3.BaseHTTPResponse:
    """Send the request for ``target`` (path and query on the pool's origin);
    the response body is left unread, to be streamed.

    Counted by status (``unreachable``, ``timeout`` when there is none) and
    timed to the response headers (proxy/observability/metrics.py).
    """
    started = time.perf_counter()
    outcome = "unreachable"
    try:
        response = pool.urlopen(
            method,
            target,
            body=body or None,
            headers=headers,
            preload_content=False,
            decode_content=False,
            redirect=False,
        )
        outcome = str(response.status)
        return response
    except urllib3.exceptions.NewConnectionError as exc:
        # Refused or unresolvable (a subclass of ConnectTimeoutError, for history).
        log.warning("MCP backend unreachable: %s", exc.__class__.__name__)
        raise BadGatewayError("The MCP server is unreachable.") from exc
    except urllib3.exceptions.TimeoutError as exc:
        outcome = "timeout"
        log.warning("MCP backend timed out: %s", exc.__class__.__name__)
        raise GatewayTimeoutError("The MCP server did not answer in time.") from exc
    except urllib3.exceptions.HTTPError as exc:
        log.warning("MCP backend unreachable: %s", exc.__class__.__name__)
        raise BadGatewayError("The MCP server is unreachable.") from exc
    finally:
        metrics.observe_backend(outcome, time.perf_counter() - started)


def response_headers(relayed: urllib3.BaseHTTPResponse) -> list[tuple[str, str]]:
    """Header by header, so repeated ones (Set-Cookie) stay separate."""
    return [
        (name, value)
        for name, value in relayed.headers.items()
        if name.lower() not in _HOP_BY_HOP or name.lower() == "content-length"
    ]


def end_when_idle(relayed: urllib3.BaseHTTPResponse, seconds: float) -> None:
    """Bound each wait for the stream's next bytes by ``seconds``.

    The backend read timeout covers the wait for the response head (a tool
    may think for minutes); once the response is a stream, a backend silent
    this long ends it (STREAM_IDLE_TIMEOUT_SECONDS, or the read timeout if
    shorter), as a read timeout.
    """
    connection = getattr(relayed, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _forwardable(name: str, own: frozenset[str]) -> bool:
    if name in _HOP_BY_HOP or name in _NEVER_FORWARDED or name in own:
        return False
    return not name.startswith(_NEVER_FORWARDED_PREFIXES)


class Relay:
    """The backend's body, chunk by chunk as it arrives (SSE is never buffered).

    ``on_finish`` runs once, however the relay ends: body complete, backend
    error or timeout, the client gone, or the response closed unread.
    """

    def __init__(
        self,
        relayed: urllib3.BaseHTTPResponse,
        on_finish: Callable[[], None] | None = None,
        *,
        flush_head: bool = False,
    ) -> None:
        self._relayed = relayed
        self._on_finish = on_finish
        self._flush_head = flush_head
        self._complete = False
        self._finished = False

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives; first an empty chunk when ``flush_head``.

        gunicorn sends the response head with the first chunk written, so a
        stream whose backend is quiet would reach its client only with the
        first event (15 s on an SDK server's idle GET stream). An empty chunk
        makes the head go at once, and writes no body (no chunked
        terminator: gunicorn skips empty writes).
        """
        try:
            if self._flush_head:
                yield b""
            while True:
                try:
                    chunk = self._relayed.read1(CHUNK_BYTES, decode_content=False)
                except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                    log.info("MCP backend stream ended: %s", exc.__class__.__name__)
                    return
                if not chunk:
                    self._complete = True
                    return
                yield chunk
        finally:
            self.finish()

    def abort(self) -> None:
        """The client left: end the relay from another greenlet.

        The reader may be blocked in ``read1`` on the backend's socket, and
        closing the response under it raises "reentrant call" in the reader's
        buffered file. Shutting the socket down instead wakes the reader with
        end-of-stream, and its own ``finally`` finishes the relay.
        """
        if self._finished:
            return
        connection = getattr(self._relayed, "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is None:
            self.finish()
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            self.finish()

    def finish(self) -> None:
        """Return a fully read connection to the pool; drop a half-read one."""
        if self._finished:
            return
        self._finished = True
        try:
            if self._complete:
                self._relayed.release_conn()
            else:
                self._relayed.close()
        finally:
            if self._on_finish is not None:
                self._on_finish()
