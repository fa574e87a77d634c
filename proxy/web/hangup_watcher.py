"""One thread per worker process that notices clients hanging up on their streams.

Under gunicorn's threaded workers (gthread) the thread relaying a stream is
blocked on the backend's socket and learns that its client left only when it
next writes, at the backend's next event: for an idle stream, the next ping,
15 s or more later, with the thread, the stream slot and the backend
connection held all that time. One selector thread per process watches every
open stream's client socket instead (a thread per stream would double the
cost of a stream); readable with nothing to read is the hang-up.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import threading
import typing as t
from collections.abc import Callable

log = logging.getLogger(__name__)

#: How long the watcher sleeps between looks when nothing wakes it (new
#: sockets are picked up by epoll at once; this only bounds a stop's delay).
POLL_SECONDS = 1.0


class HangupWatcher:
    """Client sockets to watch, each with what to call when its client leaves."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._pid = 0

    def watch(
        self, sock: socket.socket, on_gone: Callable[[], None]
    ) -> Callable[[], None]:
        """Call ``on_gone`` (from the watcher thread) once the client hangs up.

        Returns the stop function; call it before the response ends, since the
        connection's next request belongs to gunicorn. A client that sends bytes
        (a pipelined request) ends the watch without ``on_gone``.
        """
        with self._lock:
            self._ensure_thread()
            try:
                key = self._selector.register(sock, selectors.EVENT_READ, on_gone)
            except (KeyError, ValueError, OSError) as exc:
                log.info("client socket not watched: %s", exc.__class__.__name__)
                return _nothing

        def stop() -> None:
            with self._lock:
                if self._selector.get_map().get(key.fd) is key:
                    self._selector.unregister(sock)

        return stop

    def _ensure_thread(self) -> None:
        # Per process: threads do not survive gunicorn's fork.
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._selector = selectors.DefaultSelector()
        threading.Thread(target=self._run, name="hangup-watcher", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                ready = self._selector.select(POLL_SECONDS)
            except OSError as exc:  # a socket closed under the selector
                log.info("hang-up watcher: %s", exc.__class__.__name__)
                ready = []
            for key, _ in ready:
                try:
                    self._readable(key)
                except Exception:  # the thread serves every stream: never die
                    log.exception("hang-up watcher: a watch failed")

    def _readable(self, key: selectors.SelectorKey) -> None:
        sock = t.cast(socket.socket, key.fileobj)
        with self._lock:
            if self._selector.get_map().get(key.fd) is not key:
                return  # stopped meanwhile
            self._selector.unregister(sock)
        try:
            gone = not sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, ValueError):
            gone = False  # bytes waiting, or a TLS socket that cannot peek
        except OSError:
            gone = True
        if gone:
            t.cast(Callable[[], None], key.data)()


def _nothing() -> None:
    return None


#: The process's watcher, started on first use.
WATCHER = HangupWatcher()
