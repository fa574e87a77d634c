"""Signing key rotation as a schedule: which key is published and which signs, at `now`.

Decision J30 in docs/decisions.md.

Pure functions on :class:`~proxy.keys.key_document.KeyEntry` values; no I/O,
no clock (``now`` is always passed in). Every worker reads the same record and
the same wall clock, so every worker derives the same state, and a rotation is
one write of data, not a restart:

1. ``keys rotate`` adds the next key, published at once (``publish_at`` = now)
   but signing only from ``sign_from`` = now + the overlap, by which time every
   worker and every resource server caching our JWKS has seen it.
2. At ``sign_from`` the newest key signs; the one before it stops signing then.
3. It stays published until ``retire_at`` = ``sign_from`` + the longest
   access-token lifetime + the clock-skew leeway: the last token it signed
   has expired by then. After that, it is gone from the JWKS.
"""

from __future__ import annotations

import datetime
import typing as t

from proxy.oauth.access_tokens import CLOCK_SKEW_SECONDS

if t.TYPE_CHECKING:
    from proxy.keys.key_document import KeyEntry


def iso(at: int) -> str:
    """An epoch second as operators read it: ``2026-12-06T06:00:00Z``."""
    moment = datetime.datetime.fromtimestamp(at, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class ScheduleError(ValueError):
    """A change the schedule refuses; the message says why and what to do."""


def is_published(entry: KeyEntry, now: int) -> bool:
    """In the JWKS, and trusted to verify, at ``now``."""
    retire_at = entry.retire_at
    return entry.publish_at <= now and (retire_at is None or now < retire_at)


def signer(entries: t.Sequence[KeyEntry], now: int) -> KeyEntry | None:
    """The key that signs at ``now``: the published one with the latest
    ``sign_from`` not in the future (on a tie, the first stored)."""
    best: KeyEntry | None = None
    for entry in entries:
        if not is_published(entry, now) or entry.sign_from > now:
            continue
        if best is None or entry.sign_from > best.sign_from:
            best = entry
    return best


def published(entries: t.Sequence[KeyEntry], now: int) -> tuple[KeyEntry, ...]:
    """The keys in the JWKS at ``now``, in stored order."""
    return tuple(entry for entry in entries if is_published(entry, now))


def pending(entries: t.Sequence[KeyEntry], now: int) -> KeyEntry | None:
    """A published key that does not sign yet: a rotation in progress."""
    return next(
        (e for e in entries if is_published(e, now) and e.sign_from > now), None
    )


def state(entry: KeyEntry, entries: t.Sequence[KeyEntry], now: int) -> str:
    """``signing``, ``next`` (published, signs later), ``verifying`` (published,
    signs no more), ``scheduled`` (not yet published) or ``retired``."""
    if entry.retire_at is not None and now >= entry.retire_at:
        return "retired"
    if entry.publish_at > now:
        return "scheduled"
    current = signer(entries, now)
    if current is not None and current.kid == entry.kid:
        return "signing"
    return "next" if entry.sign_from > now else "verifying"


def plan_rotation(
    entries: t.Sequence[KeyEntry],
    successor: KeyEntry,
    *,
    now: int,
    max_token_lifetime: int,
) -> tuple[KeyEntry, ...]:
    """The entries after adding ``successor`` (its ``sign_from`` already set).

    Every key that signs until then retires once the last token it may sign
    has expired: ``successor.sign_from`` + ``max_token_lifetime`` + skew.
    Retired keys are dropped. Refused while another rotation is in progress,
    and on a store that has no key yet.
    """
    current = signer(entries, now)
    if current is None:
        raise ScheduleError(
            "no key signs yet: the proxy creates the first one when it first "
            "signs a token; rotate after that"
        )
    upcoming = pending(entries, now)
    if upcoming is not None:
        raise ScheduleError(
            f"a rotation is in progress: key {upcoming.kid} signs from "
            f"{iso(upcoming.sign_from)}; rotate again after that, or retire it "
            "first to cancel"
        )
    if successor.sign_from < now or successor.publish_at > now:
        raise ScheduleError("the next key must be published now and sign later")
    retire_at = successor.sign_from + max_token_lifetime + CLOCK_SKEW_SECONDS
    kept = [
        entry if entry.retire_at is not None else entry.retired(retire_at)
        for entry in entries
        if entry.retire_at is None or entry.retire_at > now
    ]
    return (successor, *kept)


def plan_retirement(
    entries: t.Sequence[KeyEntry], kid: str, *, now: int
) -> tuple[KeyEntry, ...]:
    """The entries with ``kid`` retired now: out of the JWKS at once, so
    tokens it signed stop verifying (a compromised key, or a cancelled
    rotation). The key that signs now cannot be retired: rotate first.

    Retiring the next key cancels its rotation: the key that signs keeps
    signing, with its own retirement called off.
    """
    target = next((entry for entry in entries if entry.kid == kid), None)
    if target is None or (target.retire_at is not None and target.retire_at <= now):
        known = ", ".join(e.kid for e in published(entries, now)) or "none"
        raise ScheduleError(f"no published key has kid {kid!r} (published: {known})")
    current = signer(entries, now)
    if current is not None and current.kid == kid:
        raise ScheduleError(
            f"key {kid} signs now; rotate first (keys rotate, or keys rotate "
            "--overlap 0 in an emergency), then retire it"
        )
    kept = [
        entry
        for entry in entries
        if entry.kid != kid and (entry.retire_at is None or entry.retire_at > now)
    ]
    if pending(kept, now) is None and current is not None:
        # Nothing will take over from the current key: it must not retire.
        kept = [
            entry.retired(None) if entry.kid == current.kid else entry for entry in kept
        ]
    return tuple(kept)
