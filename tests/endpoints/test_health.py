"""GET /healthz (liveness) and /readyz (the store answers)."""

from __future__ import annotations

import typing as t

import fakeredis

from ._helpers import assert_json_error


def test_liveness_answers_without_the_store(
    client: t.Any, fake_server: fakeredis.FakeServer
) -> None:
    """/healthz says the process is up even when Redis is not."""
    fake_server.connected = False
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readiness_is_ok_with_the_store_up(client: t.Any) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["store"] == "up"


def test_readiness_is_503_with_the_store_down(
    client: t.Any, fake_server: fakeredis.FakeServer
) -> None:
    """/readyz answers 503 with Retry-After while Redis is unreachable."""
    fake_server.connected = False
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.get_json()["store"] == "down"


def test_readiness_recovers_with_the_store(
    client: t.Any, fake_server: fakeredis.FakeServer
) -> None:
    """The service recovers by itself once Redis answers again."""
    fake_server.connected = False
    assert client.get("/readyz").status_code == 503
    fake_server.connected = True
    assert client.get("/readyz").status_code == 200


def test_store_outage_at_an_oauth_endpoint_is_503_not_500(
    client: t.Any, fake_server: fakeredis.FakeServer
) -> None:
    """Redis down is 503 temporarily_unavailable with Retry-After."""
    fake_server.connected = False
    response = client.post(
        "/oauth2/register", json={"redirect_uris": ["https://a.example/cb"]}
    )
    assert_json_error(response, 503, "temporarily_unavailable")
    assert response.headers["Retry-After"]
    assert response.headers["Cache-Control"] == "no-store"
