"""The flow trace: each authorization attempt's steps, to say why it failed.

Every authorization attempt gets a trace id at ``GET /oauth2/authorize``: 16
random hex digits, unrelated to the upstream ``state`` or anything else that
could complete the flow. It travels in the signed consent form, the stored
transaction, the grant record and the access token's ``trace`` claim, so the
consent, callback, token, refresh and gateway requests set
:data:`~proxy.observability.events.current_trace` without reading Redis.

:class:`TraceSink` hears every event that carries a trace id and buffers it as
one step. The buffer is written in one pipeline by a per-process flusher
every TRACE_FLUSH_SECONDS, so no request pays a Redis round trip for its
steps (a user reading an error page's trace id to the operator takes longer
than that second). A worker that dies loses at most that second of steps.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import secrets
import threading
import time
import typing as t
import weakref

import redis.exceptions

from proxy.observability.events import current_trace
from proxy.observability.logging_setup import json_line
from proxy.store.traces import TraceEntry

if t.TYPE_CHECKING:
    from flask import Flask

    from proxy.observability.events import Event
    from proxy.observability.events import Events
    from proxy.store.traces import TraceRecords

log = logging.getLogger(__name__)

#: How long a step from the token or gateway path may wait in the buffer.
TRACE_FLUSH_SECONDS = 1.0
#: Steps a worker buffers at most; beyond, new steps are dropped (and counted).
MAX_PENDING_STEPS = 10_000
#: A field value longer than this is cut (an IdP's error_description, a URL).
MAX_FIELD_CHARS = 200

_TRACE_ID = re.compile(r"[0-9a-f]{16}")


def new_trace_id() -> str:
    """A fresh trace id: 64 random bits, hex; it opens nothing."""
    return secrets.token_hex(8)


def is_trace_id(value: object) -> bool:
    return isinstance(value, str) and _TRACE_ID.fullmatch(value) is not None


def enter_trace(trace_id: str | None) -> None:
    """This request belongs to `trace_id` (ignored unless well-formed)."""
    if is_trace_id(trace_id):
        current_trace.set(trace_id)


def _short(value: t.Any) -> t.Any:
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    text = str(value)
    if len(text) > MAX_FIELD_CHARS:
        return text[:MAX_FIELD_CHARS] + "..."
    return text


def step_of(event: Event) -> dict[str, t.Any]:
    """The JSON object one event becomes in a trace."""
    step: dict[str, t.Any] = {
        "at": round(event.at, 3),
        "step": event.name,
        "outcome": event.outcome,
    }
    if event.request is not None:
        step["rid"] = event.request.request_id
    for name, value in event.fields.items():
        if name not in step:
            step[name] = _short(value)
    return step


class TraceSink:
    """Buffers the steps of traced events; :meth:`flush` writes them."""

    def __init__(self, records: TraceRecords, *, ttl: int) -> None:
        self._records = records
        self._ttl = ttl
        self._pending: list[TraceEntry] = []
        self._lock = threading.Lock()
        self.dropped = 0
        #: The process whose flusher knows this sink (0: none yet).
        self.watched_in = 0

    def __call__(self, event: Event) -> None:
        trace_id = event.trace_id
        if trace_id is None or not is_trace_id(trace_id):
            return
        client_id = event.fields.get("client_id")
        sub = event.fields.get("sub")
        entry = TraceEntry(
            trace_id=trace_id,
            step=json_line(step_of(event)),
            client_id=client_id if isinstance(client_id, str) else None,
            sub=sub if isinstance(sub, str) else None,
        )
        with self._lock:
            if len(self._pending) >= MAX_PENDING_STEPS:
                self.dropped += 1
                return
            self._pending.append(entry)
        _FLUSHER.watch(self)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> int:
        """Write every buffered step in one pipeline; how many were written.

        A Redis failure drops the batch with a warning: a trace is a
        diagnostic, and it never fails or delays a request.
        """
        with self._lock:
            entries, self._pending = self._pending, []
        if not entries:
            return 0
        try:
            self._records.write(entries, ttl=self._ttl, now_ms=int(time.time() * 1000))
        except redis.exceptions.RedisError as exc:
            log.warning("flow trace: %d steps lost (%s)", len(entries), exc)
            return 0
        return len(entries)


class _Flusher:
    """One daemon thread per process flushing every sink that has steps."""

    def __init__(self) -> None:
        self._sinks: weakref.WeakSet[TraceSink] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._pid = 0

    def watch(self, sink: TraceSink) -> None:
        pid = os.getpid()
        if sink.watched_in == pid == self._pid:  # per event: no WeakSet lookup
            return
        with self._lock:
            self._sinks.add(sink)
            sink.watched_in = pid
            if self._pid != os.getpid():  # first use, or a forked worker
                self._pid = os.getpid()
                thread = threading.Thread(
                    target=self._run, name="trace-flusher", daemon=True
                )
                thread.start()

    def flush_all(self) -> None:
        for sink in list(self._sinks):
            if sink.pending:
                sink.flush()

    def _run(self) -> None:
        while True:
            time.sleep(TRACE_FLUSH_SECONDS)
            try:
                self.flush_all()
            except Exception:  # the flusher must outlive any one failure
                log.exception("flow trace flush failed")


_FLUSHER = _Flusher()
atexit.register(_FLUSHER.flush_all)


def init_app(
    app: Flask, events: Events, records: TraceRecords, *, ttl: int
) -> TraceSink | None:
    """Reset the trace context per request; subscribe the sink (unless ttl 0)."""

    @app.before_request
    def _no_trace_yet() -> None:
        current_trace.set(None)

    if not ttl:
        return None
    sink = TraceSink(records, ttl=ttl)
    events.subscribe(sink)
    return sink
