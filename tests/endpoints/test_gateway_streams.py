"""Caps on open gateway streams: per grant and per worker process (issue 12).

The app runs in the Flask test client in front of the real demo MCP server
(fixtures from test_gateway.py). A refused stream is 429 with Retry-After and
an RFC 6749-style `temporarily_unavailable` body; a stream's slot comes back
however it ends: closed by the client, ended by the backend, cut by the
backend read timeout. The real-socket version, under gunicorn, is in
tests/e2e/test_gateway_stream_caps.py.
"""

from __future__ import annotations

import threading
import time
import typing as t
from collections.abc import Iterator

import pytest

from proxy import create_app
from proxy.config.limits import Limits
from proxy.config.settings import Settings
from proxy.resource_server import stream_slots
from proxy.resource_server.stream_slots import RETRY_AFTER_SECONDS
from tests.oauth_client import OAuthTestClient
from tests.redis_round_trips import RoundTrips

from ._helpers import decode_access_token
from .test_gateway import backend  # noqa: F401 - the module's demo backend
from .test_gateway import initialize
from .test_gateway import mcp_headers
from .test_gateway import messages


def _app(settings: Settings, store_client: t.Any, **limits: t.Any) -> t.Any:
    capped = Limits(**limits)
    return create_app(settings.replace(limits=capped), redis_client=store_client)


@pytest.fixture
def gateway(
    settings: Settings,
    store_client: t.Any,
    backend: t.Any,  # noqa: F811
) -> Settings:
    return settings.replace(backend_url=backend.url)


#: A tool call answered as a long SSE stream: progress every 0.2 s for a minute.
#: (GET streams would do, but the test client waits for their first event,
#: which the backend sends only after 15 s.)
LONG_CALL = {
    "jsonrpc": "2.0",
    "id": 5,
    "method": "tools/call",
    "params": {
        "name": "count",
        "arguments": {"to": 300, "delay_seconds": 0.2},
        "_meta": {"progressToken": "p"},
    },
}


class Grant:
    """One authorization's token, its grant id and an initialized MCP session."""

    def __init__(self, client: t.Any) -> None:
        _, body = OAuthTestClient(client).tokens()
        self.token = t.cast(str, body["access_token"])
        self.grant_id = t.cast(
            str, decode_access_token(client, self.token).claims["sid"]
        )
        self.session = initialize(client, self.token)

    def open_stream(self, client: t.Any, call: dict[str, t.Any] = LONG_CALL) -> t.Any:
        """A POST answered as SSE, left open (the response is read lazily)."""
        return client.post(
            "/mcp",
            json=call,
            headers=mcp_headers(self.token, self.session),
            buffered=False,
        )


def _held(app: t.Any, grant_id: str) -> int:
    """The grant's leases in Redis, once the releases this worker queued are sent."""
    app.extensions["proxy"].streams.send_releases()
    return t.cast(int, app.extensions["proxy"].store.streams.held(grant_id))


def _open_count(app: t.Any) -> int:
    return t.cast(int, app.extensions["proxy"].streams.open_count)


@pytest.fixture
def closing() -> Iterator[list[t.Any]]:
    """Responses to close at the end, whatever the test did with them."""
    responses: list[t.Any] = []
    yield responses
    for response in responses:
        response.close()


def test_stream_past_the_grant_cap_is_429_and_another_grant_still_streams(
    gateway: Settings, store_client: t.Any, closing: list[t.Any]
) -> None:
    app = _app(gateway, store_client, max_streams_per_grant=2)
    client = app.test_client()
    alice, bob = Grant(client), Grant(client)
    for _ in range(2):
        closing.append(alice.open_stream(client))
        assert closing[-1].status_code == 200
    refused = alice.open_stream(client)
    closing.append(refused)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert refused.headers["Cache-Control"] == "no-store"
    assert refused.get_json()["error"] == "temporarily_unavailable"
    closing.append(bob.open_stream(client))
    assert closing[-1].status_code == 200
    print(f"\nheld: alice {_held(app, alice.grant_id)}, bob {_held(app, bob.grant_id)}")
    assert _held(app, alice.grant_id) == 2


def test_a_finished_stream_is_released_in_the_background(
    gateway: Settings, store_client: t.Any
) -> None:
    """No response waits on the lease's release: the worker's sender ends it
    in Redis shortly after, without anyone asking."""
    app = _app(gateway, store_client, max_streams_per_grant=1)
    client = app.test_client()
    alice = Grant(client)
    response = alice.open_stream(client)
    assert response.status_code == 200
    response.close()
    store = app.extensions["proxy"].store.streams
    deadline = time.monotonic() + 5
    while store.held(alice.grant_id) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.held(alice.grant_id) == 0


def test_the_next_call_ends_the_last_ones_lease_in_its_own_trip(
    gateway: Settings, store_client: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one slot per grant, calls one after the other never see the last
    call's lease, even when the sender has not run: the next acquire ends it
    first, and the grant check still takes one round trip."""
    app = _app(gateway, store_client, max_streams_per_grant=1)
    slots = app.extensions["proxy"].streams
    slots.background_releases = False  # only the next acquire ends them
    client = app.test_client()
    alice = Grant(client)
    alice.open_stream(client).close()  # warm: scripts loaded
    trips = RoundTrips(monkeypatch)
    for _ in range(3):

        def call() -> int:
            response = alice.open_stream(client)
            response.close()
            return t.cast(int, response.status_code)

        sends, status = trips.of(call)
        assert (sends, status) == (1, 200)
    assert slots.send_releases() == 1  # only the last call's is still queued
    assert _held(app, alice.grant_id) == 0


def test_a_slot_another_worker_freed_a_moment_ago_is_found(
    gateway: Settings, store_client: t.Any
) -> None:
    """Two workers, one slot per grant: the client's next call reaches the
    other worker before the first one's sender ended the last call's lease.
    It waits a moment and tries once more instead of a spurious 429."""
    first = _app(gateway, store_client, max_streams_per_grant=1)
    second = _app(gateway, store_client, max_streams_per_grant=1)
    first.extensions["proxy"].streams.background_releases = False
    alice = Grant(first.test_client())
    alice.open_stream(first.test_client()).close()  # released, not sent yet
    assert first.extensions["proxy"].store.streams.held(alice.grant_id) == 1
    sender = threading.Timer(0.01, first.extensions["proxy"].streams.send_releases)
    sender.start()
    try:
        response = alice.open_stream(second.test_client())
        assert response.status_code == 200, response.get_data(as_text=True)
        response.close()
    finally:
        sender.join()
    # And a grant really at its cap is still refused after the second try.
    held = alice.open_stream(second.test_client())
    try:
        assert held.status_code == 200
        assert alice.open_stream(first.test_client()).status_code == 429
    finally:
        held.close()


def test_a_refused_request_holds_no_worker_place_while_it_waits(
    gateway: Settings, store_client: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """During the second try's pause the worker counts only real streams: a
    flood of refused requests cannot fill it for other grants."""
    app = _app(gateway, store_client, max_streams_per_grant=1)
    client = app.test_client()
    alice = Grant(client)
    held = alice.open_stream(client)
    seen: list[int] = []

    class Clock:
        """time, but counting the worker's streams when the pause begins."""

        def __getattr__(self, name: str) -> t.Any:
            return getattr(time, name)

        def sleep(self, seconds: float) -> None:
            seen.append(_open_count(app))
            time.sleep(seconds)

    monkeypatch.setattr(stream_slots, "time", Clock())
    try:
        assert held.status_code == 200
        assert alice.open_stream(client).status_code == 429
    finally:
        held.close()
    assert seen == [1]
    assert _open_count(app) == 0


def test_a_worker_filled_during_the_pause_refuses_with_its_own_503(
    gateway: Settings, store_client: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second try finds no place in the worker: the worker's refusal
    (503 max_streams), not the grant's."""
    app = _app(gateway, store_client, max_streams_per_grant=1, max_streams=2)
    client = app.test_client()
    alice = Grant(client)
    held = alice.open_stream(client)
    slots = app.extensions["proxy"].streams

    class Clock:
        """time, but another grant's stream takes the last place meanwhile."""

        def __getattr__(self, name: str) -> t.Any:
            return getattr(time, name)

        def sleep(self, seconds: float) -> None:
            assert slots._reserve("another-grant") is not None

    monkeypatch.setattr(stream_slots, "time", Clock())
    try:
        refused = alice.open_stream(client)
        assert refused.status_code == 503
        assert refused.get_json()["error"] == "temporarily_unavailable"
    finally:
        held.close()


def test_closing_a_stream_frees_its_slot(
    gateway: Settings, store_client: t.Any, closing: list[t.Any]
) -> None:
    """The client leaving (the response closed unread) gives the slot back."""
    app = _app(gateway, store_client, max_streams_per_grant=1)
    client = app.test_client()
    alice = Grant(client)
    first = alice.open_stream(client)
    assert first.status_code == 200
    second = alice.open_stream(client)
    closing.append(second)
    assert second.status_code == 429
    first.close()
    assert _held(app, alice.grant_id) == 0
    assert _open_count(app) == 0
    closing.append(alice.open_stream(client))
    assert closing[-1].status_code == 200


def test_a_stream_the_backend_ends_frees_its_slot(
    gateway: Settings, store_client: t.Any
) -> None:
    """A POST answered as SSE holds a slot while it streams, not after."""
    app = _app(gateway, store_client, max_streams_per_grant=1)
    client = app.test_client()
    alice = Grant(client)
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "count", "arguments": {"to": 2, "delay_seconds": 0.01}},
    }
    for _ in range(3):  # one at a time: each gives its slot back
        response = client.post(
            "/mcp", json=call, headers=mcp_headers(alice.token, alice.session)
        )
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
        assert messages(response)[-1]["result"]["content"][0]["text"] == "counted to 2"
        assert _held(app, alice.grant_id) == 0
    assert _open_count(app) == 0


def test_a_json_answer_gives_the_slot_back_at_once(
    gateway: Settings, store_client: t.Any, closing: list[t.Any]
) -> None:
    """A POST that may stream takes a slot, returned when the answer is not SSE:
    a notification (202, no body) never keeps one, and with the grant's slots
    all held by streams, such a POST is refused."""
    app = _app(gateway, store_client, max_streams_per_grant=2)
    client = app.test_client()
    alice = Grant(client)
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    for _ in range(3):
        done = client.post(
            "/mcp", json=note, headers=mcp_headers(alice.token, alice.session)
        )
        assert done.status_code == 202
    assert _held(app, alice.grant_id) == 0
    closing.append(alice.open_stream(client))
    closing.append(alice.open_stream(client))
    refused = client.post(
        "/mcp", json=note, headers=mcp_headers(alice.token, alice.session)
    )
    assert refused.status_code == 429


def test_backend_read_timeout_frees_the_slot(
    gateway: Settings, store_client: t.Any
) -> None:
    """A stream whose backend goes quiet past MCP_BACKEND_READ_TIMEOUT_SECONDS
    is cut, and gives its slot back."""
    app = create_app(
        gateway.replace(
            limits=Limits(max_streams_per_grant=1), backend_read_timeout_seconds=1.0
        ),
        redis_client=store_client,
    )
    client = app.test_client()
    alice = Grant(client)
    quiet = {**LONG_CALL, "params": {**LONG_CALL["params"]}}
    quiet["params"]["arguments"] = {"to": 2, "delay_seconds": 3}
    stream = alice.open_stream(client, quiet)
    assert stream.status_code == 200
    body = stream.get_data(as_text=True)  # returns once the read timed out
    print(f"\nbody before the cut: {body!r}")
    assert "counted to 2" not in body
    assert _held(app, alice.grant_id) == 0
    assert _open_count(app) == 0
    stream.close()
    again = alice.open_stream(client)
    assert again.status_code == 200
    again.close()


def test_per_worker_cap(
    gateway: Settings, store_client: t.Any, closing: list[t.Any]
) -> None:
    """MAX_STREAMS counts every grant's streams in this process; past it the
    server is full: 503 with Retry-After (not the client's 429)."""
    app = _app(gateway, store_client, max_streams_per_grant=0, max_streams=2)
    client = app.test_client()
    alice, bob = Grant(client), Grant(client)
    closing.append(alice.open_stream(client))
    closing.append(bob.open_stream(client))
    refused = bob.open_stream(client)
    closing.append(refused)
    assert refused.status_code == 503
    assert refused.json["error"] == "temporarily_unavailable"
    assert refused.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    closing.pop(0).close()
    closing.append(bob.open_stream(client))
    assert closing[-1].status_code == 200


def test_no_cap_when_both_are_off(
    gateway: Settings, store_client: t.Any, closing: list[t.Any]
) -> None:
    app = _app(gateway, store_client, max_streams_per_grant=0, max_streams=0)
    client = app.test_client()
    alice = Grant(client)
    for _ in range(12):
        closing.append(alice.open_stream(client))
        assert closing[-1].status_code == 200
    assert _held(app, alice.grant_id) == 0  # nothing leased in Redis
