"""Rate limits and failed-authentication back-off, attached to each blueprint.

One call per endpoint module says what applies there (like `allow_cors`):

- a bucket per client IP (`RATE_LIMIT_<ENDPOINT>`);
- a bucket per client id at token and revoke, and the daily registration
  quota per IP, that keep only the charges of requests that succeeded, so
  nobody can exhaust a well-known client id (every ChatGPT user shares one)
  with requests that fail;
- back-off per IP and client id after repeated failed client
  authentication (checklist RATE-1), doubling up to AUTH_BACKOFF_MAX_SECONDS.

Everything a request checks goes out in one Redis pipeline before the view
runs; a failed request gives its success-only charges back afterwards (one
more round trip, for failures only). A refusal is 429
`temporarily_unavailable` with Retry-After.
"""

from __future__ import annotations

import logging
import typing as t

import redis.exceptions
from flask import g
from flask import request

from proxy.app_state import state
from proxy.clients.authentication import presented_client_id
from proxy.config.limits import Rate
from proxy.oauth.errors import TooManyRequestsError
from proxy.observability import metrics
from proxy.web.client_ip import client_ip
from proxy.web.client_ip import limit_subject

if t.TYPE_CHECKING:
    from flask import Blueprint
    from flask import Response

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
        # Buckets charged now, in the same round trip, and given back after
        # the view unless it succeeded: only successes count against a shared
        # client id (failures cannot lock it out) and the daily registration
        # quota, and a success costs no round trip more.
        refundable: list[tuple[str, Rate]] = []
        blocked: list[str] = []
        if rate := limits.per_ip.get(endpoint):
            charge.append((store.ip_bucket(endpoint, ip), rate))
        if endpoint == "register" and limits.registrations_per_ip_per_day:
            daily = Rate(limits.registrations_per_ip_per_day, 86400)
            refundable.append((store.ip_bucket("register-day", ip), daily))
        if per_client and client_id and limits.per_client:
            refundable.append((store.client_bucket(client_id), limits.per_client))
        if auth_failures and client_id:
            blocked.append(store.auth_block(ip, client_id))
        waits = store.waits([*charge, *refundable], blocked=blocked)
        charged = waits[len(charge) : len(charge) + len(refundable)]
        g.rate_limit_refunds = [
            b for b, w in zip(refundable, charged, strict=True) if w == 0
        ]
        if any(waits):
            _give_back_charges()
            wait = -(-max(waits) // 1000)
            log.info("rate limited: %s from %s for %d s", endpoint, ip, wait)
            app.events.emit(
                "rate.limited",
                outcome="refused",
                client_id=client_id,
                limit=endpoint,
                retry_after=wait,
            )
            metrics.RATE_LIMITED.labels(endpoint=endpoint).inc()
            raise TooManyRequestsError(wait, reason="rate_limited")

    @blueprint.after_request
    def _count_outcome(response: Response) -> Response:
        subject: tuple[str, str | None] | None = g.get("rate_limit_subject")
        if subject is None:
            return response
        ip, client_id = subject
        try:
            if response.status_code >= 300:
                _give_back_charges()
            if auth_failures and client_id and response.status_code == 401:
                _back_off(endpoint, ip, client_id)
        except redis.exceptions.RedisError as exc:
            # The answer is already decided (a code may be spent): keep it.
            log.warning("rate limit not counted: %s", exc.__class__.__name__)
        return response


def _give_back_charges() -> None:
    """Refund the buckets that count only successes, once."""
    buckets = g.pop("rate_limit_refunds", [])
    if buckets:
        state().store.limits.refund(buckets)


def _back_off(endpoint: str, ip: str, client_id: str) -> None:
    """A failed client authentication: count it, and say so when it earns back-off."""
    limits = state().settings.limits
    backoff = state().store.limits.record_auth_failure(
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
