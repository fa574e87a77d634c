"""A relayed SSE stream cut into events the way its most lenient client cuts it.

The tool filter (``tool_access.py``) may rewrite only what it has read, so it
must see each event a client will dispatch, no fewer and no other (WHATWG
HTML §9.2.6, and what the MCP SDKs' readers do beyond it):

- what a stream starts with and a client skips is skipped: a UTF-8 byte
  order mark (a decoder drops one) and "ï»¿" (the same mark read as
  Latin-1 and sent as UTF-8, which eventsource-parser drops), in any number;
  what comes after them is what the client reads;
- lines end in CRLF, LF or CR alone, and a CRLF may be split between
  chunks; every line end is made LF at once (the LF of a split CRLF, at the
  start of the next chunk, is dropped);
- a blank line ends an event; blank lines and comments between events end
  or start nothing and are passed on at once (a keep-alive is not held
  back until the next event);
- an event longer than ``limit`` is not buffered: its last ``id`` line is
  kept (so a client that reconnects resumes after it, not at it again) and
  the rest of it is skipped; a comment line longer than it is dropped.

Each byte is searched once: a backend sending an event a segment at a time
costs linear time.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterator

#: What a UTF-8 decoder drops from the start of a stream (WHATWG Encoding).
BOM = b"\xef\xbb\xbf"
#: What eventsource-parser (the TypeScript SDK's) drops from its first chunk.
LATIN1_BOM = "ï»¿".encode()
STREAM_MARKS = (BOM, LATIN1_BOM)

#: A line a client reads between events without effect: passed on as it is.
BETWEEN: t.Final = "between"
#: An event, without the blank line that ended it.
EVENT: t.Final = "event"
#: An event over the limit: its last ``id`` line (or b""), the rest skipped.
OVERFLOW: t.Final = "overflow"

Piece = tuple[str, bytes]


class EventReader:
    """Feed it the stream's chunks; it yields (kind, bytes) pieces in order."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._pending = bytearray()
        self._searched = 0  # where the next search for a blank line starts
        self._at_start = True
        self._after_cr = False
        #: While skipping what is over the limit: what ends it (the blank
        #: line after an event, the end of a comment line).
        self._skip_to: bytes | None = None

    @property
    def buffered(self) -> int:
        """Bytes held back: the start of an event not ended yet."""
        return len(self._pending)

    def feed(self, chunk: bytes) -> Iterator[Piece]:
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._after_cr = chunk.endswith(b"\r")
        if not chunk:
            return
        self._pending += chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._at_start and not self._past_the_marks():
            return
        yield from self._cut()

    def end(self) -> Iterator[Piece]:
        """What is left when the stream ends: an event it ended inside (a
        client drops it, but it is passed on as read, checked like any)."""
        if self._pending and self._skip_to is None:
            yield EVENT, bytes(self._pending)
        self._pending.clear()

    def _past_the_marks(self) -> bool:
        """Drop leading marks; False while more bytes could still make one."""
        pending = self._pending
        while length := next(
            (len(m) for m in STREAM_MARKS if pending.startswith(m)), 0
        ):
            del pending[:length]
        if any(len(pending) < len(m) and m.startswith(pending) for m in STREAM_MARKS):
            return False
        self._at_start = False
        return True

    def _cut(self) -> Iterator[Piece]:
        pending, start = self._pending, 0
        while True:
            if self._skip_to is not None:
                end = pending.find(self._skip_to, self._searched)
                if end < 0:
                    del pending[:-1]  # the end may start with the last byte
                    self._searched = 0
                    return
                start = self._searched = end + len(self._skip_to)
                self._skip_to = None
                continue
            line_end = _idle_line_end(pending, start, self._searched)
            if line_end > start:
                yield BETWEEN, bytes(pending[start:line_end])
                start = line_end
                continue
            end = pending.find(b"\n\n", max(self._searched, start))
            if end < 0:
                break
            yield EVENT, bytes(pending[start:end])
            start = self._searched = end + 2
        del pending[:start]
        self._searched = max(len(pending) - 1, 0)
        if len(pending) > self._limit:
            if pending.startswith(b":"):
                self._skip_to = b"\n"  # a comment: clients ignore it anyway
            else:
                yield OVERFLOW, _last_id_line(pending)
                self._skip_to = b"\n\n"
            del pending[:-1]
            self._searched = 0


def _idle_line_end(pending: bytearray, start: int, searched: int) -> int:
    """The end (past its LF) of a blank line or whole comment line starting
    at ``start``, or ``start`` if none does. Before ``searched`` there is no
    LF after ``start`` (the last chunk's search found none), so a long
    comment is not searched again with every chunk."""
    if start >= len(pending):
        return start
    if pending[start] == ord("\n"):
        return start + 1
    if pending[start] == ord(":"):
        line_end = pending.find(b"\n", max(start, searched))
        if line_end >= 0:
            return line_end + 1
    return start


def _last_id_line(pending: bytearray) -> bytes:
    """The last whole ``id`` line of the event ``pending`` starts, or b""."""
    lines = bytes(pending).split(b"\n")[:-1]  # the last one is not whole
    ids = [line for line in lines if line == b"id" or line.startswith(b"id:")]
    return ids[-1] if ids else b""
