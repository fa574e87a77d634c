"""proxy/resource_server/sse_events.py: a stream cut into events as a client cuts it."""

from __future__ import annotations

import pytest

from proxy.resource_server.sse_events import BETWEEN
from proxy.resource_server.sse_events import BOM
from proxy.resource_server.sse_events import EVENT
from proxy.resource_server.sse_events import LATIN1_BOM
from proxy.resource_server.sse_events import OVERFLOW
from proxy.resource_server.sse_events import EventReader


def _pieces(chunks: list[bytes], limit: int = 1024) -> list[tuple[str, bytes]]:
    reader = EventReader(limit)
    pieces = [piece for chunk in chunks for piece in reader.feed(chunk)]
    return pieces + list(reader.end())


def test_events_end_at_a_blank_line_whatever_ends_the_lines() -> None:
    stream = [b"id: 1\r\ndata: a\r\n\r\ndata: b\rdata: c\r\r"]
    assert _pieces(stream) == [(EVENT, b"id: 1\ndata: a"), (EVENT, b"data: b\ndata: c")]


@pytest.mark.parametrize("cut", range(1, 12))
def test_a_crlf_split_anywhere_is_one_line_end(cut: int) -> None:
    stream = b"data: a\r\n\r\ndata: b\r\n\r\n"
    assert _pieces([stream[:cut], stream[cut:]]) == [
        (EVENT, b"data: a"),
        (EVENT, b"data: b"),
    ]


@pytest.mark.parametrize(
    "marks",
    [BOM, LATIN1_BOM, BOM + LATIN1_BOM, BOM + BOM, LATIN1_BOM + BOM + LATIN1_BOM],
)
@pytest.mark.parametrize("split", [False, True])
def test_every_leading_mark_is_skipped(marks: bytes, split: bool) -> None:
    """A client skips one of each; the reader skips them all, so what a
    client reads after them was read here first."""
    stream = marks + b"data: a\n\n"
    chunks = [stream[:2], stream[2:4], stream[4:]] if split else [stream]
    assert _pieces(chunks) == [(EVENT, b"data: a")]


def test_a_mark_after_the_start_is_data() -> None:
    assert _pieces([b"data: a\n\n" + BOM + b"data: b\n\n"]) == [
        (EVENT, b"data: a"),
        (EVENT, BOM + b"data: b"),
    ]


def test_comments_and_blank_lines_between_events_pass_at_once() -> None:
    """A keep-alive with no blank line after it is not held back."""
    reader = EventReader(1024)
    assert list(reader.feed(b": ping\n")) == [(BETWEEN, b": ping\n")]
    assert list(reader.feed(b"\n: ping\ndata: a\n")) == [
        (BETWEEN, b"\n"),
        (BETWEEN, b": ping\n"),
    ]
    assert list(reader.feed(b": inside an event\n\n")) == [
        (EVENT, b"data: a\n: inside an event")
    ]


def test_an_event_over_the_limit_keeps_its_id_and_the_stream_goes_on() -> None:
    """Its last id is kept, so a client that reconnects resumes after it
    instead of being sent it again and again."""
    big = b"id: 7\nevent: message\ndata: " + b"x" * 100
    pieces = _pieces([big[:50], big[50:], b"x" * 100, b"\n", b"\ndata: next\n\n"], 64)
    assert pieces == [(OVERFLOW, b"id: 7"), (EVENT, b"data: next")]


def test_an_event_the_stream_ends_inside_is_handed_over_as_read() -> None:
    assert _pieces([b"data: a\n\ndata: b\n"]) == [
        (EVENT, b"data: a"),
        (EVENT, b"data: b\n"),
    ]


def test_an_endless_event_over_the_limit_is_not_held() -> None:
    reader = EventReader(64)
    pieces = list(reader.feed(b"id: 3\ndata: " + b"x" * 100))
    for _ in range(1000):
        pieces += reader.feed(b"x" * 100)
        assert reader.buffered <= 1
    pieces += reader.feed(b"\n\ndata: after\n\n")
    assert pieces == [(OVERFLOW, b"id: 3"), (EVENT, b"data: after")]


def test_a_comment_over_the_limit_is_dropped_and_the_next_event_kept() -> None:
    """Clients ignore comments: no error in its place, and the skipping ends
    with the comment's line, not at the next blank line."""
    assert _pieces([b":" + b"c" * 20, b"\ndata: 1\n\n"], 10) == [(EVENT, b"data: 1")]


def test_a_lone_lf_after_a_cr_is_the_only_byte_dropped() -> None:
    """CR | LF | LF: the first LF ends the CRLF, the second is a blank line."""
    assert _pieces([b"data: 1\r", b"\n", b"\n", b"data: 2\n\n"]) == [
        (EVENT, b"data: 1"),
        (EVENT, b"data: 2"),
    ]
