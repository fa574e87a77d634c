"""proxy/observability/audit.py and the emit() calls: one JSON line per event,
and a whole flow's logs hold none of the secrets the flow used."""

from __future__ import annotations

import json
import typing as t
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
import redis

from proxy import create_app
from proxy.observability import logging_setup
from proxy.observability.audit import AUDIT_LOGGER
from proxy.observability.audit import PROGRESS_STEPS
from proxy.observability.audit import audit_record
from proxy.observability.events import Events
from proxy.observability.events import RequestContext
from proxy.observability.events import current_request

if t.TYPE_CHECKING:
    from proxy.config.settings import Settings
    from tests.oauth_client import OAuthTestClient


@pytest.fixture
def store_client(real_redis: redis.Redis) -> redis.Redis:
    return real_redis


def audit_lines(err: str) -> list[dict[str, t.Any]]:
    found = []
    for line in err.splitlines():
        if line.startswith("{") and f'"logger":"{AUDIT_LOGGER}"' in line:
            found.append(json.loads(line))
    return found


def test_an_event_is_one_json_line_with_the_request_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from proxy.observability.audit import AuditLog

    events = Events()
    events.subscribe(AuditLog())
    token = current_request.set(RequestContext("rid-9", "198.51.100.7", "claude"))
    try:
        events.emit(
            "code.redeemed",
            client_id="c1",
            sub="alice",
            grant="abcd1234",
            trace_id="t1",
        )
    finally:
        current_request.reset(token)
    (line,) = audit_lines(capsys.readouterr().err)
    assert line["event"] == "code.redeemed"
    assert line["outcome"] == "ok"
    assert (line["client_id"], line["sub"], line["grant"]) == (
        "c1",
        "alice",
        "abcd1234",
    )
    assert (line["ip"], line["user_agent"], line["request_id"]) == (
        "198.51.100.7",
        "claude",
        "rid-9",
    )
    assert line["trace_id"] == "t1"


@pytest.mark.parametrize("name", sorted(PROGRESS_STEPS))
def test_a_progress_step_is_audited_only_when_it_did_not_go_ok(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from proxy.observability.audit import AuditLog

    events = Events()
    events.subscribe(AuditLog())
    events.emit(name, client_id="c1")
    events.emit(name, outcome="error", client_id="c1", reason="upstream_down")
    (line,) = audit_lines(capsys.readouterr().err)
    assert (line["event"], line["outcome"], line["reason"]) == (
        name,
        "error",
        "upstream_down",
    )


def test_a_field_named_like_a_secret_is_redacted() -> None:
    events = Events()
    event = events.emit("token.revoked", client_id="c", token="tok-value", code="x")
    record = audit_record(event)
    assert "tok-value" not in json.dumps(record)
    assert record["token"] == "[redacted]"


def test_audit_lines_are_json_whatever_log_format_says(
    settings: Settings, store_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(settings.replace(log_format="text"), redis_client=store_client)
    response = app.test_client().post(
        "/oauth2/register",
        json={"redirect_uris": ["http://127.0.0.1:5555/cb"], "client_name": "Cl"},
    )
    assert response.status_code == 201
    (line,) = audit_lines(capsys.readouterr().err)
    assert line["event"] == "client.registered"
    assert line["client_id"] == response.get_json()["client_id"]
    assert line["request_id"] == response.headers["X-Request-Id"]


def test_audit_log_off(
    settings: Settings, store_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(settings.replace(audit_log=False), redis_client=store_client)
    body = {"redirect_uris": ["http://127.0.0.1:5555/cb"]}
    assert app.test_client().post("/oauth2/register", json=body).status_code == 201
    assert audit_lines(capsys.readouterr().err) == []


@pytest.fixture
def debug_logging() -> t.Iterator[None]:
    yield
    logging_setup.configure("info", "text")


def _secrets_of(oauth: OAuthTestClient, flow: t.Any) -> dict[str, str]:
    upstream = parse_qs(urlsplit(flow.upstream_url).query)
    callback = parse_qs(urlsplit(flow.callback_url).query)
    found = {
        "client code": flow.code,
        "client state": flow.state,
        "code_verifier": flow.verifier,
        "upstream state": upstream["state"][0],
        "upstream code": callback["code"][0],
        "csrf_token": flow.consent_form["csrf_token"],
        "consent blob": flow.consent_form["request"],
    }
    for cookie in oauth.client._cookies.values():  # noqa: SLF001
        found[f"cookie {cookie.key}"] = cookie.value
    return found


def test_a_full_flow_logs_every_step_and_no_secret(
    settings: Settings,
    store_client: redis.Redis,
    oauth: OAuthTestClient,
    capsys: pytest.CaptureFixture[str],
    debug_logging: None,
) -> None:
    """App lines (DEBUG, so everything: urllib3's upstream requests too), audit
    and flow lines of register -> authorize -> consent -> IdP -> callback ->
    token -> refresh -> code replay -> bad client secret, as our handlers
    wrote them (the in-process IdP's own lines pass through them as well)."""
    app = create_app(
        settings.replace(log_level="debug", flow_log=True), redis_client=store_client
    )
    oauth.client = app.test_client()
    capsys.readouterr()
    registered = oauth.register(
        client_name="Secretive", token_endpoint_auth_method="client_secret_post"
    )
    client_id, client_secret = registered["client_id"], registered["client_secret"]
    flow = oauth.login(client_id)
    first = oauth.token(flow, client_secret=client_secret)
    assert first.status_code == 200, first.get_data(as_text=True)
    tokens = first.get_json()
    second = oauth.refresh(
        client_id, tokens["refresh_token"], client_secret=client_secret
    )
    assert second.status_code == 200
    rotated = second.get_json()
    # The first refresh token again, past its grace: reuse, the grant ends.
    replay = oauth.token(flow, client_secret=client_secret)
    assert replay.status_code == 400
    bad_auth = oauth.refresh(client_id, rotated["refresh_token"], client_secret="no")
    assert bad_auth.status_code == 401

    captured = capsys.readouterr()
    output = captured.err + captured.out
    assert "urllib3.connectionpool" in output  # DEBUG lines were written
    names = [line["event"] for line in audit_lines(captured.err)]
    assert names == [
        "client.registered",
        "consent.shown",
        "consent.approved",
        "login.succeeded",
        "grant.created",
        "code.redeemed",
        "refresh.rotated",
        "code.replayed",
        "grant.revoked",
        "token.refused",
        "client_auth.failed",
    ]
    for line in audit_lines(captured.err):
        assert line["client_id"] == client_id
        assert line["request_id"]
        assert line["ip"] == "127.0.0.1"
    assert "proxy.flow: consent.approved client_id=" in captured.err

    values = _secrets_of(oauth, flow)
    values |= {
        "client_secret": client_secret,
        "access token": tokens["access_token"],
        "refresh token": tokens["refresh_token"],
        "rotated access token": rotated["access_token"],
        "rotated refresh token": rotated["refresh_token"],
    }
    assert len(values) >= 12
    for what, value in values.items():
        assert len(value or "") >= 8, what
        assert value not in output, f"the {what} reached the logs"
        # The secret half of `<grant_id>.<secret>` alone must not leak either.
        tail = value.rsplit(".", 1)[-1]
        assert tail not in output, f"part of the {what} reached the logs"


def test_the_direct_line_is_the_line_the_log_record_would_be(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The fast path (our handler alone) writes the bytes the LogRecord path
    writes; a filter on the logger sends events down the record path."""
    from proxy.observability.audit import AuditLog
    from proxy.observability.events import Event

    sink = AuditLog()
    context = RequestContext("rid-1", "192.0.2.1", "cursor")
    event = Event(
        name="consent.approved",
        outcome="ok",
        at=1_780_000_000.25,
        fields={"client_id": "c1", "sub": "alice", "scope": "mcp"},
        request=context,
        trace_id="0123456789abcdef",
    )
    assert logging_setup.owned_handler(sink.logger) is not None
    sink(event)
    direct = capsys.readouterr().err

    def keep(record: t.Any) -> bool:
        return True

    sink.logger.addFilter(keep)
    try:
        assert logging_setup.owned_handler(sink.logger) is None
        sink(event)
        through_record = capsys.readouterr().err
    finally:
        sink.logger.removeFilter(keep)
    assert direct == through_record
    assert json.loads(direct)["ts"] == "2026-05-28T20:26:40.250+00:00"


def test_a_handler_an_operator_adds_receives_the_events() -> None:
    """Audit events stay log records for whoever configures logging."""
    import logging

    from proxy.observability.audit import AuditLog

    sink = AuditLog()
    received: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            received.append(record)

    extra = Collect()
    sink.logger.addHandler(extra)
    try:
        events = Events()
        events.subscribe(sink)
        events.emit("token.revoked", client_id="c9")
    finally:
        sink.logger.removeHandler(extra)
    (record,) = received
    assert record.getMessage() == "token.revoked"
    assert record.fields["client_id"] == "c9"  # type: ignore[attr-defined]
