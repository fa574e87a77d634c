"""proxy/web/client_gone.py under gevent: a stream's client socket is watched
once the stream has lasted WATCH_AFTER_SECONDS, and never after stop().

gevent must patch the process before anything imports socket, so each case
runs in a fresh interpreter, as a gunicorn gevent worker does.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from proxy.web.client_gone import WATCH_AFTER_SECONDS

_PRELUDE = """
from gevent import monkey
monkey.patch_all()
import socket, time, gevent
from proxy.web import client_gone
server, client = socket.socketpair()
# A worker's loop runs between requests; this one has not run since the
# imports, and a timer counts from the loop's last look at the clock.
gevent.get_hub().loop.update_now()
calls = []
environ = {"gunicorn.socket": server}
stop = client_gone.watch(environ, lambda: calls.append(time.monotonic()))
started = time.monotonic()
"""


def _run(case: str) -> str:
    script = _PRELUDE + textwrap.dedent(case)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_client_that_hangs_up_is_noticed_once_the_watch_starts() -> None:
    out = _run(
        """
        client.close()
        gevent.sleep(1.0)
        print(len(calls), round(calls[0] - started, 3) if calls else None)
        """
    )
    count, after = out.split()
    assert count == "1"
    # The timer counts from the loop's cached clock, read just before `started`
    # (a millisecond early seen here); a watch started at once took 0.2 ms.
    assert float(after) >= WATCH_AFTER_SECONDS / 2


def test_a_stream_that_ends_before_the_watch_starts_is_never_watched() -> None:
    # The client leaves at once and the stream ends 10 ms later: a watcher
    # started with the stream would have seen the hang-up in between.
    out = _run(
        """
        client.close()
        gevent.sleep(0.01)
        stop()
        gevent.sleep(client_gone.WATCH_AFTER_SECONDS * 4)
        print(len(calls))
        """
    )
    assert out == "0"


@pytest.mark.parametrize("delay", [0.0, 0.2])
def test_bytes_from_the_client_end_the_watch_without_a_hang_up(delay: float) -> None:
    out = _run(
        f"""
        gevent.sleep({delay})
        client.sendall(b"GET / HTTP/1.1\\r\\n")
        gevent.sleep(0.3)
        client.close()
        gevent.sleep(0.3)
        print(len(calls))
        """
    )
    assert out == "0"
