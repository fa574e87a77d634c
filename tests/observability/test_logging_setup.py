"""proxy/observability/logging_setup.py: lines, JSON, levels, redaction."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import logging
import types

import pytest

from proxy.observability import logging_setup
from proxy.observability.events import RequestContext
from proxy.observability.events import current_request


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ""),
        ("a=1&b=2", "a=1&b=2"),
        ("code=abc&state=xyz&iss=x", "code=[redacted]&state=[redacted]&iss=x"),
        ("Access_Token=t1&x=2", "Access_Token=[redacted]&x=2"),
        (
            "client%5Fsecret=s&refresh_token=r",
            "client%5Fsecret=[redacted]&refresh_token=[redacted]",
        ),
        (
            "code_verifier=v&client_assertion=j",
            "code_verifier=[redacted]&client_assertion=[redacted]",
        ),
        ("noequals&code", "noequals&code"),
    ],
)
def test_redact_query_by_parameter_name(query: str, expected: str) -> None:
    assert logging_setup.redact_query(query) == expected


def test_redact_text_catches_assignments_and_credentials() -> None:
    text = 'GET /cb?code=s3cr3t&state=st4te "Bearer eyJhbGciOiJ.abc.def" error_code=x'
    out = logging_setup.redact_text(text)
    assert "s3cr3t" not in out
    assert "st4te" not in out
    assert "eyJhbGciOiJ" not in out
    # Only whole names: error_code is not `code`.
    assert "error_code=x" in out


def _record(msg: str, name: str = "proxy.test") -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, None, None)


def test_text_line_has_time_level_request_id_logger_and_message() -> None:
    token = current_request.set(RequestContext("rid-123", "192.0.2.1", "ua"))
    try:
        line = logging_setup.TextFormatter().format(_record("hello code=secret1"))
    finally:
        current_request.reset(token)
    stamp, level, rid, logger, *rest = line.split(" ")
    datetime.datetime.fromisoformat(stamp)
    assert (level, rid, logger) == ("INFO", "[rid-123]", "proxy.test:")
    assert " ".join(rest) == "hello code=[redacted]"


def test_json_line_is_one_object_with_fields() -> None:
    record = _record("access")
    record.fields = {"status": 200}  # type: ignore[attr-defined]
    record.request_id = "abc"  # type: ignore[attr-defined]
    line = logging_setup.JsonFormatter().format(record)
    assert "\n" not in line
    body = json.loads(line)
    assert body["request_id"] == "abc"
    assert body["level"] == "INFO"
    assert body["logger"] == "proxy.test"
    assert body["status"] == 200


def test_configure_is_idempotent_and_sets_level_and_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    logging_setup.configure("warning", "json")
    logging_setup.configure("warning", "json")
    owned = [h for h in root.handlers if getattr(h, "_proxy_logging", False)]
    assert len(owned) == 1
    assert root.level == logging.WARNING
    logging.getLogger("proxy.x").info("dropped")
    logging.getLogger("proxy.x").warning("kept")
    err = capsys.readouterr().err.strip().splitlines()
    assert [json.loads(line)["message"] for line in err] == ["kept"]
    logging_setup.configure("info", "text")
    assert root.level == logging.INFO


def test_access_line_redacts_query_and_referer() -> None:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/oauth2/callback",
        "QUERY_STRING": "code=upstreamcode&state=proxystate&iss=http%3A%2F%2Fidp",
        "RAW_URI": "/oauth2/callback?code=upstreamcode&state=proxystate",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_REFERER": "http://app/cb?code=clientcode&x=1",
        "HTTP_USER_AGENT": "tester",
    }
    resp = types.SimpleNamespace(
        status="302 FOUND", sent=0, headers=[("X-Request-Id", "r1")]
    )
    elapsed = datetime.timedelta(milliseconds=3)
    line, extra = logging_setup.access_line(resp, None, environ, elapsed)
    for secret in ("upstreamcode", "proxystate", "clientcode"):
        assert secret not in line
        assert secret not in json.dumps(extra)
    assert "/oauth2/callback?code=[redacted]&state=[redacted]&iss=" in line
    assert extra["request_id"] == "r1"
    assert extra["fields"]["status"] == 302


def test_gunicorn_logger_writes_the_redacted_access_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cls = logging_setup.gunicorn_logger_class(log_format="json")
    cfg = types.SimpleNamespace(
        loglevel="info",
        accesslog="-",
        errorlog="-",
        capture_output=False,
        syslog=False,
        logconfig=None,
        logconfig_dict={},
        logconfig_json=None,
        disable_redirect_access_to_syslog=False,
        access_log_format="%(r)s",
        user=0,
        group=0,
    )
    gunicorn_log = cls(cfg)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/oauth2/callback",
        "QUERY_STRING": "state=s3&code=c0de",
        "RAW_URI": "/oauth2/callback?state=s3&code=c0de",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    resp = types.SimpleNamespace(status="302 FOUND", sent=0, headers=[])
    gunicorn_log.access(resp, None, environ, datetime.timedelta(seconds=0))
    out = capsys.readouterr().out
    assert "c0de" not in out
    assert "state=[redacted]" in json.loads(out.strip().splitlines()[-1])["query"]
    for name in ("gunicorn.error", "gunicorn.access"):
        logging.getLogger(name).handlers.clear()
    logging_setup.configure("info", "text")


@pytest.mark.parametrize(
    "seconds",
    [0.0, 0.9999996, 1.0005, 1_799_999_999.9995, 1_799_999_999.9999997, -1.5, -0.0004]
    + [n * 7_919.123457 + n / 997 for n in range(1, 400)],
)
def test_iso_timestamp_is_what_datetime_writes_to_the_millisecond(
    seconds: float,
) -> None:
    expected = datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(
        "T", "milliseconds"
    )
    assert logging_setup.iso_timestamp(seconds) == expected


class _Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class _Point:
    x: int


@pytest.mark.parametrize(
    "body",
    [
        {"event": "consent.shown", "at": 1_796_602_022.123, "verified": False},
        {"sub": None, "scopes": ["read", "write"], "pair": (1, 2), "n": -0.0},
        {"quoted": 'a "b" \\ c', "controls": "line\nnext\ttab\x01\x1f", "del": "\x7f"},
        {"accented": "café", "emoji": "\U0001f916", "lone surrogate": "\ud800"},
        {"big": 2**70, "negative big": -(2**64)},
        {1: "an int key", None: "a None key"},
        {"when": datetime.datetime(2026, 1, 2, 3, 4, 5), "point": _Point(1)},
        {"set": {1}, "bytes": b"x", "nested": {"deep": [{"x": "y"}]}},
    ],
)
def test_json_line_writes_what_the_standard_encoder_writes(body: object) -> None:
    assert logging_setup.json_line(body) == logging_setup.LINE_ENCODER.encode(body)


def test_json_line_differs_only_in_ways_that_stay_valid_json() -> None:
    # Float notation varies with orjson's version (1e16 or 1e+16; 1e-7, where
    # the standard encoder writes 1e-07): the value read back does not.
    body = {"big float": 1e16, "small float": 1e-7, "color": _Color.RED}
    line = logging_setup.json_line(body)
    assert json.loads(line) == {"big float": 1e16, "small float": 1e-7, "color": "red"}
    assert line.endswith(',"color":"red"}')
