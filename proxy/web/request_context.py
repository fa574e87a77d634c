"""Who is asking: a request id, the client IP and user agent, for every request.

``X-Request-Id`` is taken when it is well-formed (1-128 characters of
letters, digits and ``._:-``; a caller's id ties our lines to theirs), else
one is generated; it is echoed in the response. The context is set into
``current_request`` (proxy/observability/events.py) before any view or
rate limit runs, so every log line and event of the request carries it, and
reset when the request ends.
"""

from __future__ import annotations

import re
import secrets
import typing as t

from flask import g
from flask import request

from proxy.observability.events import RequestContext
from proxy.observability.events import current_request
from proxy.web.client_ip import client_ip

if t.TYPE_CHECKING:
    from flask import Flask
    from flask import Response

    from proxy.config.settings import Settings

REQUEST_ID_HEADER = "X-Request-Id"
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,128}")
USER_AGENT_MAX_CHARS = 256


def request_id_of(header: str | None) -> str:
    """The caller's request id if it is well-formed, else a new one."""
    if header and _WELL_FORMED.fullmatch(header):
        return header
    return secrets.token_hex(8)


def init_app(app: Flask, settings: Settings) -> None:
    """Set and reset ``current_request`` around every request; echo its id."""

    @app.before_request
    def _enter() -> None:
        context = RequestContext(
            request_id=request_id_of(request.headers.get(REQUEST_ID_HEADER)),
            ip=client_ip(
                request.remote_addr,
                request.headers.get("X-Forwarded-For"),
                settings.limits,
            ),
            user_agent=request.headers.get("User-Agent", "")[:USER_AGENT_MAX_CHARS],
        )
        g.request_context = context
        g.request_context_token = current_request.set(context)

    @app.after_request
    def _echo(response: Response) -> Response:
        context: RequestContext | None = g.get("request_context")
        if context is not None:
            response.headers[REQUEST_ID_HEADER] = context.request_id
        return response

    @app.teardown_request
    def _leave(_: BaseException | None) -> None:
        token = g.pop("request_context_token", None)
        if token is None:
            return
        try:
            current_request.reset(token)
        except ValueError:  # ended in another context (a streamed response)
            current_request.set(None)
