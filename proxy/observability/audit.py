"""The audit trail: one JSON line per event on the ``proxy.audit`` logger.

Subscribed to the event hub (:mod:`proxy.observability.events`) by
``create_app``. Each line carries the stable ``event`` name, its outcome, the
client id and subject when known, the client's IP and user agent, the request
id and the trace id, and the event's other fields (ids, hashes and reasons,
never secrets; a field named like a secret is dropped all the same). The
audit logger writes JSON (UTC timestamps) whatever LOG_FORMAT says, at INFO
whatever LOG_LEVEL says, and does not propagate to the root handler (no line
twice).

Three plain progress steps of a flow (``PROGRESS_STEPS``) are left to the
trace and the metrics when they went "ok" (decision J68): the same request
always writes an audit line for the same client that says as much (the
decision taken with or before the step, or the refusal after it), and
skipping them took a third of the audit's cost off authorize, consent and
callback.

A second, optional sink (:class:`FlowConsole`, FLOW_LOG=true, on in the demo)
prints one human-readable line per flow step through the ``proxy.flow``
logger, for whoever watches the terminal.
"""

from __future__ import annotations

import logging
import typing as t

from proxy.observability.logging_setup import REDACTED
from proxy.observability.logging_setup import SECRET_PARAMS
from proxy.observability.logging_setup import configure_record_logger
from proxy.observability.logging_setup import iso_timestamp
from proxy.observability.logging_setup import owned_handler
from proxy.observability.logging_setup import record_line

if t.TYPE_CHECKING:
    from proxy.observability.events import Event

AUDIT_LOGGER = "proxy.audit"
#: Progress, not decisions (J68). In the same request: ``authorize.received``
#: is followed by ``consent.shown``, ``consent.skipped`` or
#: ``authorize.refused`` (each with the redirect URI and scope);
#: ``upstream.redirected`` follows ``consent.approved`` or ``consent.skipped``;
#: ``callback.received`` is followed by ``login.succeeded`` or
#: ``login.refused``. One that did not go "ok" is audited all the same.
PROGRESS_STEPS = frozenset(
    {"authorize.received", "upstream.redirected", "callback.received"}
)
FLOW_LOGGER = "proxy.flow"
_SECRET_FIELDS = SECRET_PARAMS | {"secret", "cookie", "authorization"}


def audit_record(event: Event) -> dict[str, t.Any]:
    """The JSON object written for `event` (see the module docstring)."""
    request = event.request
    record: dict[str, t.Any] = {
        "event": event.name,
        "outcome": event.outcome,
        "at": iso_timestamp(event.at),
        "client_id": event.fields.get("client_id"),
        "sub": event.fields.get("sub"),
        "ip": request.ip if request else None,
        "user_agent": request.user_agent if request else None,
        "request_id": request.request_id if request else None,
        "trace_id": event.trace_id,
    }
    for name, value in event.fields.items():
        if name in record:
            continue
        record[name] = REDACTED if name.lower() in _SECRET_FIELDS else value
    return record


class AuditLog:
    """The audit sink: ``events.subscribe(AuditLog())``."""

    def __init__(self) -> None:
        self.logger = configure_record_logger(AUDIT_LOGGER)

    def __call__(self, event: Event) -> None:
        if event.name in PROGRESS_STEPS and event.outcome == "ok":
            return
        if not self.logger.isEnabledFor(logging.INFO):
            return
        fields = audit_record(event)
        handler = owned_handler(self.logger)
        if handler is not None:
            # The line the record would become, without the LogRecord and the
            # handler chain (a third of an event's cost); the same bytes.
            ts = fields["at"]
            handler.write_line(
                record_line(fields, ts, "INFO", AUDIT_LOGGER, event.name)
            )
            return
        # makeRecord + handle, not logger.info: the caller's file and line
        # (a stack walk per event) say nothing here, the event name does.
        record = self.logger.makeRecord(
            AUDIT_LOGGER,
            logging.INFO,
            "",
            0,
            event.name,
            (),
            None,
            extra={"fields": fields, "request_id": fields["request_id"]},
        )
        record.created = event.at
        self.logger.handle(record)


class FlowConsole:
    """One readable line per flow step: ``consent.approved client=... sub=...``."""

    def __init__(self) -> None:
        self.logger = logging.getLogger(FLOW_LOGGER)
        self.logger.setLevel(logging.INFO)

    def __call__(self, event: Event) -> None:
        fields = event.fields
        words = [
            event.name if event.outcome == "ok" else f"{event.name} ({event.outcome})"
        ]
        for name in ("client_id", "sub", "reason", "redirect_uri", "error"):
            value = fields.get(name)
            if value is not None and name.lower() not in _SECRET_FIELDS:
                words.append(f"{name}={str(value)[:120]}")
        if event.trace_id:
            words.append(f"trace={event.trace_id[:16]}")
        self.logger.info(" ".join(words))
