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
  the rest of it is skipped.

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
        self._skipping = False

    def feed(self, chunk: bytes) -> Iterator[Piece]:
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        if not chunk:
            return
        self._after_cr = chunk.endswith(b"\r")
        self._pending += chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._at_start and not self._past_the_marks():
            return
        yield from self._cut()

    def end(self) -> Iterator[Piece]:
        """What is left when the stream ends: an event it ended inside (a
        client drops it, but it is passed on as read, checked like any)."""
        if self._pending and not self._skipping:
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
            if self._skipping:
                end = pending.find(b"\n\n", max(self._searched, start))
                if end < 0:
                    break
                start = self._searched = end + 2
                self._skipping = False
                continue
            line_end = _idle_line_end(pending, start)
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
        if not self._skipping and len(pending) > self._limit:
            yield OVERFLOW, _last_id_line(pending)
            self._skipping = True
            del pending[:-1]  # a blank line may start with the last byte
            self._searched = 0


def _idle_line_end(pending: bytearray, start: int) -> int:
    """The end (past its LF) of a blank line or whole comment line starting
    at ``start``, or ``start`` if none does."""
    if start >= len(pending):
        return start
    if pending[start] == ord("\n"):
        return start + 1
    if pending[start] == ord(":"):
        line_end = pending.find(b"\n", start)
        if line_end >= 0:
            return line_end + 1
    return start


def _last_id_line(pending: bytearray) -> bytes:
    """The last whole ``id`` line of the event ``pending`` starts, or b""."""
    lines = bytes(pending).split(b"\n")[:-1]  # the last one is not whole
    ids = [line for line in lines if line == b"id" or line.startswith(b"id:")]
    return ids[-1] if ids else b""
