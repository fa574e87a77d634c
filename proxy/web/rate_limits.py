"""Rate limits and failed-authentication back-off, attached to each blueprint.

One call per endpoint module says what applies there (like `allow_cors`):

- a bucket per client IP (`RATE_LIMIT_<ENDPOINT>`);
- a bucket per client id at token and revoke, charged only by requests that
  succeeded, so nobody can exhaust a well-known client id (every ChatGPT
  user shares one) with requests that fail;
- back-off per IP and client id after repeated failed client
  authentication (checklist RATE-1), doubling up to AUTH_BACKOFF_MAX_SECONDS.

Everything a request checks goes out in one Redis pipeline before the view
runs. A refusal is 429 `temporarily_unavailable` with Retry-After.
"""

from __future__ import annotations

import logging
import typing as t

import redis.exceptions
from flask import g
from flask import request

from proxy.app_state import state
from proxy.clients.authentication import presented_client_id
from proxy.oauth.errors import TooManyRequestsError
from proxy.web.client_ip import client_ip
from proxy.web.client_ip import limit_subject

if t.TYPE_CHECKING:
    from flask import Blueprint
    from flask import Response

    from proxy.config.limits import Rate

log = logging.getLogger(__name__)


def limit_requests(
    blueprint: Blueprint,
    endpoint: str,
    *,
    per_client: bool = False,
    auth_failures: bool = False,
) -> None:
    """Check `endpoint`'s limits before each of the blueprint's views."""

    @blueprint.before_request
    def _check_limits() -> None:
        app = state()
        limits = app.settings.limits
        if not limits.enabled:
            return
        ip = limit_subject(
            client_ip(
                request.remote_addr, request.headers.get("X-Forwarded-For"), limits
            )
        )
        client_id = presented_client_id(request.headers, request.form)
        g.rate_limit_subject = (ip, client_id)
        store = app.store.limits
        charge: list[tuple[str, Rate]] = []
        peek: list[tuple[str, Rate]] = []
        blocked: list[str] = []
        if rate := limits.per_ip.get(endpoint):
            charge.append((store.ip_bucket(endpoint, ip), rate))
        if per_client and client_id and limits.per_client:
            peek.append((store.client_bucket(client_id), limits.per_client))
        if auth_failures and client_id:
            blocked.append(store.auth_block(ip, client_id))
        wait = store.check(charge, peek=peek, blocked=blocked)
        if wait:
            log.info("rate limited: %s from %s for %d s", endpoint, ip, wait)
            raise TooManyRequestsError(wait, reason="rate_limited")

    @blueprint.after_request
    def _count_outcome(response: Response) -> Response:
        subject: tuple[str, str | None] | None = g.get("rate_limit_subject")
        if subject is None:
            return response
        ip, client_id = subject
        if client_id is None:
            return response
        try:
            _count(
                endpoint, response.status_code, ip, client_id, per_client, auth_failures
            )
        except redis.exceptions.RedisError as exc:
            # The answer is already decided (a code may be spent): keep it.
            log.warning("rate limit not counted: %s", exc.__class__.__name__)
        return response


def _count(
    endpoint: str,
    status: int,
    ip: str,
    client_id: str,
    per_client: bool,
    auth_failures: bool,
) -> None:
    """After the view: a success spends the client's bucket, a 401 earns back-off."""
    app = state()
    limits = app.settings.limits
    store = app.store.limits
    if per_client and status < 300 and limits.per_client:
        store.check([(store.client_bucket(client_id), limits.per_client)])
    elif auth_failures and status == 401:
        backoff = store.record_auth_failure(
            ip,
            client_id,
            allowed=limits.auth_failures_allowed,
            longest_seconds=limits.auth_backoff_max_seconds,
        )
        if backoff:
            log.warning(
                "client authentication keeps failing at %s from %s: backing off %d s",
                endpoint,
                ip,
                backoff,
            )
