"""proxy/web/request_context.py: every request gets an id, echoed, and its
context is set while it runs and gone after."""

from __future__ import annotations

import re
import typing as t

import pytest

from proxy.observability.events import current_request
from proxy.web.request_context import request_id_of


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        ("abc-123", True),
        ("0f8fad5b-d9cb-469f-a165-70867728950e", True),
        ("Root=1-5e1b4151", False),
        ("a" * 128, True),
        ("a" * 129, False),
        ("", False),
        (None, False),
        ("bad id", False),
        ("line\nbreak", False),
        ('quote"', False),
    ],
)
def test_request_id_is_taken_only_when_well_formed(
    header: str | None, kept: bool
) -> None:
    got = request_id_of(header)
    assert (got == header) is kept
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", got)


def test_an_incoming_id_is_echoed(client: t.Any) -> None:
    response = client.get("/healthz", headers={"X-Request-Id": "caller-42"})
    assert response.headers["X-Request-Id"] == "caller-42"


def test_a_malformed_id_is_replaced_and_each_request_gets_its_own(
    client: t.Any,
) -> None:
    first = client.get("/healthz", headers={"X-Request-Id": "x" * 500})
    second = client.get("/healthz")
    ids = {first.headers["X-Request-Id"], second.headers["X-Request-Id"]}
    assert len(ids) == 2
    assert "x" * 500 not in ids


def test_errors_carry_the_id_too(client: t.Any) -> None:
    response = client.post("/oauth2/token", data={"grant_type": "nope"})
    assert response.status_code == 400
    assert response.headers["X-Request-Id"]


def test_the_context_is_set_during_the_request_and_reset_after(app: t.Any) -> None:
    seen = []

    @app.get("/_probe")
    def _probe() -> str:
        seen.append(current_request.get())
        return "ok"

    client = app.test_client()
    response = client.get(
        "/_probe",
        headers={"X-Request-Id": "probe-1", "User-Agent": "probe-agent"},
        environ_base={"REMOTE_ADDR": "203.0.113.5"},
    )
    assert response.status_code == 200
    (context,) = seen
    assert context is not None
    assert (context.request_id, context.ip, context.user_agent) == (
        "probe-1",
        "203.0.113.5",
        "probe-agent",
    )
    assert current_request.get() is None
