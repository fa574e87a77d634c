"""`private_key_jwt` client assertions: RFC 7523 §2.2 and §3, OpenID Connect Core §9.

A client proves who it is by signing a short-lived JWT with its own private
key; we check it against the public keys the client registered (`jwks`) or
publishes (`jwks_uri`). Pure rules: no flask, no redis, no I/O; `now` and the
client's key set are passed in, and the caller marks the `jti` as spent
(single use needs shared state, which lives in the store).

Every rule raises :class:`~proxy.oauth.errors.InvalidClientError` (RFC 7521
§4.2.1: an assertion that is not valid is `invalid_client`) with one generic
description and a precise internal `reason`, so the caller learns nothing
about which check failed while the log says exactly which.
"""

from __future__ import annotations

import json
import math
import typing as t
from dataclasses import dataclass

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry
from joserfc.jws import JWSRegistry

from proxy.keys.keyring import b64url_decode
from proxy.oauth.errors import InvalidClientError

if t.TYPE_CHECKING:
    from joserfc.jwk import Key

#: RFC 7523 §2.2: the one value of `client_assertion_type` for a JWT assertion.
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#: Asymmetric JWS algorithms only: a client's secret key never reaches us, so
#: HMAC (the "secret" would be public key material) and `none` are refused.
SIGNING_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "EdDSA",
)

#: Clock skew tolerated on `exp`, `nbf` and `iat` between the client and us.
LEEWAY_SECONDS = 30

#: An assertion is a few hundred bytes; anything huge is refused unparsed.
MAX_ASSERTION_BYTES = 8192

#: A client's key set is small; bounding it bounds the keys tried per request.
MAX_KEYS = 16

#: RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used".
MIN_RSA_BITS = 2048

#: JWK members that only a private (or symmetric) key has (RFC 7518 §6).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384"}
_OKP_CURVES = frozenset({"Ed25519", "Ed448"})

_FAILED = "Client authentication failed."


class InvalidJWKSError(ValueError):
    """A JWKS a client registered or published cannot be used; says why."""


class UnknownKeyError(InvalidClientError):
    """The assertion names a `kid` the client's key set lacks: re-read it once."""


@dataclass(frozen=True, slots=True)
class ClientKey:
    """One public key of a client, with the `kid` and `alg` it was published with.

    The declared `kid` is kept apart from the key object: joserfc gives a
    key without one its thumbprint, which the client never sends.
    """

    kid: str | None
    alg: str | None
    key: Key


@dataclass(frozen=True, slots=True)
class ClientKeySet:
    keys: tuple[ClientKey, ...]


@dataclass(frozen=True, slots=True)
class VerifiedAssertion:
    """What the caller needs after the checks: the `jti` to spend, until when."""

    client_id: str
    jti: str
    expires_at: int


# -- the client's keys --------------------------------------------------------


def parse_public_jwks(value: t.Any) -> ClientKeySet:
    """A JWKS (RFC 7517 §5) of public signing keys; InvalidJWKSError otherwise."""
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise InvalidJWKSError("a JWKS is a JSON object with a 'keys' list")
    members = value["keys"]
    if not members:
        raise InvalidJWKSError("the JWKS has no keys")
    if len(members) > MAX_KEYS:
        raise InvalidJWKSError(f"the JWKS has more than {MAX_KEYS} keys")
    return ClientKeySet(tuple(parse_public_jwk(m) for m in members))


def parse_public_jwk(member: t.Any) -> ClientKey:
    """One public signing key; InvalidJWKSError names what is wrong with it."""
    if not isinstance(member, dict):
        raise InvalidJWKSError("each key is a JSON object")
    # RFC 7591 §2: the JWKS holds the client's *public* keys. A private
    # member means the client leaked its key to us, and to anyone who
    # reads its document: refuse it rather than use a compromised key.
    leaked = sorted(PRIVATE_MEMBERS & member.keys())
    if leaked:
        raise InvalidJWKSError(
            f"a key carries private members ({', '.join(leaked)}): "
            "publish public keys only"
        )
    kty = member.get("kty")
    if kty not in ("RSA", "EC", "OKP"):
        raise InvalidJWKSError("each key's 'kty' must be RSA, EC or OKP")
    # RFC 7517 §4.2: a key whose `use` is not "sig" is not for signatures.
    if member.get("use", "sig") != "sig":
        raise InvalidJWKSError("a key's 'use' must be 'sig'")
    kid, alg = member.get("kid"), member.get("alg")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise InvalidJWKSError("a key's 'kid' must be a non-empty string")
    if alg is not None and alg not in SIGNING_ALGORITHMS:
        raise InvalidJWKSError(
            f"a key's 'alg' must be one of {', '.join(SIGNING_ALGORITHMS)}"
        )
    if kty == "OKP" and member.get("crv") not in _OKP_CURVES:
        raise InvalidJWKSError("an OKP key's 'crv' must be Ed25519 or Ed448")
    if kty == "RSA" and _rsa_bits(member.get("n")) < MIN_RSA_BITS:
        raise InvalidJWKSError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
    try:
        key = JWKRegistry.import_key(member)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise InvalidJWKSError(f"a {kty} key cannot be read") from exc
    if key.is_private:  # belt and braces: the member check above
        raise InvalidJWKSError("publish public keys only")
    return ClientKey(kid=kid, alg=alg, key=key)


def _rsa_bits(n: t.Any) -> int:
    if not isinstance(n, str):
        return 0
    try:
        return len(b64url_decode(n).lstrip(b"\0")) * 8
    except ValueError:
        return 0


# -- reading the request ------------------------------------------------------


def validate_assertion_type(value: str | None) -> None:
    # RFC 7523 §2.2: "The value of the "client_assertion_type" is
    # "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"."
    if value != CLIENT_ASSERTION_TYPE:
        raise InvalidClientError(
            "'client_assertion_type' must be "
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
            reason="assertion_type",
        )


def unverified_subject(assertion: str) -> str | None:
    """The `sub` an assertion claims, unverified: which client to look up.

    RFC 7521 §4.2: `client_id` is OPTIONAL beside an assertion, so the
    subject is how the client is found; the signature decides later.
    """
    try:
        _, claims = _unverified(assertion)
    except InvalidClientError:
        return None
    sub = claims.get("sub")
    return sub if isinstance(sub, str) and sub else None


def _unverified(assertion: str) -> tuple[dict[str, t.Any], dict[str, t.Any]]:
    """Header and claims of a compact JWS, parsed but not trusted."""
    if len(assertion) > MAX_ASSERTION_BYTES:
        raise InvalidClientError(_FAILED, reason="assertion_too_large")
    parts = assertion.split(".")
    # RFC 7523 §2.2: "It MUST NOT contain more than one JWT." A compact JWS
    # has exactly three parts; a JWE (five) is not a signed assertion.
    if len(parts) != 3:
        raise InvalidClientError(_FAILED, reason="assertion_not_jws")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, RecursionError) as exc:
        raise InvalidClientError(_FAILED, reason="assertion_malformed") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise InvalidClientError(_FAILED, reason="assertion_malformed")
    return header, claims


# -- the checks -----------------------------------------------------------------


def verify(
    assertion: str,
    *,
    client_id: str,
    audiences: t.Collection[str],
    keys: ClientKeySet,
    now: int,
    max_lifetime_seconds: int,
) -> VerifiedAssertion:
    """Check one assertion for `client_id`; the `jti` is still to be spent.

    `audiences` are the values that identify us: the issuer, the token
    endpoint URL, and the URL of the endpoint actually called.
    """
    header, _ = _unverified(assertion)
    alg = validate_algorithm(header)
    # RFC 7515 §4.1.11: a `crit` extension we do not understand MUST be
    # rejected; we understand none.
    if "crit" in header:
        raise InvalidClientError(_FAILED, reason="assertion_crit")
    claims = verify_signature(assertion, header, alg, keys)
    validate_issuer(claims, client_id)
    validate_subject(claims, client_id)
    validate_audience(claims, audiences)
    expires_at = validate_expiry(claims, now, max_lifetime_seconds)
    validate_not_before(claims, now)
    validate_issued_at(claims, now)
    jti = validate_jti(claims)
    return VerifiedAssertion(client_id=client_id, jti=jti, expires_at=expires_at)


def validate_algorithm(header: dict[str, t.Any]) -> str:
    """alg: asymmetric only (RFC 8725 §3.1; OpenID Connect Core §9)."""
    alg = header.get("alg")
    # RFC 8725 §3.1: "Libraries MUST enable the caller to specify a supported
    # set of algorithms and MUST NOT use any other algorithms". `none` and
    # HMAC are never in that set: RFC 7523 §3 rule 9 needs a signature by
    # the client's key, and a MAC keyed with public material proves nothing.
    if alg not in SIGNING_ALGORITHMS:
        raise InvalidClientError(_FAILED, reason="assertion_alg")
    return t.cast(str, alg)


def candidate_keys(header: dict[str, t.Any], alg: str, keys: ClientKeySet) -> list[Key]:
    """The keys that may have signed: the one `kid` names, else those fitting `alg`."""
    kid = header.get("kid")
    fitting = [k for k in keys.keys if _fits(k, alg)]
    if kid is not None:
        # OpenID Connect Core §10.1: "If there are multiple keys in the
        # referenced JWK Set document, a kid value MUST be provided in the
        # JOSE Header." When it is given, it selects the key.
        named = [k for k in keys.keys if k.kid == kid]
        if not named:
            raise UnknownKeyError(_FAILED, reason="assertion_unknown_kid")
        fitting = [k for k in named if _fits(k, alg)]
    if not fitting:
        raise InvalidClientError(_FAILED, reason="assertion_no_key_for_alg")
    return [k.key for k in fitting]


def _fits(key: ClientKey, alg: str) -> bool:
    if key.alg is not None and key.alg != alg:
        return False
    kty = key.key.key_type
    if kty != _KEY_TYPES[alg[:2]]:
        return False
    if kty == "EC":
        return bool(key.key.get("crv") == _EC_CURVES[alg])
    return True


def verify_signature(
    assertion: str, header: dict[str, t.Any], alg: str, keys: ClientKeySet
) -> dict[str, t.Any]:
    # RFC 7523 §3 rule 9: "The JWT MUST be digitally signed or have a Message
    # Authentication Code (MAC) applied by the issuer. The authorization
    # server MUST reject JWTs with an invalid signature or MAC."
    registry = _registry(alg)
    for key in candidate_keys(header, alg, keys):
        try:
            token = jwt.decode(assertion, key, algorithms=[alg], registry=registry)
        except (JoseError, ValueError, TypeError):
            continue
        return dict(token.claims)
    raise InvalidClientError(_FAILED, reason="assertion_signature")


def validate_issuer(claims: dict[str, t.Any], client_id: str) -> None:
    # OpenID Connect Core §9: "iss REQUIRED. Issuer. This MUST contain the
    # client_id of the OAuth Client."
    if claims.get("iss") != client_id:
        raise InvalidClientError(_FAILED, reason="assertion_iss")


def validate_subject(claims: dict[str, t.Any], client_id: str) -> None:
    # RFC 7523 §3 rule 2.B: "For client authentication, the subject MUST be
    # the "client_id" of the OAuth client."
    if claims.get("sub") != client_id:
        raise InvalidClientError(_FAILED, reason="assertion_sub")


def validate_audience(claims: dict[str, t.Any], audiences: t.Collection[str]) -> None:
    # RFC 7523 §3 rule 3: "The token endpoint URL of the authorization server
    # MAY be used as a value for an "aud" element [...] The authorization
    # server MUST reject any JWT that does not contain its own identity as
    # the intended audience." Our identity is the issuer or an endpoint URL.
    aud = claims.get("aud")
    values = aud if isinstance(aud, list) else [aud]
    if not any(isinstance(v, str) and v in audiences for v in values):
        raise InvalidClientError(_FAILED, reason="assertion_aud")


def validate_expiry(claims: dict[str, t.Any], now: int, max_lifetime: int) -> int:
    exp = claims.get("exp")
    # RFC 7523 §3 rule 4: "The JWT MUST contain an "exp" (expiration time)
    # claim that limits the time window during which the JWT can be used."
    if not _is_time(exp):
        raise InvalidClientError(_FAILED, reason="assertion_no_exp")
    expires_at = int(exp)
    # RFC 7523 §3 rule 4: "The authorization server MUST reject any JWT with
    # an expiration time that has passed, subject to allowable clock skew".
    if expires_at + LEEWAY_SECONDS <= now:
        raise InvalidClientError(_FAILED, reason="assertion_expired")
    # RFC 7523 §3 rule 4: "the authorization server may reject JWTs with an
    # "exp" claim value that is unreasonably far in the future." A long-lived
    # assertion is a bearer credential; the jti store would have to keep it.
    if expires_at - now > max_lifetime + LEEWAY_SECONDS:
        raise InvalidClientError(_FAILED, reason="assertion_exp_too_far")
    return expires_at


def validate_not_before(claims: dict[str, t.Any], now: int) -> None:
    nbf = claims.get("nbf")
    if nbf is None:
        return
    # RFC 7523 §3 rule 5: "The JWT MAY contain an "nbf" (not before) claim
    # that identifies the time before which the token MUST NOT be accepted".
    if not _is_time(nbf) or nbf > now + LEEWAY_SECONDS:
        raise InvalidClientError(_FAILED, reason="assertion_nbf")


def validate_issued_at(claims: dict[str, t.Any], now: int) -> None:
    iat = claims.get("iat")
    if iat is None:
        return
    # RFC 7519 §4.1.6: iat is "the time at which the JWT was issued"; one from
    # the future (beyond the skew) was not issued yet (RFC 7523 §3 rule 10:
    # reject a JWT "not valid in all other respects").
    if not _is_time(iat) or iat > now + LEEWAY_SECONDS:
        raise InvalidClientError(_FAILED, reason="assertion_iat")


def validate_jti(claims: dict[str, t.Any]) -> str:
    jti = claims.get("jti")
    # OpenID Connect Core §9: "jti REQUIRED. JWT ID. A unique identifier for
    # the token, which can be used to prevent reuse of the token. These
    # tokens MUST only be used once".
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise InvalidClientError(_FAILED, reason="assertion_no_jti")
    return jti


def _is_time(value: t.Any) -> t.TypeGuard[int | float]:
    """A NumericDate (RFC 7519 §2): a finite number; Python's JSON reads
    `Infinity` and `NaN` too, which no clock comparison may see."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


def _registry(alg: str) -> JWSRegistry:
    """A registry allowing exactly `alg`, and quiet about `EdDSA`.

    joserfc warns that RFC 9864 deprecates the polymorphic `EdDSA` name;
    clients still use it, and we decided to accept it, so the warning is
    silenced on this registry alone rather than process-wide.
    """
    registry = JWSRegistry(algorithms=[alg], strict_check_header=False)
    if alg == "EdDSA":
        registry.algorithms = {**JWSRegistry.algorithms, "EdDSA": _QUIET_EDDSA}
    return registry


def _quiet_eddsa() -> t.Any:
    base = type(JWSRegistry.algorithms["EdDSA"])
    quiet = type("QuietEdDSA", (base,), {"security_warning": None})
    return quiet()


_QUIET_EDDSA = _quiet_eddsa()
