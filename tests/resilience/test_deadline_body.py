"""The body stream the worker hands the app when it did not read the body ahead
(proxy/web/worker.py): reads that span what was read ahead and the rest, and a
read past the deadline. Its behaviour on a socket is in test_slow_clients.py."""

from __future__ import annotations

import io
import time

import gevent
import pytest
from werkzeug.exceptions import RequestTimeout

from proxy.web.worker import _DeadlineBody


class SlowBody:
    """A gunicorn Body stand-in whose reads wait ``delay`` seconds (gevent)."""

    def __init__(self, data: bytes, delay: float = 0.0) -> None:
        self._data = io.BytesIO(data)
        self._delay = delay

    def read(self, size: int | None = None) -> bytes:
        gevent.sleep(self._delay)
        return self._data.read(size)

    def readline(self, size: int | None = None) -> bytes:
        gevent.sleep(self._delay)
        return self._data.readline(size)


def _body(prefix: bytes, rest: bytes, seconds: float = 5.0) -> _DeadlineBody:
    return _DeadlineBody(SlowBody(rest), time.monotonic() + seconds, prefix=prefix)


def test_reads_span_the_read_ahead_prefix_and_the_rest() -> None:
    assert _body(b"abc", b"def").read() == b"abcdef"
    body = _body(b"abc", b"defgh")
    assert body.read(2) == b"ab"
    assert body.read(3) == b"cde"
    assert body.read(10) == b"fgh"
    assert body.read(1) == b""


def test_lines_span_the_prefix_and_the_rest() -> None:
    assert list(_body(b"one\ntw", b"o\nthree")) == [b"one\n", b"two\n", b"three"]
    assert _body(b"ab", b"cdef\n").readline(4) == b"abcd"
    assert _body(b"", b"x\ny\n").readlines() == [b"x\n", b"y\n"]


def test_a_read_past_the_deadline_is_a_408_and_marks_the_body_failed() -> None:
    body = _DeadlineBody(SlowBody(b"late", delay=5.0), time.monotonic() + 0.2)
    with pytest.raises(RequestTimeout) as raised:
        body.read()
    assert raised.value.code == 408
    assert body.failed
    # Also once the deadline is long gone: no wait, the same answer.
    with pytest.raises(RequestTimeout):
        body.read(1)
