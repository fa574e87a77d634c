"""proxy/resource_server/session_binding.py: when sessions are bound and forgotten."""

from __future__ import annotations

import typing as t

import pytest

from proxy.oauth.access_tokens import AccessClaims
from proxy.oauth.errors import BadGatewayError
from proxy.resource_server.jsonrpc_errors import SessionNotFoundError
from proxy.resource_server.session_binding import SessionLookup
from proxy.resource_server.session_binding import after_response
from proxy.resource_server.session_binding import owner_of


class Owners:
    """SessionOwners in memory: what the gateway asked of the store."""

    def __init__(self, held: dict[str, str] | None = None) -> None:
        self.held = dict(held or {})
        self.calls: list[tuple[str, str]] = []

    def bind(self, session_id: str, owner: str, *, ttl_seconds: int) -> bool:
        self.calls.append(("bind", session_id))
        return self.held.setdefault(session_id, owner) == owner

    def unbind(self, session_id: str, owner: str) -> None:
        self.calls.append(("unbind", session_id))
        if self.held.get(session_id) == owner:
            del self.held[session_id]


def _claims(client_id: str, sub: str, grant_id: str = "g1") -> AccessClaims:
    return AccessClaims(
        sub=sub,
        client_id=client_id,
        scope="mcp",
        audience="https://mcp.example.com/mcp",
        grant_id=grant_id,
        expires_at=0,
        issued_at=0,
        jti="j",
        extra={},
    )


def _after(owners: Owners, **kw: t.Any) -> None:
    defaults: dict[str, t.Any] = {
        "method": "POST",
        "presented": None,
        "answered": None,
        "status": 200,
        "owner": "alice",
        "ttl_seconds": 60,
    }
    after_response(t.cast(t.Any, owners), **{**defaults, **kw})


def test_owner_is_client_and_user_not_grant() -> None:
    """J45: a new grant of the same client and user owns the same sessions."""
    assert owner_of(_claims("c", "u", "g1")) == owner_of(_claims("c", "u", "g2"))
    assert owner_of(_claims("c", "u")) != owner_of(_claims("other", "u"))
    assert owner_of(_claims("c", "u")) != owner_of(_claims("c", "v"))
    # No ambiguity from where the pair is split.
    assert owner_of(_claims("ab", "c")) != owner_of(_claims("a", "bc"))


def test_a_session_the_backend_opened_is_bound() -> None:
    owners = Owners()
    _after(owners, answered="s1")
    assert owners.held == {"s1": "alice"}


@pytest.mark.parametrize("status", [400, 404, 500])
def test_an_error_naming_a_session_binds_nothing(status: int) -> None:
    owners = Owners()
    _after(owners, answered="s1", status=status)
    assert owners.calls == []


def test_a_session_id_already_someone_elses_is_502() -> None:
    owners = Owners({"s1": "mallory"})
    with pytest.raises(BadGatewayError):
        _after(owners, answered="s1")
    assert owners.held == {"s1": "mallory"}


@pytest.mark.parametrize(
    ("method", "status", "forgotten"),
    [
        ("DELETE", 200, True),
        ("DELETE", 204, True),
        ("DELETE", 405, False),  # the backend does not let clients end sessions
        ("POST", 404, True),  # the backend no longer knows it
        ("GET", 404, True),
        ("POST", 200, False),
    ],
)
def test_an_ended_session_is_forgotten(
    method: str, status: int, forgotten: bool
) -> None:
    owners = Owners({"s1": "alice"})
    _after(owners, method=method, presented="s1", answered="s1", status=status)
    assert ("s1" not in owners.held) is forgotten


def test_lookup_passes_the_owner_only() -> None:
    lookup = SessionLookup(t.cast(t.Any, None), "s1", 60)
    lookup.receive(b"alice")
    lookup.check("alice")
    with pytest.raises(SessionNotFoundError) as foreign:
        lookup.check("mallory")
    assert foreign.value.reason == "foreign_session"
    assert foreign.value.status_code == 404
    unknown = SessionLookup(t.cast(t.Any, None), "s2", 60)
    unknown.receive(None)
    with pytest.raises(SessionNotFoundError) as caught:
        unknown.check("alice")
    assert caught.value.reason == "unknown_session"
