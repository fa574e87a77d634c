"""The event hub: names checked, every sink hears, a failing sink is skipped."""

from __future__ import annotations

import logging

import pytest

from proxy.observability.events import Event
from proxy.observability.events import Events
from proxy.observability.events import RequestContext
from proxy.observability.events import current_request
from proxy.observability.events import current_trace


def test_every_sink_hears_an_event_with_its_request_and_trace() -> None:
    heard: list[Event] = []
    events = Events()
    events.subscribe(heard.append)
    request = RequestContext("req-1", "203.0.113.9", "agent/1")
    request_token = current_request.set(request)
    trace_token = current_trace.set("trace-1")
    try:
        events.emit("code.redeemed", client_id="c1", sub=None)
    finally:
        current_request.reset(request_token)
        current_trace.reset(trace_token)
    [event] = heard
    assert event.name == "code.redeemed"
    assert event.outcome == "ok"
    assert event.fields == {"client_id": "c1"}  # None values are left out
    assert event.request == request
    assert event.trace_id == "trace-1"


def test_an_explicit_trace_id_wins_and_is_not_a_field() -> None:
    heard: list[Event] = []
    events = Events([heard.append])
    events.emit("grant.created", trace_id="t-9", client_id="c")
    assert heard[0].trace_id == "t-9"
    assert "trace_id" not in heard[0].fields


def test_an_unknown_name_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown event name"):
        Events().emit("code.redeemd")


def test_a_failing_sink_is_logged_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    heard: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("sink down")

    events = Events([broken, heard.append])
    with caplog.at_level(logging.ERROR):
        events.emit("consent.shown")
    assert [e.name for e in heard] == ["consent.shown"]
    assert "consent.shown" in caplog.text
