"""The authorization request (OAuth 2.1 §4.1.1) as one validated value.

:func:`validate_client` and then :func:`validate` apply the rules in the order
the spec demands: first the client and its redirect URI, whose failures are
shown to the user and never redirected (§4.1.2.1); then everything else, whose
failures are redirected back to the now-trusted redirect URI with `state` and
`iss`.
"""

from __future__ import annotations

import typing as t
from dataclasses import asdict
from dataclasses import dataclass

from proxy.oauth import pkce
from proxy.oauth import redirect_uris
from proxy.oauth import scopes
from proxy.oauth.errors import InvalidRequestError
from proxy.oauth.errors import InvalidScopeError
from proxy.oauth.errors import InvalidTargetError
from proxy.oauth.errors import OAuthError
from proxy.oauth.errors import UnknownClientError
from proxy.oauth.errors import UnsupportedResponseTypeError
from proxy.oauth.params import single
from proxy.oauth.resource_indicators import canonical_resource
from proxy.oauth.resource_indicators import matches_resource

if t.TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict

    from proxy.store.records import ClientRecord


# Parameters that must appear at most once (GEN-6); `resource` may repeat.
_SINGLE = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)


@dataclass(frozen=True, slots=True)
class ResourceOffer:
    """One protected resource a request may name, and the scopes it offers."""

    #: Its canonical RFC 8707 identifier: the `aud` of its tokens.
    resource: str
    #: Everything that may be granted for it (its scopes and tool scopes).
    offered_scopes: tuple[str, ...]
    #: Granted when nothing offered is asked (None: all offered).
    default_scopes: tuple[str, ...] | None = None
    #: Tool scopes a registration's `scope` does not limit (decision J51).
    step_up_scopes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """Everything the client asked for, bound server-side from here on (AUTHZ-17)."""

    client_id: str
    redirect_uri: str
    state: str | None
    code_challenge: str
    scope: str
    resource: str

    def to_dict(self) -> dict[str, t.Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, t.Any]) -> AuthorizationRequest:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def client_id_of(args: MultiDict[str, str]) -> str:
    """The client_id, or a shown error: it cannot be redirected yet (AUTHZ-1)."""
    values = args.getlist("client_id")
    if len(values) != 1 or not values[0]:
        raise InvalidRequestError(
            "'client_id' is missing or repeated.", reason="client_id"
        )
    return values[0]


def validate_client(client_id: str, client: ClientRecord | None) -> ClientRecord:
    """The registered client the request names, or a shown error (AUTHZ-1)."""
    if client is None:
        # Decision J10 (docs/decisions.md): mcp-remote reads this JSON to
        # detect a stale registration.
        raise UnknownClientError(
            f"Client '{_printable(client_id)}' is not registered.",
            reason="unknown_client",
        )
    return client


def validate(
    args: MultiDict[str, str],
    client: ClientRecord,
    *,
    offers: t.Sequence[ResourceOffer],
    any_loopback_host: bool = False,
) -> AuthorizationRequest:
    """Validate a request; raise an OAuthError, with a redirect only once it is safe.

    `offers`: the protected resources (one per MCP server); the request's
    `resource` picks one (decision J56), whose scopes are then what may be
    granted. `any_loopback_host`: the client is catalogued as authorizing
    with another loopback host than it registered (Codex); see
    redirect_uris.matches.
    """
    redirect_uri = _trusted_redirect_uri(args, client, any_loopback_host)
    # From here on, errors go back to the client's redirect URI.
    state_values = args.getlist("state")
    state = state_values[0] if len(state_values) == 1 and state_values[0] else None
    fail = _redirecting(redirect_uri, state)
    for name in _SINGLE:
        if len(args.getlist(name)) > 1:
            raise fail(InvalidRequestError, f"'{name}' is repeated.", "repeated")
    _check_response_type(args, client, fail)
    challenge = _code_challenge(args, fail)
    offer = select_resource(args.getlist("resource"), offers, fail)
    scope = _granted_scope(
        args,
        client,
        offer.offered_scopes,
        fail,
        offer.default_scopes,
        offer.step_up_scopes,
    )
    return AuthorizationRequest(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        state=state,
        code_challenge=challenge,
        scope=scope,
        resource=offer.resource,
    )


#: Builds the error to raise, redirected to the client with its `state`.
_Fail = t.Callable[[type[OAuthError], str, str], OAuthError]


def _redirecting(redirect_uri: str, state: str | None) -> _Fail:
    def fail(error: type[OAuthError], description: str, reason: str) -> OAuthError:
        return error(description, reason=reason, redirect_uri=redirect_uri, state=state)

    return fail


def _trusted_redirect_uri(
    args: MultiDict[str, str], client: ClientRecord, any_loopback_host: bool
) -> str:
    """The redirect URI errors may go to; a shown error when there is none."""
    requested_uris = args.getlist("redirect_uri")
    if len(requested_uris) > 1:
        raise InvalidRequestError(
            "'redirect_uri' is repeated.", reason="redirect_repeated"
        )
    requested = requested_uris[0] if requested_uris else None
    # OAuth 2.1 §4.1.2.1: a mismatching redirect URI MUST NOT be redirected to.
    redirect_uri = redirect_uris.resolve(
        requested, client.redirect_uris, any_loopback_host=any_loopback_host
    )
    if redirect_uri is None:
        raise InvalidRequestError(
            "'redirect_uri' is missing or not registered for this client.",
            reason="redirect_mismatch",
        )
    return redirect_uri


def _check_response_type(
    args: MultiDict[str, str], client: ClientRecord, fail: _Fail
) -> None:
    response_type = single(args, "response_type")
    if response_type is None:
        raise fail(
            InvalidRequestError, "'response_type' is required.", "no_response_type"
        )
    if response_type != "code":
        raise fail(
            UnsupportedResponseTypeError, "Only response_type=code is supported.", "rt"
        )
    if "authorization_code" not in client.grant_types:
        raise fail(InvalidRequestError, "Client may not use the code grant.", "grant")


def _code_challenge(args: MultiDict[str, str], fail: _Fail) -> str:
    """The PKCE challenge: OAuth 2.1 §4.1.1 requires one; only S256 is accepted."""
    challenge = single(args, "code_challenge")
    if challenge is None:
        raise fail(InvalidRequestError, "'code_challenge' is required.", "no_pkce")
    method = single(args, "code_challenge_method")
    if method not in pkce.SUPPORTED_METHODS:
        # RFC 7636 §4.4.1: absent means plain, which is refused.
        raise fail(
            InvalidRequestError,
            "Transform algorithm not supported: use S256.",
            "pkce_method",
        )
    if not pkce.is_valid_challenge(challenge):
        raise fail(InvalidRequestError, "Malformed 'code_challenge'.", "pkce_format")
    return challenge


def _granted_scope(
    args: MultiDict[str, str],
    client: ClientRecord,
    offered_scopes: tuple[str, ...],
    fail: _Fail,
    default_scopes: tuple[str, ...] | None = None,
    step_up_scopes: tuple[str, ...] = (),
) -> str:
    """The scope to grant (decision J7): what was asked and is offered."""
    scope_text = single(args, "scope")
    if scope_text is not None and not scopes.is_well_formed(scope_text):
        raise fail(InvalidScopeError, "Malformed 'scope'.", "scope_format")
    # J51: a registration's `scope` was chosen from the first challenge, so it
    # never limits the tool scopes step-up asks for later (consent still does).
    limited = offered_for(client, offered_scopes)
    offered = tuple(dict.fromkeys([*limited, *step_up_scopes]))
    default = None
    if default_scopes is not None:
        default = tuple(s for s in default_scopes if s in limited) or limited
    granted = scopes.grant(scope_text or client_scope(client), offered, default)
    return scopes.format_scopes(granted)


def select_resource(
    values: t.Sequence[str], offers: t.Sequence[ResourceOffer], fail: _Fail
) -> ResourceOffer:
    """The one protected resource the request is for (decision J56).

    Every `resource` must name an offered resource; all of them the same one,
    since a token carries one audience. None named: the only resource, or
    `invalid_target` when there are several (guessing would grant a token
    for a server the client did not ask for).
    """
    chosen: ResourceOffer | None = None
    # RFC 8707 §2: resource may repeat; each must name a protected resource.
    for value in values:
        if not value:
            continue
        if canonical_resource(value) is None:
            raise fail(
                InvalidTargetError, "'resource' must be an absolute URI.", "res_form"
            )
        offer = next((o for o in offers if matches_resource(value, o.resource)), None)
        if offer is None:
            raise fail(InvalidTargetError, "Unknown 'resource'.", "res_unknown")
        if chosen is not None and offer is not chosen:
            raise fail(
                InvalidTargetError,
                "Name one MCP server in 'resource': a token has one audience.",
                "res_several",
            )
        chosen = offer
    if chosen is not None:
        return chosen
    if len(offers) == 1:
        return offers[0]
    raise fail(
        InvalidTargetError,
        "Name the MCP server in 'resource' (RFC 8707): this server fronts several.",
        "res_missing",
    )


def offered_for(client: ClientRecord, offered: tuple[str, ...]) -> tuple[str, ...]:
    """RFC 7591 §2: a registered `scope` is the most the client may ask for.

    A registration naming none of our scopes (only OIDC ones, say) limits
    nothing: the client would otherwise be left with no scope at all.
    """
    registered = scopes.parse(client_scope(client))
    limited = tuple(s for s in offered if s in registered)
    return limited or offered


def client_scope(client: ClientRecord) -> str | None:
    scope = client.metadata.get("scope")
    return scope if isinstance(scope, str) else None


def _printable(value: str) -> str:
    cleaned = "".join(
        c for c in value[:100] if 0x20 <= ord(c) < 0x7F and c not in '"\\'
    )
    return cleaned
