"""proxy/store/traces.py: one flush writes steps and indexes of many traces,
whose keys live in different slots of a cluster; on every topology."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from proxy.store import Store
from proxy.store.keys import TRACE_MAX_STEPS
from proxy.store.traces import TraceEntry

NOW_MS = 1_800_000_000_000


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return Store(redis_client, f"t-{uuid.uuid4().hex[:8]}:")


def _entry(trace_id: str, step: str, **who: str) -> TraceEntry:
    return TraceEntry(trace_id, json.dumps({"step": step}), **who)


def test_a_flush_of_several_traces_is_read_back_by_id_client_and_user(
    store: Store,
) -> None:
    ids = [f"{n:016x}" for n in range(1, 6)]
    entries = [_entry(i, "authorize", client_id="mcp_a", sub="alice") for i in ids]
    entries += [_entry(ids[0], "consent")]
    store.traces.write(entries, ttl=3600, now_ms=NOW_MS)
    steps = store.traces.steps(ids)
    assert [json.loads(s)["step"] for s in steps[ids[0]]] == ["authorize", "consent"]
    assert set(steps) == set(ids)
    assert set(store.traces.newest("client", "mcp_a", 10)) == set(ids)
    assert set(store.traces.newest("user", "alice", 10)) == set(ids)
    assert set(store.traces.newest(None, None, 10)) == set(ids)


def test_a_flush_after_a_script_flush_loads_the_scripts_again(store: Store) -> None:
    store.redis.script_flush()
    store.traces.write([_entry("a" * 16, "token")], ttl=3600, now_ms=NOW_MS)
    assert store.traces.newest(None, None, 1) == ["a" * 16]


def test_a_flush_spanning_every_bucket_keeps_each_traces_newest_steps(
    store: Store,
) -> None:
    # Two traces per bucket (first hex digit), so each script appends several
    # keys; one trace gets more steps in a flush than a trace keeps.
    ids = [f"{digit}{n:015x}" for digit in "0123456789abcdef" for n in (1, 2)]
    entries = [_entry(i, "authorize", client_id=f"mcp_{i[0]}") for i in ids]
    long = ids[7]
    entries += [_entry(long, f"step{n}") for n in range(TRACE_MAX_STEPS + 6)]
    store.traces.write(entries, ttl=3600, now_ms=NOW_MS)
    steps = store.traces.steps(ids)
    assert set(steps) == set(ids)
    assert all(len(steps[i]) == 1 for i in ids if i != long)
    kept = [json.loads(s)["step"] for s in steps[long]]
    assert kept == [f"step{n}" for n in range(6, TRACE_MAX_STEPS + 6)]
    assert 0 < store.redis.ttl(store.keys.trace(long)) <= 3600
    assert set(store.traces.newest("client", "mcp_f", 10)) == {ids[-2], ids[-1]}


def test_a_trace_from_before_the_buckets_is_read_with_its_newer_steps(
    store: Store,
) -> None:
    trace_id = "9" * 16
    store.redis.rpush(
        store.keys.unbucketed_trace(trace_id), json.dumps({"step": "authorize"})
    )
    store.traces.write([_entry(trace_id, "consent")], ttl=3600, now_ms=NOW_MS)
    steps = store.traces.steps([trace_id, "8" * 16])
    assert list(steps) == [trace_id]
    assert [json.loads(s)["step"] for s in steps[trace_id]] == ["authorize", "consent"]


def test_steps_with_escaped_newlines_and_unicode_come_back_as_written(
    store: Store,
) -> None:
    # A flush joins a trace's steps with newlines; a step is one JSON line,
    # whatever its values hold (an IdP's multi-line error_description).
    trace_id = "c" * 16
    written = [
        json.dumps({"step": "callback", "error_description": "line one\nline two"}),
        json.dumps({"step": "token", "client_name": "Café \U0001f916"}),
        json.dumps({"step": "consent", "name": "Café \U0001f916"}, ensure_ascii=False),
        json.dumps({"step": "refresh", "note": "\r\n\t trailing \\n"}),
    ]
    entries = [TraceEntry(trace_id, step, client_id="mcp_n") for step in written]
    store.traces.write(entries, ttl=3600, now_ms=NOW_MS)
    assert store.traces.steps([trace_id])[trace_id] == written
    assert store.traces.newest("client", "mcp_n", 5) == [trace_id]
