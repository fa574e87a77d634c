"""Is the identity provider usable? The verdict ``/readyz`` reports.

A wrong ``OAUTH_ISSUER``, an unreachable IdP or one whose discovery document
names another issuer fails every login, so the instance is not ready. The
discovery document is fetched at start-up and re-checked at most once per
``interval`` seconds in the background: ``/readyz`` reads the last verdict and
never waits on the IdP, except briefly for the very first one.
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t
from dataclasses import dataclass

from proxy.upstream.base import UpstreamError

log = logging.getLogger(__name__)

#: How often the IdP is asked at most, per worker.
CHECK_INTERVAL_SECONDS = 60.0
#: How long the first /readyz waits for the first verdict.
FIRST_VERDICT_WAIT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """``reason`` is a fixed name, safe to show anyone: ``issuer_mismatch``,
    ``discovery_unreachable``, ``discovery_invalid``, ``pending``."""

    ready: bool
    reason: str = ""


def reason_of(exc: UpstreamError) -> str:
    if exc.kind == "issuer_mismatch":
        return "issuer_mismatch"
    if exc.kind == "unavailable":
        return "discovery_unreachable"
    return "discovery_invalid"


class UpstreamReadiness:
    """The cached verdict on ``check`` (e.g. ``OIDCProvider.check_discovery``)."""

    def __init__(
        self,
        check: t.Callable[[], object] | None,
        *,
        interval: float = CHECK_INTERVAL_SECONDS,
        first_wait: float = FIRST_VERDICT_WAIT_SECONDS,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self._interval = interval
        self._first_wait = first_wait
        self._clock = clock
        self._lock = threading.Lock()
        self._first = threading.Event()
        self._verdict: Verdict | None = None
        self._checked_at: float | None = None
        self._running = False

    @property
    def enabled(self) -> bool:
        return self._check is not None

    def start(self) -> None:
        """Begin the first check in the background (at start-up)."""
        self._refresh_if_due()

    def verdict(self) -> Verdict:
        """The last verdict; starts a re-check in the background when it is due."""
        if self._check is None:
            return Verdict(True)
        self._refresh_if_due()
        if self._verdict is None:
            self._first.wait(self._first_wait)
        return self._verdict or Verdict(False, "pending")

    def _refresh_if_due(self) -> None:
        if self._check is None:
            return
        with self._lock:
            now = self._clock()
            due = self._checked_at is None or now - self._checked_at >= self._interval
            if not due or self._running:
                return
            self._running = True
            self._checked_at = now
        # Under gevent's patched threading this is a greenlet.
        worker = threading.Thread(target=self._run, name="upstream-readiness")
        worker.daemon = True
        worker.start()

    def _run(self) -> None:
        check = t.cast(t.Callable[[], object], self._check)
        try:
            check()
        except UpstreamError as exc:
            verdict = Verdict(False, reason_of(exc))
            log.warning("not ready: %s", exc.cause)
        except Exception:  # a bug in a check must not kill readiness for good
            verdict = Verdict(False, "discovery_invalid")
            log.exception("upstream readiness check failed")
        else:
            if self._verdict is not None and not self._verdict.ready:
                log.info("ready again: the identity provider's discovery is good")
            verdict = Verdict(True)
        with self._lock:
            self._verdict = verdict
            self._checked_at = self._clock()
            self._running = False
        self._first.set()
