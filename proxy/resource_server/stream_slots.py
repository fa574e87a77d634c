"""Caps on the gateway's open streams: per grant (in Redis) and per worker process.

A relayed stream (SSE: the GET stream, or a POST answered as
`text/event-stream`) holds a greenlet, the client's socket and one to the
backend for as long as it lasts. One grant may hold MAX_STREAMS_PER_GRANT of
them across every worker and instance, and one worker process MAX_STREAMS;
past either, the request is refused with 429 `temporarily_unavailable` and
Retry-After, before it reaches the backend.

A slot is taken by a :class:`SlotRequest` riding in the gateway's grant check
(no round trip of its own) and given back by :meth:`Slot.release`, which the
gateway calls whenever the stream ends (backend end, client gone, error, read
or idle timeout). The worker's count is given back at once; the Redis lease
is ended by a background sender, or by the grant's next slot request in this
worker if that comes first (in its pipeline, before its own acquire), so that
no response waits on that round trip (a tool call answered as a one-event
stream used to finish only after it) and a busy worker ends many leases in
one pipeline. A request the grant's cap refuses tries once more after
SIBLING_RELEASE_SECONDS, since the lease in its way may be one another
worker has released and not yet ended. A worker that dies without
releasing keeps nothing forever: the per-worker count dies with it, and the
per-grant slot is a Redis lease (proxy/store/streams.py) that this module
renews while the stream is open and that otherwise ends by itself.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import typing as t
import uuid
import weakref

import redis.exceptions

from proxy.oauth.errors import TemporarilyUnavailableError
from proxy.oauth.errors import TooManyRequestsError
from proxy.store.scripts import ACQUIRE_STREAM

if t.TYPE_CHECKING:
    from proxy.config.limits import Limits
    from proxy.store.streams import StreamLeases

log = logging.getLogger(__name__)

#: Seconds a refused client is told to wait: streams end when their clients
#: leave or their backend answers, so a slot may free up at any moment.
RETRY_AFTER_SECONDS = 5
#: How long a request refused by the grant's cap waits before its one more
#: try: a sibling worker sends a release as soon as its request waits on a
#: socket (well under this), so a slot freed a moment ago is found.
SIBLING_RELEASE_SECONDS = 0.05


class Slot:
    """One open stream's place in the caps; :meth:`release` is idempotent."""

    __slots__ = ("_owner", "grant_id", "lease_id", "leased")

    def __init__(
        self, owner: StreamSlots, grant_id: str, lease_id: str, leased: bool
    ) -> None:
        self._owner = owner
        self.grant_id = grant_id
        self.lease_id = lease_id
        self.leased = leased

    def release(self) -> None:
        self._owner.release(self)


class StreamSlots:
    """This worker's open streams, their per-grant leases, and the renewer."""

    def __init__(self, leases: StreamLeases, limits: Limits) -> None:
        self._leases = leases
        self._per_grant = limits.max_streams_per_grant
        self._per_worker = limits.max_streams
        self._lease_ms = limits.stream_lease_seconds * 1000
        self._open: dict[str, Slot] = {}
        self._lock = threading.Lock()
        self._renewer_pid = 0
        #: Leases released here and not yet ended in Redis (the sender's queue).
        self._releasing: list[tuple[str, str]] = []
        self._releaser_pid = 0
        self._wake = threading.Event()
        #: False: nothing sends queued releases but the grant's next acquire
        #: and :meth:`send_releases` (tests that count round trips).
        self.background_releases = True
        # A worker that exits (graceful restart) ends what it still queues,
        # rather than leaving the slots counted until their leases run out.
        atexit.register(_send_on_exit, weakref.ref(self))

    @property
    def open_count(self) -> int:
        """Streams open in this process."""
        return len(self._open)

    def request(self) -> SlotRequest:
        """A slot for one more stream, taken in the grant check's pipeline.

        Pass it to ``verify_request(riders=...)``, then call
        :meth:`SlotRequest.slot`, or :meth:`SlotRequest.abandon` if the
        request is refused first.
        """
        return SlotRequest(self)

    def _reserve(self, grant_id: str) -> Slot | None:
        """This worker's place for one more stream, or None when it is full."""
        with self._lock:
            if self._per_worker and len(self._open) >= self._per_worker:
                log.warning("stream refused: %d open in this worker", len(self._open))
                return None
            slot = Slot(self, grant_id, uuid.uuid4().hex, leased=bool(self._per_grant))
            # Counted before the round trip, so concurrent requests see it.
            self._open[slot.lease_id] = slot
            return slot

    def release(self, slot: Slot) -> None:
        if not self._forget(slot) or not slot.leased:
            return
        with self._lock:
            self._releasing.append((slot.grant_id, slot.lease_id))
            if not self.background_releases:
                return
            start = self._releaser_pid != os.getpid()
            self._releaser_pid = os.getpid()
        if start:  # first use, or a forked worker: a thread does not survive fork
            threading.Thread(
                target=_send_releases,
                args=(weakref.ref(self), self._wake),
                name="stream-releases",
                daemon=True,
            ).start()
        self._wake.set()

    def _take_releases(self, grant_id: str) -> list[str]:
        """The queued releases of `grant_id`, taken off the sender's queue."""
        with self._lock:
            if not self._releasing:
                return []
            taken = [lease for grant, lease in self._releasing if grant == grant_id]
            if taken:
                self._releasing = [r for r in self._releasing if r[0] != grant_id]
            return taken

    def send_releases(self) -> int:
        """End the leases released since the last call, in one round trip;
        how many. The background sender calls it; so can tests and shutdown."""
        with self._lock:
            batch, self._releasing = self._releasing, []
        if not batch:
            return 0
        try:
            self._leases.release(batch)
        except redis.exceptions.RedisError as exc:
            # No longer renewed: each lease ends by itself within its length.
            log.warning(
                "%d stream slots not released: %s", len(batch), type(exc).__name__
            )
        return len(batch)

    def _forget(self, slot: Slot) -> bool:
        with self._lock:
            return self._open.pop(slot.lease_id, None) is not None

    def renew(self) -> None:
        """Extend the leases of this worker's open streams (one round trip)."""
        with self._lock:
            held = [(s.grant_id, s.lease_id) for s in self._open.values() if s.leased]
        self._leases.renew(held, ms=self._lease_ms)

    def _ensure_renewer(self) -> None:
        # Per process: a thread does not survive fork (a greenlet under gevent).
        with self._lock:
            if self._renewer_pid == os.getpid():
                return
            self._renewer_pid = os.getpid()
        interval = self._lease_ms / 3000
        threading.Thread(
            target=_renew_while_open,
            args=(weakref.ref(self), interval),
            name="stream-leases",
            daemon=True,
        ).start()

    def _renewer_done(self) -> bool:
        """True (and the renewer forgotten) once no leased stream is open."""
        with self._lock:
            if any(slot.leased for slot in self._open.values()):
                return False
            self._renewer_pid = 0
            return True


class SlotRequest:
    """One request's claim on a stream slot, riding in the grant check.

    The worker's count is reserved when the pipeline is queued; the grant's
    lease (``ACQUIRE_STREAM``) goes in the same round trip as the grant's
    existence and rate, so a stream costs no round trip to start. The verdict
    waits for the grant check: a revoked token is 401 even on a full worker.
    """

    scripts = (ACQUIRE_STREAM,)

    def __init__(self, owner: StreamSlots) -> None:
        self._owner = owner
        self._slot: Slot | None = None
        self._full = False
        self._taken = False
        self._settled = False
        self._ending: list[str] | None = None

    def queue(self, pipe: t.Any, grant_id: str) -> bool:
        # Runs again if Redis lost the script: reserve once, queue each time.
        if self._slot is None and not self._full:
            self._slot = self._owner._reserve(grant_id)
            self._full = self._slot is None
        if self._slot is None or not self._slot.leased:
            return False
        owner = self._owner
        # This worker's releases for the grant not sent yet end first, in the
        # same script: a client's next call never counts its last one. Kept
        # for a second run (a script Redis lost ran nothing the first time).
        if self._ending is None:
            self._ending = owner._take_releases(grant_id)
        owner._leases.queue_acquire(
            pipe,
            grant_id,
            self._slot.lease_id,
            slots=owner._per_grant,
            ms=owner._lease_ms,
            ending=self._ending,
        )
        return True

    def receive(self, reply: t.Any) -> None:
        self._taken = bool(reply)

    def slot(self) -> Slot:
        """The slot, or 503 (this worker is full) or 429 (the grant's cap)."""
        self._settled = True
        if self._slot is None:
            raise TemporarilyUnavailableError(
                "The gateway holds all the streams it can: retry later.",
                reason="max_streams",
            )
        slot = self._slot
        if slot.leased and not self._taken:
            grant_id = slot.grant_id
            self._slot = self._second_try(slot)
            if self._slot is None:
                log.info(
                    "stream refused: grant %s holds %d",
                    grant_id[:8],
                    self._owner._per_grant,
                )
                raise TooManyRequestsError(
                    RETRY_AFTER_SECONDS, reason="max_streams_per_grant"
                )
            slot = self._slot
        if slot.leased:
            self._owner._ensure_renewer()
        return slot

    def _second_try(self, refused: Slot) -> Slot | None:
        """The grant's slots are full, but one may be free already: a client
        that was answered on another worker sends its next call at once,
        often before that worker's sender has ended the answer's lease. One
        more try, after that sender's usual delay, tells the two apart; a
        grant really at its cap pays the pause and one round trip. The
        worker's place is given back while it waits (a flood of refused
        requests must not fill the worker for other grants)."""
        owner = self._owner
        owner._forget(refused)
        time.sleep(SIBLING_RELEASE_SECONDS)
        slot = owner._reserve(refused.grant_id)
        if slot is None:  # the worker filled up meanwhile: its refusal, not the grant's
            raise TemporarilyUnavailableError(
                "The gateway holds all the streams it can: retry later.",
                reason="max_streams",
            )
        try:
            self._taken = owner._leases.acquire(
                slot.grant_id, slot.lease_id, slots=owner._per_grant, ms=owner._lease_ms
            )
        except BaseException:
            owner._forget(slot)  # settled: nobody else gives the place back
            raise
        if not self._taken:
            owner._forget(slot)
            return None
        return slot

    def abandon(self) -> None:
        """The request was refused before its stream: give back what it took."""
        if self._settled or self._slot is None:
            return
        self._settled = True
        if self._taken:
            self._slot.release()
        else:
            self._owner._forget(self._slot)


def _send_releases(ref: weakref.ref[StreamSlots], wake: threading.Event) -> None:
    """Send released leases as they come; under gevent this greenlet runs as
    soon as the request that released them waits on its socket. Not later:
    another worker counts a released lease until it is sent, and a grant
    near its cap (a `subscriptions/listen` stream plus a tool call) was
    refused for it (tried: a 50 ms delay that batched more). The reference
    is weak so that an app dropped (tests) takes its sender along."""
    while True:
        wake.wait(timeout=5.0)
        wake.clear()
        slots = ref()
        if slots is None:
            return
        try:
            slots.send_releases()
        except Exception:  # the sender must outlive any one failure
            log.exception("stream slot release failed")
        del slots


def _send_on_exit(ref: weakref.ref[StreamSlots]) -> None:
    slots = ref()
    if slots is not None:
        try:
            slots.send_releases()
        except Exception:  # noqa: BLE001 - exiting: the leases end by themselves
            return


def _renew_while_open(ref: weakref.ref[StreamSlots], interval: float) -> None:
    """Renew every ``interval`` seconds while leased streams are open; the
    reference is weak so that an app dropped (tests) takes its renewer along."""
    while True:
        time.sleep(interval)
        slots = ref()
        if slots is None or slots._renewer_done():
            return
        try:
            slots.renew()
        except Exception as exc:  # noqa: BLE001 - keep renewing; leases outlast a miss
            log.warning("stream leases not renewed: %s", exc.__class__.__name__)
        del slots
