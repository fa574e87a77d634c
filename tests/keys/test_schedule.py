"""proxy/keys/schedule.py: which key is published and which signs, from data and now."""

from __future__ import annotations

import pytest

from proxy.keys.key_document import KeyEntry
from proxy.keys.schedule import ScheduleError
from proxy.keys.schedule import pending
from proxy.keys.schedule import plan_retirement
from proxy.keys.schedule import plan_rotation
from proxy.keys.schedule import published
from proxy.keys.schedule import signer
from proxy.keys.schedule import state
from proxy.oauth.access_tokens import CLOCK_SKEW_SECONDS

T0 = 1_800_000_000
OVERLAP = 600
LIFETIME = 3600


def _key(
    kid: str, *, publish_at: int = 0, sign_from: int = 0, retire_at: int | None = None
) -> KeyEntry:
    return KeyEntry(kid, "sealed", publish_at, publish_at, sign_from, retire_at)


def _signing(entries: tuple[KeyEntry, ...], now: int) -> str | None:
    key = signer(entries, now)
    return key.kid if key else None


def _kids(entries: tuple[KeyEntry, ...]) -> list[str]:
    return [entry.kid for entry in entries]


def _rotated() -> tuple[KeyEntry, ...]:
    successor = _key("new", publish_at=T0, sign_from=T0 + OVERLAP)
    return plan_rotation([_key("old")], successor, now=T0, max_token_lifetime=LIFETIME)


def test_the_next_key_is_published_before_it_signs() -> None:
    entries = _rotated()
    assert _kids(published(entries, T0)) == ["new", "old"]
    assert _signing(entries, T0) == "old"
    assert _signing(entries, T0 + OVERLAP - 1) == "old"
    assert state(entries[0], entries, T0) == "next"


def test_signing_switches_when_the_overlap_ends() -> None:
    entries = _rotated()
    assert _signing(entries, T0 + OVERLAP) == "new"
    assert state(entries[1], entries, T0 + OVERLAP) == "verifying"
    assert pending(entries, T0 + OVERLAP) is None


def test_the_old_key_retires_after_the_longest_token_lifetime_since_the_switch() -> (
    None
):
    entries = _rotated()
    retire_at = T0 + OVERLAP + LIFETIME + CLOCK_SKEW_SECONDS
    assert entries[1].retire_at == retire_at
    # A token the old key signed just before the switch is still accepted
    # (exp = switch + lifetime, plus the skew leeway verification allows).
    assert _kids(published(entries, retire_at - 1)) == ["new", "old"]
    assert _kids(published(entries, retire_at)) == ["new"]
    assert state(entries[1], entries, retire_at) == "retired"
    assert entries[0].retire_at is None


def test_a_second_rotation_during_the_overlap_is_refused() -> None:
    entries = _rotated()
    another = _key("newer", publish_at=T0 + 5, sign_from=T0 + 5 + OVERLAP)
    with pytest.raises(ScheduleError, match="in progress"):
        plan_rotation(entries, another, now=T0 + 5, max_token_lifetime=LIFETIME)


def test_a_rotation_drops_keys_already_retired() -> None:
    entries = _rotated()
    later = T0 + OVERLAP + LIFETIME + CLOCK_SKEW_SECONDS
    third = _key("third", publish_at=later, sign_from=later + OVERLAP)
    after = plan_rotation(entries, third, now=later, max_token_lifetime=LIFETIME)
    assert _kids(after) == ["third", "new"]
    assert after[1].retire_at == later + OVERLAP + LIFETIME + CLOCK_SKEW_SECONDS


def test_rotating_an_empty_store_is_refused() -> None:
    successor = _key("new", publish_at=T0, sign_from=T0)
    with pytest.raises(ScheduleError, match="no key signs"):
        plan_rotation([], successor, now=T0, max_token_lifetime=LIFETIME)


def test_the_signing_key_cannot_be_retired() -> None:
    with pytest.raises(ScheduleError, match="signs now"):
        plan_retirement(_rotated(), "old", now=T0)


def test_retiring_an_old_key_removes_it_at_once() -> None:
    entries = _rotated()
    after = plan_retirement(entries, "old", now=T0 + OVERLAP)
    assert _kids(published(after, T0 + OVERLAP)) == ["new"]
    assert _signing(after, T0 + OVERLAP) == "new"


def test_retiring_the_next_key_cancels_the_rotation() -> None:
    after = plan_retirement(_rotated(), "new", now=T0 + 1)
    assert _kids(after) == ["old"]
    # The key that signs keeps signing: its own retirement is called off.
    assert after[0].retire_at is None
    assert _signing(after, T0 + 10 * LIFETIME) == "old"


def test_retiring_an_unknown_kid_is_refused() -> None:
    with pytest.raises(ScheduleError, match="no published key"):
        plan_retirement(_rotated(), "nope", now=T0)


def test_a_version_1_record_signs_with_its_key_forever() -> None:
    """A record written before rotation existed: no schedule fields (all 0/None)."""
    entries = (KeyEntry("v1", "sealed", 0, 0, 0, None),)
    assert _signing(entries, T0) == "v1"
    assert _kids(published(entries, T0)) == ["v1"]
