"""Typed readers over environment variables, used once by :mod:`proxy.config.settings`.

Only the settings read ``os.environ``. A missing or malformed value raises
:class:`ConfigError` naming the variable and what to put there, so a bad deploy
stops at boot instead of failing on the first login.
"""

from __future__ import annotations

import json
import re
import secrets
import typing as t
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from proxy.oauth import client_assertion
from proxy.oauth.redirect_uris import is_loopback_host


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it and the fix."""


@dataclass(frozen=True, slots=True)
class StaticClient:
    """A client registered by the operator instead of through DCR."""

    client_id: str
    redirect_uris: tuple[str, ...]
    client_name: str
    client_secret_hash: str | None = None
    scope: str | None = None
    #: A resource server allowed to call /oauth2/introspect (RFC 7662 §4).
    can_introspect: bool = False
    #: Public keys for private_key_jwt (RFC 7523): an inline JWKS...
    jwks: dict[str, t.Any] | None = None
    #: ...or where the client publishes it.
    jwks_uri: str | None = None


class EnvReader:
    """Typed readers over the environment; each error names its variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def _raw(self, name: str) -> str:
        return self._environ.get(name, "").strip()

    def text(self, name: str, default: str = "", *, required: bool = False) -> str:
        value = self._raw(name)
        if not value:
            if required:
                raise ConfigError(
                    f"{name} is not set: put it in the environment or .env"
                )
            return default
        return value

    def url(
        self,
        name: str,
        *,
        required: bool = False,
        normalise: bool = True,
        private_http: bool = False,
    ) -> str:
        value = self.text(name, required=required)
        if not value:
            return ""
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{name}={value!r} is not an absolute http(s) URL, "
                f"e.g. {name}=https://auth.example.com"
            )
        if parts.query or parts.fragment:
            raise ConfigError(f"{name} must not have a query or fragment")
        if parts.username or parts.password:
            raise ConfigError(f"{name} must not contain a user name or password")
        try:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise ConfigError(f"{name}={value!r} has an invalid port") from None
        # GEN-1: plain http only for loopback (development).
        # A gateway backend usually sits on a private network: http is fine there.
        if (
            parts.scheme == "http"
            and not private_http
            and not is_loopback_host(parts.hostname)
        ):
            raise ConfigError(
                f"{name}={value!r} uses http on a non-loopback host; use https "
                "(http is allowed only for localhost, 127.0.0.1 and [::1])"
            )
        if not normalise:
            # An upstream issuer is compared byte for byte with what it advertises.
            return value
        # One spelling of our own URLs everywhere: no trailing slash, lowercase host.
        return f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"

    def header(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", value):
            raise ConfigError(f"{name}={value!r} is not an HTTP header name")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self._raw(name).lower()
        if not value:
            return default
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={value!r} is not a boolean: use true or false")

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self._raw(name)
        if not value:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not a whole number") from None
        if not low <= number <= high:
            raise ConfigError(f"{name}={number} is out of range: use {low}..{high}")
        return number

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self._raw(name)
        if not value:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not a number") from None
        if not low <= number <= high:
            raise ConfigError(f"{name}={number} is out of range: use {low}..{high}")
        return number

    def items(self, name: str) -> list[str]:
        return [item for item in self._raw(name).replace(",", " ").split() if item]

    def file_or_value(self, name: str) -> str | None:
        """`NAME` holds the value itself, or `NAME_FILE` a path to it."""
        value = self._raw(name)
        path = self._raw(name + "_FILE")
        if value and path:
            raise ConfigError(f"set either {name} or {name}_FILE, not both")
        if path:
            try:
                with open(path, encoding="utf-8") as fh:
                    return fh.read()
            except OSError as exc:
                raise ConfigError(
                    f"{name}_FILE={path!r} cannot be read: {exc}"
                ) from None
        return value.replace("\\n", "\n") or None

    def secret_key(self, name: str, shared_store: bool | str | None) -> bytes:
        value = self._raw(name)
        hint = (
            f'generate one with: python -c "import secrets; '
            f'print(secrets.token_hex(32))" and set {name}'
        )
        if not value:
            if shared_store:
                # Several processes share the store: they must share the key too.
                raise ConfigError(
                    f"{name} is required with REDIS_URL or REDIS_MODE; {hint}"
                )
            return secrets.token_bytes(32)
        try:
            key = bytes.fromhex(value)
        except ValueError:
            raise ConfigError(f"{name} must be hex; {hint}") from None
        if len(key) < 32:
            raise ConfigError(
                f"{name} must be at least 32 bytes (64 hex digits); {hint}"
            )
        return key

    def previous_secret_keys(self, name: str, current: bytes) -> tuple[bytes, ...]:
        """A comma list of the secret keys that came before ``current``.

        Each must be valid as the current one would be: hex, 32 bytes or more.
        Values sealed under them still open (and are resealed on use).
        """
        keys = []
        for number, item in enumerate(self.items(name), 1):
            try:
                key = bytes.fromhex(item)
            except ValueError:
                raise ConfigError(
                    f"{name}: key #{number} is not hex; list the old "
                    "PROXY_SECRET_KEY values, comma-separated"
                ) from None
            if len(key) < 32:
                raise ConfigError(
                    f"{name}: key #{number} is shorter than 32 bytes (64 hex digits)"
                )
            if key != current and key not in keys:
                keys.append(key)
        return tuple(keys)

    def static_clients(self, name: str) -> tuple[StaticClient, ...]:
        path = self._raw(name)
        if not path:
            return ()
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{name}={path!r} is not a readable JSON file: {exc}"
            ) from None
        if not isinstance(data, list):
            raise ConfigError(f"{name}: the file must hold a JSON list of clients")
        clients = []
        for index, item in enumerate(data):
            where = f"{name}: client #{index}"
            if not isinstance(item, dict) or not isinstance(item.get("client_id"), str):
                raise ConfigError(f"{where} needs a string 'client_id'")
            uris = item.get("redirect_uris")
            if (
                not isinstance(uris, list)
                or not uris
                or not all(isinstance(u, str) for u in uris)
            ):
                raise ConfigError(f"{where} needs a non-empty list 'redirect_uris'")
            secret_hash = item.get("client_secret_sha256")
            if secret_hash is not None and not (
                isinstance(secret_hash, str)
                and re.fullmatch(r"[0-9a-f]{64}", secret_hash)
            ):
                raise ConfigError(
                    f"{where}: 'client_secret_sha256' must be 64 lowercase hex digits "
                    "(the SHA-256 of the secret)"
                )
            jwks, jwks_uri = _static_keys(item, where)
            if secret_hash and (jwks or jwks_uri):
                raise ConfigError(
                    f"{where}: give 'client_secret_sha256' or keys "
                    "('jwks' / 'jwks_uri'), not both"
                )
            if item.get("introspection") is True and not (
                secret_hash or jwks or jwks_uri
            ):
                raise ConfigError(
                    f"{where}: an introspection client needs 'client_secret_sha256'"
                    " or keys ('jwks' / 'jwks_uri')"
                )
            clients.append(
                StaticClient(
                    client_id=item["client_id"],
                    redirect_uris=tuple(uris),
                    client_name=str(item.get("client_name") or item["client_id"]),
                    client_secret_hash=secret_hash,
                    scope=item.get("scope"),
                    can_introspect=item.get("introspection") is True,
                    jwks=jwks,
                    jwks_uri=jwks_uri,
                )
            )
        return tuple(clients)


def _static_keys(
    item: dict[str, t.Any], where: str
) -> tuple[dict[str, t.Any] | None, str | None]:
    """A static client's private_key_jwt keys: inline `jwks` or a `jwks_uri`."""
    jwks, jwks_uri = item.get("jwks"), item.get("jwks_uri")
    if jwks is not None and jwks_uri is not None:
        raise ConfigError(f"{where}: give 'jwks' or 'jwks_uri', not both")
    if jwks is not None:
        try:
            client_assertion.parse_public_jwks(jwks)
        except client_assertion.InvalidJWKSError as exc:
            raise ConfigError(f"{where}: 'jwks': {exc}") from None
    if jwks_uri is not None and not (
        isinstance(jwks_uri, str) and jwks_uri.startswith("https://")
    ):
        raise ConfigError(f"{where}: 'jwks_uri' must be an https URL")
    return jwks, jwks_uri
