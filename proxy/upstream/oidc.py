"""Any OpenID Connect provider, driven by its discovery document.

The proxy is one confidential client of the real IdP. Provider presets and
the GitHub, Google and Entra providers build on this class."""

from __future__ import annotations

import logging
import threading
import time
import typing as t
from urllib.parse import urlencode

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from proxy.keys.keyring import equal
from proxy.upstream.base import Identity
from proxy.upstream.base import UpstreamError
from proxy.upstream.base import UpstreamTokens
from proxy.upstream.base import is_true
from proxy.upstream.base import pick_claims
from proxy.upstream.http import _form_encode
from proxy.upstream.http import network_failure
from proxy.upstream.http import observed
from proxy.upstream.http import pooled_session
from proxy.upstream.http import refresh_with
from proxy.upstream.http import token_error
from proxy.upstream.http import tokens_from

log = logging.getLogger(__name__)


DISCOVERY_TTL_SECONDS = 3600


JWKS_MIN_REFRESH_SECONDS = 10


ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]


class OIDCProvider:
    """A generic OpenID Connect provider, configured by its discovery document.

    Presets subclass it and override the small hooks below (``accepts_issuer``,
    ``id_token_issuer_ok``, ``subject_of``, ``email_of``, ``check_claims``)
    rather than the protocol steps.
    """

    name = "oidc"
    #: Whether kept claims missing from the ID token are looked up in userinfo
    #: (Entra's userinfo is Graph's and never holds groups or roles; Google has
    #: neither).
    claims_from_userinfo = True

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        scopes: tuple[str, ...],
        audience: str | None = None,
        timeout: float = 10.0,
        extra_authorize_params: dict[str, str] | None = None,
        session: requests.Session | None = None,
        subject_prefix: str = "",
        extra_claims: tuple[str, ...] = (),
        policy: t.Callable[[Identity], None] | None = None,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self._client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.scopes = scopes
        self.audience = audience
        self.timeout = timeout
        self.extra_authorize_params = dict(extra_authorize_params or {})
        self.session = session or pooled_session()
        self.subject_prefix = subject_prefix
        self.extra_claims = extra_claims
        self.policy = policy
        self._lock = threading.Lock()
        self._discovery: dict[str, t.Any] | None = None
        self._discovered_at = 0.0
        self._jwks: KeySet | None = None
        self._jwks_at = 0.0

    # -- discovery ------------------------------------------------------------
    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def accepts_issuer(self, advertised: str) -> bool:
        """OIDC Discovery §4.3: the advertised issuer MUST equal the configured one."""
        return advertised.rstrip("/") == self.issuer.rstrip("/")

    def metadata(self) -> dict[str, t.Any]:
        """The discovery document, cached for an hour, re-fetched on failure."""
        now = time.monotonic()
        if self._discovery and now - self._discovered_at < DISCOVERY_TTL_SECONDS:
            return self._discovery
        with self._lock:
            if self._discovery and now - self._discovered_at < DISCOVERY_TTL_SECONDS:
                return self._discovery
            return self.check_discovery()

    def check_discovery(self) -> dict[str, t.Any]:
        """Fetch the discovery document now and check it (``/readyz`` calls this).

        Raises UpstreamError ``issuer_mismatch`` when it names another issuer,
        ``unavailable`` or ``invalid_response`` (endpoint ``discovery``) when it
        cannot be had. A good document replaces the cached one.
        """
        document = self._get_json(self.discovery_url, endpoint="discovery")
        issuer = document.get("issuer")
        if not isinstance(issuer, str) or not self.accepts_issuer(issuer):
            raise UpstreamError(
                "issuer_mismatch",
                f"the discovery document names issuer {issuer!r}, "
                f"OAUTH_ISSUER is {self.issuer!r}",
                endpoint="discovery",
            )
        for name in ("authorization_endpoint", "token_endpoint"):
            if not isinstance(document.get(name), str):
                raise UpstreamError(
                    "invalid_response", f"discovery lacks {name}", endpoint="discovery"
                )
        self._discovery = document
        self._discovered_at = time.monotonic()
        return document

    def issuer_matches(self, iss: str) -> bool:
        return equal(iss, self.metadata()["issuer"])

    # -- the authorize leg ----------------------------------------------------
    def authorization_url(self, *, state: str, code_challenge: str, nonce: str) -> str:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(self.scopes),
            "state": state,
            "nonce": nonce,
            # UP-4: the proxy's own PKCE toward the IdP, always S256.
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        if self.audience:
            params["audience"] = self.audience
        params.update(self.extra_authorize_params)
        endpoint = self.metadata()["authorization_endpoint"]
        separator = "&" if "?" in endpoint else "?"
        return f"{endpoint}{separator}{urlencode(params)}"

    def exchange_code(
        self, *, code: str, code_verifier: str, nonce: str
    ) -> tuple[UpstreamTokens, Identity]:
        data = self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": code_verifier,
            }
        )
        tokens = tokens_from(data, previous_refresh=None)
        if tokens.id_token:
            claims = self.verify_id_token(tokens.id_token, nonce=nonce)
            claims = self.with_userinfo_claims(claims, tokens.access_token)
        else:
            claims = self.userinfo(tokens.access_token)
        self.check_claims(claims)
        identity = self.identity_from_claims(claims)
        if self.policy is not None:
            self.policy(identity)
        return tokens, identity

    def refresh(self, tokens: UpstreamTokens) -> UpstreamTokens:
        return refresh_with(self._token_request, tokens)

    def refreshed_identity(
        self, tokens: UpstreamTokens, *, subject: str
    ) -> Identity | None:
        """The user as a refresh answer vouches for them, through the login's rules.

        With an ID token (OIDC Core §12.2), its claims, with userinfo's for
        kept claims it lacks, as at login. Without one, userinfo alone, but
        only when kept claims (groups, roles, TOKEN_EXTRA_CLAIMS) are wanted
        and this provider's userinfo can hold them: a refresh then costs one
        more GET, and only where it can change what a token says. Otherwise
        None: the IdP told us nothing new, and the stored claims stand (J66).

        Raises ``subject_changed`` when the answer names another user (the
        grant must end), ``access_denied`` when the login rules now refuse
        them, ``invalid_response`` for an ID token that does not verify.
        """
        if tokens.id_token:
            claims = self.verify_refreshed_id_token(tokens.id_token)
            claims = self.with_userinfo_claims(claims, tokens.access_token)
        elif (
            self.extra_claims
            and self.claims_from_userinfo
            and self.metadata().get("userinfo_endpoint")
        ):
            claims = self.userinfo(tokens.access_token)
        else:
            return None
        identity = self.identity_from_claims(claims)
        if not equal(identity.subject, subject):
            raise UpstreamError(
                "subject_changed", "the refreshed identity names another subject"
            )
        self.check_claims(claims)
        if self.policy is not None:
            self.policy(identity)
        return identity

    # -- identity -------------------------------------------------------------
    def subject_of(self, claims: dict[str, t.Any]) -> str:
        """The provider's stable user id (before the namespace prefix)."""
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise UpstreamError("invalid_response", "the IdP returned no 'sub'")
        return subject

    def email_of(self, claims: dict[str, t.Any]) -> tuple[str | None, bool]:
        """The email and whether it is verified (OIDC Core §5.1 ``email_verified``)."""
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            return None, False
        return email, is_true(claims.get("email_verified"))

    def check_claims(self, claims: dict[str, t.Any]) -> None:
        """Provider rules on the verified claims (Google's ``hd``, Entra's tenant)."""

    def identity_from_claims(self, claims: dict[str, t.Any]) -> Identity:
        name = claims.get("name") or claims.get("preferred_username")
        email, verified = self.email_of(claims)
        return Identity(
            subject=self.subject_prefix + self.subject_of(claims),
            email=email,
            email_verified=verified,
            name=name if isinstance(name, str) else None,
            claims=claims,
            extra=pick_claims(claims, self.extra_claims),
        )

    def id_token_issuer_ok(self, iss: object, claims: dict[str, t.Any]) -> bool:
        """OIDC Core §3.1.3.7 (2): iss MUST exactly match the discovery issuer."""
        return bool(iss == self.metadata()["issuer"])

    def verify_id_token(self, id_token: str, *, nonce: str) -> dict[str, t.Any]:
        """OIDC Core §3.1.3.7: signature, iss, aud, azp, exp, nonce."""
        claims = self._verified_claims(id_token)
        if "nonce" in claims or nonce:
            if not isinstance(claims.get("nonce"), str) or not equal(
                claims["nonce"], nonce
            ):
                raise UpstreamError("invalid_response", "id_token nonce mismatch")
        return claims

    def verify_refreshed_id_token(self, id_token: str) -> dict[str, t.Any]:
        """OIDC Core §12.2: the login's checks but the nonce (J66).

        A refresh answer's ID token need not carry a nonce, and one that does
        repeats the login's, which is not kept; a replayed login ID token gains
        nothing here, since it arrives over the TLS answer to our own refresh
        request. That it names the same user is :meth:`refreshed_identity`'s
        check, on the subject the grant was created for. An ``azp``, if
        present, must name us even with one audience (§3.1.3.7 (5) says
        SHOULD; the login path keeps its older, multi-audience-only check).
        """
        claims = self._verified_claims(id_token)
        if "azp" in claims and claims["azp"] != self.client_id:
            raise UpstreamError("invalid_response", "id_token azp mismatch")
        return claims

    def _verified_claims(self, id_token: str) -> dict[str, t.Any]:
        """Signature against the IdP's JWKS, iss, aud, azp and exp."""
        try:
            decoded = jwt.decode(
                id_token, self._keyset_for(id_token), algorithms=ID_TOKEN_ALGORITHMS
            )
        except (JoseError, ValueError) as exc:
            raise UpstreamError("invalid_response", f"id_token: {exc}") from exc
        claims = decoded.claims
        now = time.time()
        if not self.id_token_issuer_ok(claims.get("iss"), claims):
            raise UpstreamError("invalid_response", "id_token iss mismatch")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self.client_id not in audiences:
            raise UpstreamError("invalid_response", "id_token aud mismatch")
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            raise UpstreamError("invalid_response", "id_token azp mismatch")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp + 60 < now:
            raise UpstreamError("invalid_response", "id_token expired")
        return dict(claims)

    def with_userinfo_claims(
        self, claims: dict[str, t.Any], access_token: str
    ) -> dict[str, t.Any]:
        """Kept claims the ID token lacks, from userinfo (Okta and Keycloak put
        `groups` in one or the other, depending on their configuration).

        Only the kept names are taken, and only when userinfo names the same
        `sub` (OIDC Core §5.3.2: it MUST be verified to match). An unreachable
        userinfo fails the login: a missing group could let a deny rule pass.
        """
        wanted = [name for name in self.extra_claims if name not in claims]
        if not (wanted and self.claims_from_userinfo):
            return claims
        if not self.metadata().get("userinfo_endpoint"):
            return claims
        info = self.userinfo(access_token)
        if info.get("sub") != claims.get("sub"):
            raise UpstreamError("invalid_response", "userinfo sub mismatch")
        return {**claims, **{n: info[n] for n in wanted if n in info}}

    def userinfo(self, access_token: str) -> dict[str, t.Any]:
        endpoint = self.metadata().get("userinfo_endpoint")
        if not isinstance(endpoint, str):
            raise UpstreamError(
                "invalid_response", "no id_token and no userinfo endpoint"
            )
        return self._get_json(
            endpoint,
            headers={"Authorization": f"Bearer {access_token}"},
            endpoint="userinfo",
        )

    def jwks(self) -> KeySet:
        """The IdP's signing keys (cached; ``python -m proxy check`` calls it)."""
        return self._keyset_for("")

    def _keyset_for(self, id_token: str) -> KeySet:
        """The IdP's JWKS, re-fetched when the token names a kid we lack."""
        kid = _unverified_kid(id_token)
        now = time.monotonic()
        known = self._jwks is not None and (
            kid is None or any(k.kid == kid for k in self._jwks.keys)
        )
        fresh = now - self._jwks_at < DISCOVERY_TTL_SECONDS
        if (
            self._jwks is None
            or (not known and now - self._jwks_at > JWKS_MIN_REFRESH_SECONDS)
            or not fresh
        ):
            uri = self.metadata().get("jwks_uri")
            if not isinstance(uri, str):
                raise UpstreamError("invalid_response", "discovery lacks jwks_uri")
            try:
                self._jwks = KeySet.import_key_set(
                    t.cast(t.Any, self._get_json(uri, endpoint="jwks"))
                )
            except (JoseError, ValueError, KeyError, TypeError) as exc:
                raise UpstreamError("invalid_response", f"{uri}: bad JWKS") from exc
            self._jwks_at = now
        return self._jwks

    # -- HTTP -----------------------------------------------------------------
    def probe_client(self) -> str:
        """Redeem a made-up code; return the IdP's error code (``check`` reads it).

        ``invalid_grant`` means the client credentials were accepted and only
        the code was refused; ``invalid_client`` means they were not.
        """
        try:
            self._token_request(
                {
                    "grant_type": "authorization_code",
                    "code": "mcp-oauth-proxy-check-" + "0" * 20,
                    "redirect_uri": self.redirect_uri,
                    "code_verifier": "0" * 43,
                }
            )
        except UpstreamError as exc:
            if exc.kind == "unavailable":
                raise
            return exc.error or exc.kind
        return "accepted"

    def _token_request(self, form: dict[str, str]) -> dict[str, t.Any]:
        endpoint = self.metadata()["token_endpoint"]
        methods = self.metadata().get(
            "token_endpoint_auth_methods_supported", ["client_secret_basic"]
        )
        auth = None
        if "client_secret_basic" in methods:
            auth = requests.auth.HTTPBasicAuth(
                _form_encode(self.client_id), _form_encode(self._client_secret)
            )
        else:
            form = dict(
                form, client_id=self.client_id, client_secret=self._client_secret
            )
        try:
            response = observed(
                "token",
                lambda: self.session.post(
                    endpoint,
                    data=form,
                    auth=auth,
                    headers={"Accept": "application/json"},
                    timeout=self.timeout,
                ),
            )
        except requests.RequestException as exc:
            raise UpstreamError(
                "unavailable",
                f"token endpoint: {network_failure(exc)}",
                endpoint="token",
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 500 or not isinstance(body, dict):
            raise UpstreamError(
                "unavailable", f"token endpoint answered {response.status_code}"
            )
        if response.status_code != 200 or "error" in body:
            raise token_error(str(body.get("error") or ""), response.status_code)
        if not isinstance(body.get("access_token"), str):
            raise UpstreamError("invalid_response", "token response lacks access_token")
        return body

    def _get_json(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        endpoint: str = "other",
    ) -> dict[str, t.Any]:
        try:
            response = observed(
                endpoint,
                lambda: self.session.get(url, headers=headers, timeout=self.timeout),
            )
        except requests.RequestException as exc:
            raise UpstreamError(
                "unavailable", f"{url}: {network_failure(exc)}", endpoint=endpoint
            ) from exc
        if response.status_code != 200:
            # A rate limit or a timeout is "not now": at refresh, an
            # invalid_response would end the grant (J67).
            status = response.status_code
            kind = (
                "unavailable"
                if status >= 500 or status in (408, 429)
                else "invalid_response"
            )
            raise UpstreamError(
                kind, f"{url} answered {response.status_code}", endpoint=endpoint
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise UpstreamError(
                "unavailable", f"{url}: not JSON", endpoint=endpoint
            ) from exc
        if not isinstance(body, dict):
            raise UpstreamError(
                "invalid_response", f"{url}: not a JSON object", endpoint=endpoint
            )
        return body


def _unverified_kid(token: str) -> str | None:
    import json

    from proxy.keys.keyring import b64url_decode

    try:
        header = json.loads(b64url_decode(token.split(".", 1)[0]))
    except (ValueError, IndexError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None
