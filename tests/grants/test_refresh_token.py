"""proxy/grants/refresh_token.py: the reuse rule and its grace-window exception."""

from __future__ import annotations

import dataclasses

from proxy.grants.refresh_token import detect_reuse
from proxy.grants.refresh_token import in_grace_window
from proxy.store.records import Grant

NOW = 1_800_000_000
CURRENT, PREVIOUS, OLDER, FOREIGN = "c" * 64, "p" * 64, "o" * 64, "f" * 64

GRANT = Grant(
    grant_id="g" * 22,
    client_id="mcp_abc",
    sub="alice",
    claims={},
    scope="mcp",
    resource="https://mcp.example.com/mcp",
    redirect_uri="http://127.0.0.1/cb",
    code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    code_hash="h" * 64,
    code_exp=NOW,
    created_at=NOW - 100,
    expires_at=NOW + 86400,
    upstream="sealed",
    gen=3,
    rt_hash=CURRENT,
    rt_prev_hash=PREVIOUS,
    rotated_at=NOW - 10,
    pending="sealed-pending",
    rt_old=(OLDER[:12],),
)


def test_rt2_the_previous_and_older_tokens_are_reuse() -> None:
    """RT-2: a token already rotated away is reuse, whatever its generation."""
    assert detect_reuse(GRANT, PREVIOUS)
    assert detect_reuse(GRANT, OLDER)


def test_the_current_and_foreign_tokens_are_not_reuse() -> None:
    assert not detect_reuse(GRANT, CURRENT)
    assert not detect_reuse(GRANT, FOREIGN)


def test_a_grant_never_rotated_has_no_reuse() -> None:
    fresh = dataclasses.replace(GRANT, gen=1, rt_prev_hash=None, rt_old=())
    assert not detect_reuse(fresh, PREVIOUS)


def test_rt3_only_the_previous_token_inside_the_window_is_in_grace() -> None:
    """RT-3: the previous token is answered less than the window after rotation."""
    assert in_grace_window(GRANT, PREVIOUS, NOW, 30)
    assert not in_grace_window(GRANT, PREVIOUS, NOW, 10)
    assert not in_grace_window(GRANT, PREVIOUS, NOW, 0)
    assert not in_grace_window(GRANT, OLDER, NOW, 30)
    assert not in_grace_window(GRANT, CURRENT, NOW, 30)


def test_no_grace_without_the_sealed_pending_token() -> None:
    assert not in_grace_window(
        dataclasses.replace(GRANT, pending=None), PREVIOUS, NOW, 30
    )
