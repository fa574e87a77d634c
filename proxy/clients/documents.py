"""Client documents, fetched once and cached in Redis for every worker (CIMD §4.4).

:class:`DocumentCache` is the :class:`DocumentSource` the client rooms use.
A document is fetched SSRF-safe (``fetch.py``), validated, and cached:

- fresh for the lifetime its response states (Cache-Control max-age, or
  Expires), clamped into [CIMD_CACHE_MIN_SECONDS, CIMD_CACHE_MAX_SECONDS];
- a failure (unreachable, not 200, invalid) is remembered for
  CIMD_NEGATIVE_CACHE_SECONDS and never stored as a document (CIMD-9), so a
  fixed document is used as soon as that passes;
- while refreshes fail, the last good copy keeps serving for at most
  CIMD_STALE_IF_ERROR_SECONDS past its freshness (RFC 5861 stale-if-error);
- one worker fetches a document at a time; the others wait briefly for its
  result instead of fetching too (RATE-4: no amplification);
- every network fetch is charged first to the client IP that caused it
  (CIMD_FETCHES_PER_IP) and then to the document's host
  (CIMD_FETCHES_PER_HOST), so nobody can make the proxy hammer one host with
  many distinct URLs. Cached copies are served without a charge, and a
  refused fetch falls back on them (RATE-4: the requester pays first).

Freshness is decided by timestamps inside the record, read with an
injectable clock; the Redis TTLs only clean up.
"""

from __future__ import annotations

import json
import logging
import re
import time
import typing as t
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from proxy.clients.document_source import DocumentError
from proxy.clients.document_source import DocumentKind
from proxy.clients.fetch import DocumentFetcher
from proxy.keys.keyring import random_token
from proxy.oauth.client_id_metadata import InvalidDocumentError
from proxy.oauth.client_id_metadata import validate_document
from proxy.observability import metrics
from proxy.store.documents import document_id

if t.TYPE_CHECKING:
    from proxy.clients.fetch import Fetched
    from proxy.config.client_documents import ClientDocuments
    from proxy.config.limits import Rate
    from proxy.observability.events import Events
    from proxy.store.documents import DocumentRecords
    from proxy.store.limits import Limiter

log = logging.getLogger(__name__)

RECORD_VERSION = 1
#: How often a worker waiting for another's fetch looks for its result.
WAIT_POLL_SECONDS = 0.05
#: The lock outlives the fetch deadline by this much (a killed holder's lock
#: lapses by itself).
LOCK_SLACK_SECONDS = 2.0

Fallback = t.Callable[[str], "dict[str, t.Any] | None"]
#: The rate-limit subject of the client IP behind the current request, if any.
Requester = t.Callable[[], "str | None"]


class FetchRefusedError(DocumentError):
    """A network fetch refused by the fetch rates (RATE-4), for `retry_after` s."""

    def __init__(self, reason: str, *, retry_after: int, host_wide: bool) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        #: The host's budget, not one requester's: nobody may fetch it now.
        self.host_wide = host_wide


_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_NO_STORE = re.compile(r"(?:^|,)\s*(no-store|no-cache)\s*(?:=|,|$)", re.IGNORECASE)


def freshness_lifetime(
    headers: t.Mapping[str, str], *, now: float, minimum: int, maximum: int
) -> int:
    """Seconds a response stays fresh (RFC 9111 §4.2.1), clamped to [min, max].

    `no-store`/`no-cache` and a past `Expires` mean 0 before clamping; with no
    caching header at all the minimum applies.
    """
    cache_control = headers.get("cache-control", "")
    lifetime: float | None = None
    if _NO_STORE.search(cache_control):
        lifetime = 0
    elif (match := _MAX_AGE.search(cache_control)) is not None:
        # RFC 9111 §4.2.3: the Age a shared cache already spent counts.
        age = headers.get("age", "0").strip()
        lifetime = int(match.group(1)) - (int(age) if age.isdigit() else 0)
    elif "expires" in headers:
        expires = _http_date(headers["expires"])
        date = _http_date(headers.get("date", "")) or now
        # RFC 9111 §5.3: an invalid Expires (e.g. "0") means already expired.
        lifetime = expires - date if expires is not None else 0
    if lifetime is None:
        return minimum
    return int(min(max(lifetime, minimum), maximum))


def _http_date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


@dataclass(frozen=True, slots=True)
class CachedDocument:
    """A validated document and the times that govern its use."""

    body: dict[str, t.Any]
    fetched_at: float
    fresh_until: float
    stale_until: float

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": RECORD_VERSION,
                "body": self.body,
                "fetched_at": self.fetched_at,
                "fresh_until": self.fresh_until,
                "stale_until": self.stale_until,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | None) -> CachedDocument | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(
                body=dict(data["body"]),
                fetched_at=float(data["fetched_at"]),
                fresh_until=float(data["fresh_until"]),
                stale_until=float(data["stale_until"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


def _failure_of(text: str | None, now: float) -> str | None:
    """The remembered failure's reason, while it is in force."""
    if not text:
        return None
    try:
        data = json.loads(text)
        if float(data["until"]) > now:
            return str(data["reason"])
    except (ValueError, KeyError, TypeError):
        return None
    return None


class DocumentCache:
    """DocumentSource over Redis: validated copies, shared by every worker."""

    def __init__(
        self,
        records: DocumentRecords,
        settings: ClientDocuments,
        *,
        private_schemes: frozenset[str] = frozenset(),
        fetcher: DocumentFetcher | None = None,
        fallback: Fallback | None = None,
        limiter: Limiter | None = None,
        requester: Requester | None = None,
        clock: t.Callable[[], float] = time.time,
        events: Events | None = None,
    ) -> None:
        self._events = events
        self._records = records
        self._settings = settings
        self._private_schemes = private_schemes
        self._fetcher = fetcher or DocumentFetcher(settings)
        self._fallback = fallback
        #: None: fetches are not rate-limited (unit tests of the cache alone).
        self._limiter = limiter
        self._requester = requester
        self._clock = clock

    def fetch_json(
        self, url: str, *, kind: DocumentKind, force: bool = False
    ) -> dict[str, t.Any]:
        doc_id = document_id(kind, url)
        raw, raw_failure = self._records.read(doc_id)
        now = self._clock()
        cached = CachedDocument.from_json(raw)
        if cached is not None and now < cached.fresh_until:
            # A forced re-fetch (an unknown kid) at most once per interval.
            if not force or not self._records.allow_forced(
                doc_id, self._settings.jwks_refetch_min_seconds
            ):
                metrics.DOCUMENT_CACHE.labels(kind=kind, result="hit").inc()
                return cached.body
        else:
            failure = _failure_of(raw_failure, now)
            if failure is not None:
                # CIMD-9: a recent failure is not retried on every request.
                metrics.DOCUMENT_CACHE.labels(kind=kind, result="negative").inc()
                return self._stale_or_raise(url, kind, cached, now, failure)
        metrics.DOCUMENT_CACHE.labels(kind=kind, result="miss").inc()
        return self._refresh(url, kind, doc_id, cached)

    def _refresh(
        self, url: str, kind: DocumentKind, doc_id: str, cached: CachedDocument | None
    ) -> dict[str, t.Any]:
        """Fetch as the one worker holding the lock, or wait for the one who does."""
        token = random_token(12)
        lock_ms = int(
            (self._settings.fetch_timeout_seconds + LOCK_SLACK_SECONDS) * 1000
        )
        waited_until = time.monotonic() + lock_ms / 1000
        while True:
            # A waiter whose fetcher gave up without a result (a fetch refused
            # for that requester alone) takes the lock and fetches itself.
            if self._records.lock(doc_id, token, lock_ms):
                try:
                    # The previous holder may have stored it since we looked.
                    latest = CachedDocument.from_json(self._records.read(doc_id)[0])
                    if latest is not None and (
                        cached is None or latest.fetched_at > cached.fetched_at
                    ):
                        return latest.body
                    return self._fetch_and_store(url, kind, doc_id, cached)
                finally:
                    self._records.unlock(doc_id, token)
            if time.monotonic() >= waited_until:
                return self._stale_or_raise(
                    url,
                    kind,
                    cached,
                    self._clock(),
                    f"{url} is being fetched: try again",
                )
            # RATE-4: another worker is fetching this document; use its result.
            time.sleep(WAIT_POLL_SECONDS)
            raw, raw_failure = self._records.read(doc_id)
            now = self._clock()
            fetched = CachedDocument.from_json(raw)
            if fetched is not None and (
                cached is None or fetched.fetched_at > cached.fetched_at
            ):
                return fetched.body
            failure = _failure_of(raw_failure, now)
            if failure is not None:
                return self._stale_or_raise(url, kind, cached, now, failure)

    def _fetch_and_store(
        self, url: str, kind: DocumentKind, doc_id: str, cached: CachedDocument | None
    ) -> dict[str, t.Any]:
        try:
            self._charge_fetch(url)
            fetched = self._fetcher.fetch(url)
            body = self._validate(url, kind, fetched.body)
        except FetchRefusedError as exc:
            now = self._clock()
            log.warning("document %s not fetched: %s", url[:200], exc.reason)
            if exc.host_wide:
                # Every worker would be refused as long: say so to them all
                # (the document itself is not known to be bad, so no longer).
                failure = {"reason": exc.reason, "until": now + exc.retry_after}
                self._records.write_failure(
                    doc_id, json.dumps(failure), exc.retry_after
                )
            return self._stale_or_raise(url, kind, cached, now, exc.reason)
        except DocumentError as exc:
            now = self._clock()
            log.warning("document %s unusable: %s", url[:200], exc.reason)
            if self._events is not None:
                self._events.emit(
                    "document.refused",
                    outcome="error",
                    client_id=url if kind == "client_metadata" else None,
                    url=url[:200],
                    kind=kind,
                    reason=exc.reason,
                )
            metrics.DOCUMENT_FETCHES.labels(kind=kind, outcome="refused").inc()
            negative = self._settings.negative_cache_seconds
            if negative > 0:
                failure = {"reason": exc.reason, "until": now + negative}
                self._records.write_failure(doc_id, json.dumps(failure), negative)
            return self._stale_or_raise(url, kind, cached, now, exc.reason)
        now = self._clock()
        metrics.DOCUMENT_FETCHES.labels(kind=kind, outcome="ok").inc()
        self._store(doc_id, body, fetched, now)
        if self._events is not None:
            self._events.emit(
                "document.fetched",
                client_id=url if kind == "client_metadata" else None,
                url=url[:200],
                kind=kind,
            )
        return body

    def _charge_fetch(self, url: str) -> None:
        """RATE-4: charge this network fetch to its requester, then to its host.

        Both buckets go out in one round trip; when either refuses, the other
        gets its charge back, so a refused fetch costs no budget.
        """
        if self._limiter is None:
            return
        settings = self._settings
        host = (urlsplit(url).hostname or "").lower()
        requester = self._requester() if self._requester is not None else None
        buckets: list[tuple[str, Rate]] = []
        if requester is not None and settings.fetches_per_ip is not None:
            bucket = self._limiter.ip_bucket("cimd-fetch", requester)
            buckets.append((bucket, settings.fetches_per_ip))
        if settings.fetches_per_host is not None:
            bucket = self._limiter.fetch_host_bucket(host)
            buckets.append((bucket, settings.fetches_per_host))
        if not buckets:
            return
        waits = self._limiter.waits(buckets)
        if not any(waits):
            return
        self._limiter.refund([b for b, w in zip(buckets, waits, strict=True) if not w])
        seconds = max(1, -(-max(waits) // 1000))
        host_wide = waits[-1] > 0 and settings.fetches_per_host is not None
        if host_wide:
            reason = f"too many document fetches for {host}, try again in {seconds} s"
        else:
            reason = (
                f"too many document fetches from your address, try again in {seconds} s"
            )
        raise FetchRefusedError(reason, retry_after=seconds, host_wide=host_wide)

    def _store(
        self, doc_id: str, body: dict[str, t.Any], fetched: Fetched, now: float
    ) -> None:
        settings = self._settings
        lifetime = freshness_lifetime(
            fetched.headers,
            now=now,
            minimum=settings.cache_min_seconds,
            maximum=settings.cache_max_seconds,
        )
        ttl = lifetime + settings.stale_if_error_seconds
        record = CachedDocument(
            body=body,
            fetched_at=now,
            fresh_until=now + lifetime,
            stale_until=now + ttl,
        )
        if ttl > 0:
            self._records.write(doc_id, record.to_json(), ttl)

    def _validate(
        self, url: str, kind: DocumentKind, body: dict[str, t.Any]
    ) -> dict[str, t.Any]:
        """What is cached is what passed the rules: never an invalid document."""
        if kind == "jwks":
            keys = body.get("keys")
            # RFC 7517 §5: a JWK Set is an object with a "keys" array of objects.
            if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
                raise DocumentError(f"{url} is not a JWK Set")
            return body
        try:
            return validate_document(url, body, private_schemes=self._private_schemes)
        except InvalidDocumentError as exc:
            raise DocumentError(exc.reason) from None

    def _stale_or_raise(
        self,
        url: str,
        kind: DocumentKind,
        cached: CachedDocument | None,
        now: float,
        reason: str,
    ) -> dict[str, t.Any]:
        """The last good copy within stale-if-error, a pinned copy, or the error."""
        if cached is not None and now < cached.stale_until:
            log.info("serving a stale copy of %s: %s", url[:200], reason)
            return cached.body
        if self._fallback is not None and kind == "client_metadata":
            pinned = self._fallback(url)
            if pinned is not None:
                log.warning("using the pinned copy of %s: %s", url[:200], reason)
                return self._validate(url, kind, pinned)
        raise DocumentError(reason)
