"""Which gunicorn worker answered: HTTP requests attributed to a worker pid.

A request is sent with http.client on a new connection; while the connection
is still open (keep-alive), the server side of it is looked up in
/proc/net/tcp and found among the workers' file descriptors. Linux only; a
connection the server already closed is attributed to nobody (None).
"""

from __future__ import annotations

import http.client
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]
    #: The worker that answered, or None when it could not be told.
    worker: int | None


def request(
    port: int,
    method: str,
    path: str,
    *,
    workers: list[int],
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Answer:
    """One request on a new connection to 127.0.0.1:``port``, and who answered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        worker = None
        if conn.sock is not None:
            worker = _worker_of(port, conn.sock.getsockname()[1], workers)
        return Answer(
            response.status,
            data,
            {k.lower(): v for k, v in response.getheaders()},
            worker,
        )
    finally:
        conn.close()


def _worker_of(server_port: int, client_port: int, workers: list[int]) -> int | None:
    inode = _server_socket_inode(server_port, client_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in workers:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


def _server_socket_inode(server_port: int, client_port: int) -> str | None:
    local = f"0100007F:{server_port:04X}"
    remote = f"0100007F:{client_port:04X}"
    with open("/proc/net/tcp", encoding="ascii") as table:
        for line in table:
            fields = line.split()
            if len(fields) > 9 and fields[1] == local and fields[2] == remote:
                return fields[9]
    return None
