"""A TCP forwarder between the gateway and its backend that notes when things happen.

The gateway's side of the backend connection is what the stream tests watch:
when the backend's response head and first body bytes went through, and when
the gateway closed its connection (a relay that ended). Real sockets, no mocks.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from dataclasses import field


@dataclass
class Connection:
    """One gateway → backend connection, timed with time.monotonic()."""

    opened_at: float
    #: The head (and body) of the latest request sent on this connection.
    request_head: bytes = b""
    head_at: float | None = None
    first_body_at: float | None = None
    gateway_closed_at: float | None = None
    _response: bytearray = field(default_factory=bytearray)

    def new_request(self) -> None:
        """A keep-alive connection's next request: its response starts afresh."""
        self.request_head = b""
        self.head_at = self.first_body_at = None
        self._response.clear()

    def saw_response(self, data: bytes) -> None:
        now = time.monotonic()
        self._response += data
        end = self._response.find(b"\r\n\r\n")
        if end < 0:
            return
        if self.head_at is None:
            self.head_at = now
        if self.first_body_at is None and len(self._response) > end + 4:
            self.first_body_at = now


class TcpTap:
    """Listens on a free loopback port and forwards every connection to ``target``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections: list[Connection] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def matching(self, needle: bytes) -> list[Connection]:
        with self._lock:
            return [c for c in self.connections if needle in c.request_head]

    def _accept(self) -> None:
        while True:
            try:
                gateway, _ = self._listener.accept()
            except OSError:
                return
            backend = socket.create_connection(self._target)
            conn = Connection(opened_at=time.monotonic())
            with self._lock:
                self.connections.append(conn)
                self._sockets += [gateway, backend]
            threading.Thread(
                target=self._pump_up, args=(gateway, backend, conn), daemon=True
            ).start()
            threading.Thread(
                target=self._pump_down, args=(backend, gateway, conn), daemon=True
            ).start()

    @staticmethod
    def _pump_up(
        gateway: socket.socket, backend: socket.socket, conn: Connection
    ) -> None:
        """Gateway to backend; EOF here is the gateway closing its connection."""
        try:
            while data := gateway.recv(65536):
                if data.startswith((b"GET ", b"POST ", b"DELETE ")):
                    conn.new_request()
                if len(conn.request_head) < 65536:
                    conn.request_head += data
                backend.sendall(data)
        except OSError:
            pass
        conn.gateway_closed_at = time.monotonic()
        for sock in (backend, gateway):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @staticmethod
    def _pump_down(
        backend: socket.socket, gateway: socket.socket, conn: Connection
    ) -> None:
        try:
            while data := backend.recv(65536):
                conn.saw_response(data)
                gateway.sendall(data)
        except OSError:
            pass
        try:
            gateway.shutdown(socket.SHUT_WR)
        except OSError:
            pass
