"""Logging for the app and gunicorn alike: one line per record, secrets redacted.

:func:`configure` installs one handler on the root logger (stderr): a
human-readable line by default (timestamp, level, request id, logger,
message), or one JSON object per line with ``LOG_FORMAT=json``; ``LOG_LEVEL``
sets its level. It is idempotent: the gunicorn arbiter calls it through
:func:`gunicorn_logger_class` (config/gunicorn.conf.py), each worker calls it
again from ``create_app``, and tests call ``create_app`` many times.

Every line passes :func:`redact_text`: a value after a secret parameter name
(``code=``, ``state=``, ``access_token=``, ...) and a bearer credential become
``[redacted]``. gunicorn's access line is rebuilt from its parts with the
query string and referer redacted by parameter name (:func:`redact_query`),
never its raw request line.

config/gunicorn.conf.py loads this file by path in the arbiter, before gevent
patches the workers: it imports only the standard library and orjson (a C
extension that starts no thread and opens no socket; gunicorn inside a
function), never the ``proxy`` package. The request id is read from
``proxy.observability.events.current_request`` only once a worker has
imported it (a process without the app has no request).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import sys
import typing as t
from datetime import UTC
from datetime import datetime
from urllib.parse import unquote_plus

import orjson

#: Query and form parameters whose values never reach a log line.
SECRET_PARAMS = frozenset(
    {
        "code",
        "state",
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "client_secret",
        "client_assertion",
        "assertion",
        "code_verifier",
        "csrf_token",
        "request",
        "nonce",
        "password",
        "session_state",
        "subject_token",
        "actor_token",
        "device_code",
    }
)
REDACTED = "[redacted]"
LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("text", "json")

_SECRET_ASSIGNMENT = re.compile(
    r"(?i)(?<![A-Za-z0-9_])(" + "|".join(sorted(SECRET_PARAMS)) + r")=[^&\s\"',;]+"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
#: Marks the handlers this module owns (the module may be loaded twice: by path
#: in gunicorn's arbiter, as a package module in the app).
_OWNED = "_proxy_logging"
_EVENTS_MODULE = "proxy.observability.events"


def redact_query(query: str) -> str:
    """``a=1&code=xyz`` -> ``a=1&code=[redacted]``: values of SECRET_PARAMS go."""
    if not query:
        return query
    parts = []
    for pair in query.split("&"):
        name, sep, _ = pair.partition("=")
        if sep and unquote_plus(name).strip().lower() in SECRET_PARAMS:
            pair = f"{name}={REDACTED}"
        parts.append(pair)
    return "&".join(parts)


def redact_url(url: str) -> str:
    """A URL or path with its query redacted (see :func:`redact_query`)."""
    head, sep, query = url.partition("?")
    if not sep:
        return url
    query, hash_sep, fragment = query.partition("#")
    tail = f"#{redact_query(fragment)}" if hash_sep else ""
    return f"{head}?{redact_query(query)}{tail}"


def redact_text(text: str) -> str:
    """Free text with ``name=value`` of secret names and credentials redacted."""
    if "=" in text:
        text = _SECRET_ASSIGNMENT.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def request_id() -> str | None:
    """The current request's id, once the app is loaded (else None)."""
    events = sys.modules.get(_EVENTS_MODULE)
    if events is None:
        return None
    context = events.current_request.get()
    return None if context is None else str(context.request_id)


#: The compact standard encoder: what ``json_line`` falls back to where
#: orjson's text would differ (``json.dumps`` with options builds one per call).
LINE_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))
#: Types orjson would write itself where LINE_ENCODER writes their str().
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_DELETE = b"\x7f"  # ASCII, and escaped by the standard encoder


def json_line(body: t.Any) -> str:
    """`body` as one compact line of JSON: every audit line and trace step.

    orjson writes it in an eighth of the instructions the standard encoder
    takes (callgrind: 4.5 K against 36 K for a trace step; an authorize
    request writes three such lines). Where orjson's text would differ from
    ``LINE_ENCODER``'s, the standard encoder writes the line instead: text
    that is not printable ASCII (escaped as ``\\uXXXX``), an int past 64
    bits, a key that is not a string. What still differs is valid JSON, and
    none of it is in what our events carry: a float in another notation
    (``1e-7`` for ``1e-07``; with some orjson versions ``1e16`` for
    ``1e+16``), NaN and infinities as ``null`` (the standard encoder writes
    ``NaN``, which is not JSON), a plain ``Enum`` member (its value for its
    str()), and a dict subclass (its stored items, not what its ``items()``
    says).
    """
    try:
        raw = orjson.dumps(body, default=str, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError
        return LINE_ENCODER.encode(body)
    if raw.isascii() and _DELETE not in raw:
        return raw.decode("ascii")
    return LINE_ENCODER.encode(body)


def iso_timestamp(seconds: float) -> str:
    """``2026-05-01T12:00:00.123+00:00``: UTC, so lines from every host and
    container sort together, and no local-time-zone lookup per line.

    The text up to the second is formatted once per second (a datetime per
    line was a fifth of an audit event's cost, profiled under gunicorn).
    """
    whole = math.floor(seconds)
    micros = round((seconds - whole) * 1e6)  # as datetime rounds (half even)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    return f"{_second_text(whole)}.{micros // 1000:03d}+00:00"


@functools.lru_cache(maxsize=4)
def _second_text(whole_seconds: int) -> str:
    return datetime.fromtimestamp(whole_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _timestamp(record: logging.LogRecord) -> str:
    return iso_timestamp(record.created)


class TextFormatter(logging.Formatter):
    """``2026-05-01T12:00:00.123+00:00 INFO [rid] logger: message``."""

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None) or request_id() or "-"
        line = (
            f"{_timestamp(record)} {record.levelname} [{rid}] "
            f"{record.name}: {record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact_text(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a record's ``fields`` dict is merged in."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, t.Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", None) or request_id(),
            "message": redact_text(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            body.update(fields)
        if record.exc_info:
            body["exc_info"] = redact_text(self.formatException(record.exc_info))
        return json_line(body)


class RecordFormatter(logging.Formatter):
    """A JSON line made of a record's ready ``fields`` (the audit trail).

    The fields were built from named values that are never secrets
    (:mod:`proxy.observability.audit`), so no text redaction pass runs here;
    ``ts`` is the fields' own ``at`` when they carry one.
    """

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, t.Any] = getattr(record, "fields", None) or {}
        ts = fields.get("at") or _timestamp(record)
        return record_line(fields, ts, record.levelname, record.name, str(record.msg))


def record_line(
    fields: dict[str, t.Any], ts: str, level: str, logger: str, message: str
) -> str:
    """The JSON line :class:`RecordFormatter` writes for `fields`."""
    body: dict[str, t.Any] = {
        "ts": ts,
        "level": level,
        "logger": logger,
        "message": message,
    }
    body.update(fields)
    return json_line(body)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (pytest swaps it per test)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> t.Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: t.Any) -> None:
        pass

    def write_line(self, line: str) -> None:
        """What :meth:`emit` does with a formatted record, given the line."""
        with self.lock:  # type: ignore[union-attr]
            try:
                stream = self.stream
                stream.write(line + self.terminator)
                stream.flush()
            except Exception:  # as logging does: a log line never fails a request
                if logging.raiseExceptions:
                    sys.stderr.write(f"--- logging error writing {line[:80]!r}\n")


def owned_handler(logger: logging.Logger) -> StderrHandler | None:
    """The logger's only handler when it is ours and nothing filters: a
    caller may then write its line straight to it (the audit trail's fast
    path); None when an operator added handlers or filters."""
    handlers = logger.handlers
    if len(handlers) != 1 or logger.filters:
        return None
    handler = handlers[0]
    if not isinstance(handler, StderrHandler) or handler.filters:
        return None
    if not getattr(handler, _OWNED, False):
        return None
    if not isinstance(handler.formatter, RecordFormatter):
        return None
    return handler


def _owned_handler(logger: logging.Logger) -> logging.Handler:
    for handler in logger.handlers:
        if getattr(handler, _OWNED, False):
            return handler
    handler = StderrHandler()
    setattr(handler, _OWNED, True)
    logger.addHandler(handler)
    return handler


def level_of(name: str) -> int:
    return (
        logging.getLevelName(name.upper()) if name.lower() in LEVELS else logging.INFO
    )


def configure(level: str = "info", log_format: str = "text") -> None:
    """Install (or update) the root handler: `log_format` lines at `level`."""
    root = logging.getLogger()
    handler = _owned_handler(root)
    handler.setFormatter(formatter(log_format))
    root.setLevel(level_of(level))


def configure_record_logger(name: str, level: int = logging.INFO) -> logging.Logger:
    """A logger that writes its records' ``fields`` as JSON lines to stderr,
    apart from the root's handler (:class:`RecordFormatter`)."""
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(level)
    _owned_handler(logger).setFormatter(RecordFormatter())
    return logger


def access_line(
    resp: t.Any, req: t.Any, environ: t.Mapping[str, t.Any], request_time: t.Any
) -> tuple[str, dict[str, t.Any]]:
    """gunicorn's access record, rebuilt with the query and referer redacted."""
    status = str(getattr(resp, "status", "-")).split(None, 1)[0]
    method = environ.get("REQUEST_METHOD", "-")
    path = environ.get("PATH_INFO", "")
    query = redact_query(environ.get("QUERY_STRING", ""))
    target = f"{path}?{query}" if query else path
    referer = redact_url(environ.get("HTTP_REFERER", "-"))
    agent = environ.get("HTTP_USER_AGENT", "-")
    sent = getattr(resp, "sent", None)
    millis = request_time.seconds * 1000 + request_time.microseconds / 1000
    rid = next(
        (v for k, v in getattr(resp, "headers", []) if k.lower() == "x-request-id"),
        None,
    )
    ip = environ.get("REMOTE_ADDR", "-")
    protocol = environ.get("SERVER_PROTOCOL", "-")
    size = "-" if sent is None else sent
    line = (
        f'{ip} "{method} {target} {protocol}" {status} {size}'
        f' "{referer}" "{agent}" {millis:.1f}ms'
    )
    fields = {
        "method": method,
        "path": path,
        "query": query,
        "status": int(status) if status.isdigit() else status,
        "bytes": sent,
        "duration_ms": round(millis, 1),
        "ip": ip,
        "user_agent": agent,
        "referer": referer,
    }
    return line, {"request_id": rid, "fields": fields}


def gunicorn_logger_class(*, log_format: str = "text") -> type:
    """gunicorn's Logger, writing our lines: `log_format`, redacted access line.

    Its level is gunicorn's ``loglevel`` (LOG_LEVEL); the root logger, which
    the app logs through, is configured alike.
    """
    from gunicorn.glogging import Logger  # type: ignore[import-untyped]

    class ProxyLogger(Logger):  # type: ignore[misc]
        def setup(self, cfg: t.Any) -> None:
            super().setup(cfg)
            configure(cfg.loglevel, log_format)
            for handler in [*self.error_log.handlers, *self.access_log.handlers]:
                handler.setFormatter(formatter(log_format))

        def access(
            self, resp: t.Any, req: t.Any, environ: t.Any, request_time: t.Any
        ) -> None:
            if not _access_log_on(self.cfg):
                return
            try:
                line, extra = access_line(resp, req, environ, request_time)
                self.access_log.info("%s", line, extra=extra)
            except Exception:
                self.exception("access log line failed")

    return ProxyLogger


def _access_log_on(cfg: t.Any) -> bool:
    """gunicorn's own rule for "is there an access log" (Logger.access).

    Spelled out here: gunicorn 24 made it the `access_log_enabled` property,
    which gunicorn 23 (our floor) does not have.
    """
    return bool(
        cfg.accesslog
        or cfg.logconfig
        or cfg.logconfig_dict
        or getattr(cfg, "logconfig_json", None)
        or (cfg.syslog and not cfg.disable_redirect_access_to_syslog)
    )
