"""Stored records and their wire form. Every JSON record carries ``v``."""

from __future__ import annotations

import json
import typing as t
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field

RECORD_VERSION = 1


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A registered client: RFC 7591 metadata plus the SHA-256 of its secret."""

    client_id: str
    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: str
    grant_types: tuple[str, ...]
    client_id_issued_at: int
    client_secret_hash: str | None = None
    metadata: dict[str, t.Any] = field(default_factory=dict)

    @property
    def client_name(self) -> str:
        return str(self.metadata.get("client_name") or self.client_id)

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"  # noqa: S105

    def to_json(self) -> str:
        data = asdict(self)
        data["v"] = RECORD_VERSION
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ClientRecord:
        data = json.loads(text)
        data.pop("v", None)
        data["redirect_uris"] = tuple(data["redirect_uris"])
        data["grant_types"] = tuple(data["grant_types"])
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Transaction:
    """An approved authorization request waiting for the upstream callback."""

    client_id: str
    redirect_uri: str
    state: str | None
    code_challenge: str
    scope: str
    resource: str
    upstream_verifier: str
    nonce: str
    browser_hash: str
    created_at: int
    #: The flow trace this attempt writes to (not the upstream state).
    trace_id: str = ""

    def to_json(self) -> str:
        data = asdict(self)
        data["v"] = RECORD_VERSION
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Transaction:
        data = json.loads(text)
        data.pop("v", None)
        # Written by earlier versions; it never decided anything.
        data.pop("redirect_uri_given", None)
        return cls(**data)


def claims_json(claims: dict[str, t.Any]) -> str:
    """A grant's identity claims as stored: a JSON string inside the record.

    Opaque to Lua: cjson would turn ``[]`` (an emptied ``groups``) into ``{}``
    and round big integers, so the scripts only ever swap the whole string.
    """
    return json.dumps(claims, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Grant:
    """One authorization, from one-time code to last refresh: a JSON string.

    Written whole at the callback; afterwards changed only by the Lua scripts,
    which decode, update and re-encode it atomically (``scripts.py``).
    """

    grant_id: str
    client_id: str
    sub: str
    claims: dict[str, t.Any]
    scope: str
    resource: str
    redirect_uri: str
    code_challenge: str
    code_hash: str
    code_exp: int
    created_at: int
    expires_at: int
    upstream: str
    code_used_at: int | None = None
    gen: int = 0
    rt_hash: str | None = None
    rt_prev_hash: str | None = None
    rotated_at: int | None = None
    pending: str | None = None
    #: 12-hex-digit prefixes of older generations' hashes (reuse detection).
    rt_old: tuple[str, ...] = ()
    lease_until: int = 0
    #: The flow trace of the authorization attempt that created the grant.
    trace_id: str = ""
    #: When the code was redeemed or the refresh token last rotated (set by
    #: REDEEM_CODE and ROTATE_REFRESH); None while the code is unspent.
    last_used_at: int | None = None

    def to_json(self) -> str:
        """The record at creation; the scripts own the refresh fields after."""
        data: dict[str, t.Any] = {
            "v": RECORD_VERSION,
            "client_id": self.client_id,
            "sub": self.sub,
            "claims": claims_json(self.claims),
            "scope": self.scope,
            "resource": self.resource,
            "redirect_uri": self.redirect_uri,
            "code_challenge": self.code_challenge,
            "code_hash": self.code_hash,
            "code_exp": self.code_exp,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "upstream": self.upstream,
        }
        if self.trace_id:
            data["trace"] = self.trace_id
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, grant_id: str, text: str) -> Grant:
        data = json.loads(text)

        def opt_int(name: str) -> int | None:
            value = data.get(name)
            return int(value) if isinstance(value, (int, float)) else None

        def opt_str(name: str) -> str | None:
            value = data.get(name)
            return value if isinstance(value, str) and value else None

        claims = (
            json.loads(data["claims"]) if isinstance(data.get("claims"), str) else {}
        )
        return cls(
            grant_id=grant_id,
            client_id=data["client_id"],
            sub=data["sub"],
            claims=claims if isinstance(claims, dict) else {},
            scope=data["scope"],
            resource=data["resource"],
            redirect_uri=data["redirect_uri"],
            code_challenge=data["code_challenge"],
            code_hash=data["code_hash"],
            code_exp=int(data["code_exp"]),
            created_at=int(data["created_at"]),
            expires_at=int(data["expires_at"]),
            upstream=data["upstream"],
            code_used_at=opt_int("code_used_at"),
            gen=int(data.get("gen") or 0),
            rt_hash=opt_str("rt_hash"),
            rt_prev_hash=opt_str("rt_prev_hash"),
            rotated_at=opt_int("rotated_at"),
            pending=opt_str("pending"),
            rt_old=tuple((opt_str("rt_old") or "").split()),
            lease_until=int(data.get("lease_until") or 0),
            trace_id=opt_str("trace") or "",
            last_used_at=opt_int("last_used_at"),
        )

    def summary(self) -> GrantSummary:
        """What a user or an operator may see of this grant: no hashes, no tokens."""
        email = self.claims.get("email")
        return GrantSummary(
            grant_id=self.grant_id,
            client_id=self.client_id,
            sub=self.sub,
            email=email if isinstance(email, str) and email else None,
            scope=self.scope,
            resource=self.resource,
            created_at=self.created_at,
            last_used_at=self.last_used_at,
        )


@dataclass(frozen=True, slots=True)
class GrantSummary:
    """A grant as listed by the account page and the admin CLI.

    Only what identifies the grant and says what it allows: never a token, a
    code or refresh-token hash, or the sealed upstream tokens, so a summary
    can be printed, logged or rendered as it is.
    """

    grant_id: str
    client_id: str
    sub: str
    email: str | None
    scope: str
    resource: str
    created_at: int
    last_used_at: int | None
