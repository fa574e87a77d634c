"""The catalog of real MCP clients: their CIMD URLs, redirect URIs and quirks.

Data, not code: `catalog.json` beside this module (or CLIENT_CATALOG_FILE)
lists ChatGPT, Claude, Cursor and the rest by a short name. The proxy uses it
to accept their registrations whole, to name them on the consent page, to let
TRUSTED_CLIENTS skip consent for verified ones, and to fall back on a pinned
copy of a vendor's metadata document when the live fetch fails. A bad file
stops the start with a :class:`ConfigError` naming the file and the problem.

Identity has two strengths. A CIMD client (its id is the URL its document was
fetched from) or a static client (named by the operator) is *verified*. A DCR
client can claim any name and register any redirect URI, so it only *looks
like* a catalogued client, and only when every redirect URI it registered fits
that client's patterns.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.resources
import json
import re
import typing as t
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from proxy.config.env import ConfigError

if t.TYPE_CHECKING:
    from proxy.config.settings import Settings
    from proxy.store.records import ClientRecord

#: The `format` this module reads; a file in another format is refused.
CATALOG_FORMAT = 1

MAX_CATALOG_BYTES = 1024 * 1024

SHIPPED_CATALOG = "proxy/clients/catalog.json"

REGISTRATION_WAYS = ("cimd", "dcr")

#: The DCR methods a quirk may name: those a registration without keys can get.
TOKEN_ENDPOINT_AUTH_METHODS = ("none", "client_secret_post", "client_secret_basic")

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_PATTERN = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://"
    r"(?P<host>\*|\[[0-9a-f:.]+\]|[a-z0-9._-]+)"
    r"(?::(?P<port>\*|[0-9]{1,5}(?:-[0-9]{1,5})?))?"
    r"(?P<path>/[^?#\s]*)?"
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_QUIRKS = frozenset({"loopback_any_host", "token_endpoint_auth_methods", "notes"})
_ENTRY_FIELDS = frozenset(
    {
        "name",
        "display_name",
        "registers_by",
        "cimd_urls",
        "redirect_uris",
        "quirks",
        "pinned_document",
    }
)


class _InvalidCatalogError(Exception):
    """A problem in the file: where it is, and what is wrong."""


@dataclass(frozen=True, slots=True)
class UriPattern:
    """A catalogued URL: exact, or with a wildcard host, port or path segment."""

    text: str
    scheme: str
    #: None: any host.
    host: str | None
    #: None: no port. (low, high): a port in that range.
    ports: tuple[int, int] | None
    #: True: any port, or none.
    any_port: bool
    path: re.Pattern[str]
    path_text: str

    @property
    def exact(self) -> bool:
        """No wildcard: only `text` itself fits."""
        return "*" not in self.text and (
            self.ports is None or self.ports[0] == self.ports[1]
        )

    @classmethod
    def parse(cls, text: t.Any) -> UriPattern:
        if not isinstance(text, str):
            raise _InvalidCatalogError("a URL pattern must be a string")
        found = _PATTERN.fullmatch(text)
        if found is None:
            raise _InvalidCatalogError(
                f"{text!r} is not a URL pattern (scheme://host[:port]/path, "
                "lower case, no query or fragment)"
            )
        port = found["port"]
        ports = None
        if port and port != "*":
            low, _, high = port.partition("-")
            ports = (int(low), int(high or low))
            if not 1 <= ports[0] <= ports[1] <= 65535:
                raise _InvalidCatalogError(f"{text!r}: the port must be within 1-65535")
        host = found["host"]
        segments = (found["path"] or "/").split("*")
        return cls(
            text=text,
            scheme=found["scheme"],
            host=None if host == "*" else host.strip("[]"),
            ports=ports,
            any_port=port == "*",
            path=re.compile("[^/]+".join(re.escape(s) for s in segments)),
            path_text=found["path"] or "/",
        )

    def example(self) -> str:
        """A URI that fits, wildcards filled in (for `python -m proxy check`)."""
        host = self.host or "client.example"
        if ":" in host:
            host = f"[{host}]"
        port = f":{self.ports[0]}" if self.ports else ":33418" if self.any_port else ""
        return f"{self.scheme}://{host}{port}{self.path_text.replace('*', 'x')}"

    def matches(self, uri: str) -> bool:
        """Does `uri` fit? Scheme, host, port and path; never a query or fragment."""
        if "?" in uri or "#" in uri:
            return False
        try:
            parts = urlsplit(uri)
            port = parts.port
        except ValueError:
            return False
        host = parts.hostname or ""
        if parts.scheme.lower() != self.scheme or not host:
            return False
        if parts.username is not None or parts.password is not None:
            return False
        if self.host is not None and host != self.host:
            return False
        if not self._port_fits(port):
            return False
        return self.path.fullmatch(parts.path or "/") is not None

    def _port_fits(self, port: int | None) -> bool:
        if self.any_port:
            return True
        if self.ports is None:
            return port is None
        return port is not None and self.ports[0] <= port <= self.ports[1]


@dataclass(frozen=True, slots=True)
class Quirks:
    """What a client does differently, as data the proxy acts on."""

    #: It registers one loopback host and authorizes with another (Codex:
    #: `127.0.0.1`, then `localhost`); both are this machine.
    loopback_any_host: bool = False
    #: The methods it can use at the token endpoint after DCR. When its
    #: registration names none, the first is given instead of RFC 7591's
    #: client_secret_basic
    #: (Open WebUI refuses a response naming any but none/client_secret_post).
    token_endpoint_auth_methods: tuple[str, ...] = ()
    #: Everything else worth knowing, for people.
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PinnedDocument:
    """A fallback copy of a vendor's metadata document, with where it came from."""

    url: str
    reconstructed_on: str
    source: str
    document: dict[str, t.Any]


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    name: str
    display_name: str
    registers_by: tuple[str, ...]
    cimd_urls: tuple[UriPattern, ...]
    redirect_uris: tuple[UriPattern, ...]
    quirks: Quirks = Quirks()
    pinned: PinnedDocument | None = None

    def has_cimd_url(self, url: str, *, exact: bool) -> bool:
        return any(p.exact == exact and p.matches(url) for p in self.cimd_urls)

    def fits_redirect_uris(self, uris: Iterable[str]) -> bool:
        """Every URI fits one of this client's patterns (and there is one)."""
        uris = list(uris)
        return bool(uris) and all(
            any(p.matches(uri) for p in self.redirect_uris) for uri in uris
        )


#: How many distinct redirect-URI sets the catalog remembers its answer for.
IDENTIFY_CACHE_SIZE = 4096


class Catalog:
    """The clients of one catalog file, looked up by name, URL or redirect URIs."""

    def __init__(
        self, entries: Iterable[CatalogEntry], *, source: str, updated: str
    ) -> None:
        self.entries = tuple(entries)
        self.source = source
        self.updated = updated
        self._by_name = {entry.name: entry for entry in self.entries}
        #: identify_redirect_uris() answers, remembered: every authorize and
        #: consent asks it, and the catalog never changes once loaded.
        self._by_redirect_uris: dict[tuple[str, ...], CatalogEntry | None] = {}
        self._pinned = {
            entry.pinned.url: entry.pinned for entry in self.entries if entry.pinned
        }
        #: Non-web redirect URIs catalogued exactly (Cursor's `cursor://...`):
        #: registering one needs no ALLOWED_REDIRECT_SCHEMES.
        self.private_use_redirect_uris = frozenset(
            pattern.text
            for entry in self.entries
            for pattern in entry.redirect_uris
            if pattern.exact and pattern.scheme not in ("http", "https")
        )

    def get(self, name: str) -> CatalogEntry | None:
        return self._by_name.get(name)

    def identify(self, client: ClientRecord) -> CatalogEntry | None:
        """Which catalogued client this is, or looks like; None if unknown.

        A URL client id (CIMD) is identified by its URL alone; any other
        client by its redirect URIs, which says nothing about who it is (see
        :meth:`skips_consent`).
        """
        if client.client_id.startswith("https://"):
            return self.identify_url(client.client_id)
        return self.identify_redirect_uris(client.redirect_uris)

    def identify_url(self, url: str) -> CatalogEntry | None:
        """The client whose CIMD URL this is: an exact URL before a pattern.

        `https://chatgpt.com/oauth/codex/client.json` is Codex's exact URL and
        also fits ChatGPT's per-app pattern; the exact one wins.
        """
        for exact in (True, False):
            found = [e for e in self.entries if e.has_cimd_url(url, exact=exact)]
            if found:
                return found[0] if len(found) == 1 else None
        return None

    def identify_redirect_uris(self, uris: Iterable[str]) -> CatalogEntry | None:
        """The one client all of these redirect URIs fit; None if none or several.

        Claude Code and opencode register the same loopback callbacks: such a
        registration could be either, so it is neither.
        """
        uris = tuple(uris)
        if uris in self._by_redirect_uris:
            return self._by_redirect_uris[uris]
        found = [e for e in self.entries if e.fits_redirect_uris(uris)]
        entry = found[0] if len(found) == 1 else None
        if len(self._by_redirect_uris) >= IDENTIFY_CACHE_SIZE:
            self._by_redirect_uris.clear()  # registrations are many, a reset is rare
        self._by_redirect_uris[uris] = entry
        return entry

    def skips_consent(
        self, client: ClientRecord, *, verified: bool, trusted: Iterable[str]
    ) -> bool:
        """May this client skip the consent page (TRUSTED_CLIENTS)?

        Only with a verified identity: a CIMD URL or a static client. A DCR
        registration can copy ChatGPT's redirect URIs, and consent is the
        confused-deputy defence (MCP 2026-07-28: "a proxy with one static
        upstream client MUST obtain consent per client").
        """
        if not verified:
            return False
        entry = self.identify(client)
        return entry is not None and entry.name in set(trusted)

    def pinned_document(self, url: str) -> dict[str, t.Any] | None:
        """A copy of the pinned document at this exact URL, for a failed fetch."""
        pinned = self._pinned.get(url)
        return copy.deepcopy(pinned.document) if pinned else None

    def pinned(self, url: str) -> PinnedDocument | None:
        return self._pinned.get(url)


def load(settings: Settings) -> Catalog:
    """The catalog these settings name, checked against TRUSTED_CLIENTS.

    Raises :class:`ConfigError` naming the file and what is wrong with it.
    """
    path = settings.client_catalog_file
    if path:
        source = f"CLIENT_CATALOG_FILE={path}"
        try:
            with open(path, "rb") as file:
                raw = file.read(MAX_CATALOG_BYTES + 1)
        except OSError as exc:
            raise ConfigError(
                f"{source}: cannot be read ({exc.strerror or exc}); point it at "
                f"a catalog file like {SHIPPED_CATALOG}, or unset it"
            ) from None
        catalog = parse(raw, source=source)
    else:
        catalog = _shipped()
    unknown = [name for name in settings.trusted_clients if catalog.get(name) is None]
    if unknown:
        known = ", ".join(entry.name for entry in catalog.entries)
        raise ConfigError(
            f"TRUSTED_CLIENTS: {unknown[0]!r} is not in the client catalog "
            f"({catalog.source}); known names: {known}"
        )
    return catalog


@functools.cache
def _shipped() -> Catalog:
    raw = importlib.resources.files("proxy.clients").joinpath("catalog.json")
    return parse(raw.read_bytes(), source=SHIPPED_CATALOG)


def parse(raw: bytes, *, source: str) -> Catalog:
    """Read a catalog file's bytes; a ConfigError names `source` and the problem."""
    if len(raw) > MAX_CATALOG_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_CATALOG_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc})") from None
    where = "the file"
    try:
        if not isinstance(data, dict):
            raise _InvalidCatalogError("must be a JSON object")
        if data.get("format") != CATALOG_FORMAT:
            raise _InvalidCatalogError(
                f"'format' must be {CATALOG_FORMAT} (this proxy reads format "
                f"{CATALOG_FORMAT}), not {data.get('format')!r}"
            )
        updated = data.get("updated")
        if not isinstance(updated, str) or not _DATE.fullmatch(updated):
            raise _InvalidCatalogError("'updated' must be a date, e.g. \"2026-12-06\"")
        clients = data.get("clients")
        if not isinstance(clients, list) or not clients:
            raise _InvalidCatalogError("'clients' must be a non-empty list")
        entries: list[CatalogEntry] = []
        for index, item in enumerate(clients):
            where = f"clients[{index}]"
            entry = _entry(item)
            where = f"clients[{index}] ({entry.name})"
            if any(e.name == entry.name for e in entries):
                raise _InvalidCatalogError(f"the name {entry.name!r} is used twice")
            entries.append(entry)
    except _InvalidCatalogError as exc:
        raise ConfigError(f"{source}: {where}: {exc}") from None
    return Catalog(entries, source=source, updated=updated)


def _entry(item: t.Any) -> CatalogEntry:
    if not isinstance(item, dict):
        raise _InvalidCatalogError("each client must be a JSON object")
    unknown = set(item) - _ENTRY_FIELDS
    if unknown:
        raise _InvalidCatalogError(f"unknown field {sorted(unknown)[0]!r}")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _InvalidCatalogError(
            "'name' must be lower-case letters, digits and '-' (e.g. claude-code)"
        )
    display_name = item.get("display_name")
    if not isinstance(display_name, str) or not display_name.strip():
        raise _InvalidCatalogError("'display_name' must be a non-empty string")
    registers_by = _strings(item, "registers_by")
    if not registers_by or not set(registers_by) <= set(REGISTRATION_WAYS):
        raise _InvalidCatalogError("'registers_by' must list cimd and/or dcr")
    cimd_urls = tuple(UriPattern.parse(p) for p in _strings(item, "cimd_urls"))
    if any(p.scheme != "https" or p.host is None for p in cimd_urls):
        raise _InvalidCatalogError("'cimd_urls' must be https URLs on a named host")
    if "cimd" in registers_by and not cimd_urls:
        raise _InvalidCatalogError("a client registering by cimd needs 'cimd_urls'")
    redirect_uris = tuple(UriPattern.parse(p) for p in _strings(item, "redirect_uris"))
    if "dcr" in registers_by and not redirect_uris:
        raise _InvalidCatalogError("a client registering by dcr needs 'redirect_uris'")
    entry = CatalogEntry(
        name=name,
        display_name=display_name,
        registers_by=registers_by,
        cimd_urls=cimd_urls,
        redirect_uris=redirect_uris,
        quirks=_quirks(item.get("quirks", {})),
        pinned=None,
    )
    if item.get("pinned_document") is not None:
        pinned = _pinned(item["pinned_document"])
        if not entry.has_cimd_url(pinned.url, exact=True):
            raise _InvalidCatalogError(
                f"pinned_document: {pinned.url!r} is not one of its exact cimd_urls"
            )
        return dataclasses.replace(entry, pinned=pinned)
    return entry


def _strings(item: dict[str, t.Any], name: str) -> tuple[str, ...]:
    value = item.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _InvalidCatalogError(f"'{name}' must be a list of strings")
    return tuple(value)


def _quirks(value: t.Any) -> Quirks:
    if not isinstance(value, dict):
        raise _InvalidCatalogError("'quirks' must be a JSON object")
    unknown = set(value) - _QUIRKS
    if unknown:
        known = ", ".join(sorted(_QUIRKS))
        raise _InvalidCatalogError(
            f"unknown quirk {sorted(unknown)[0]!r} (known: {known})"
        )
    loopback_any_host = value.get("loopback_any_host", False)
    if not isinstance(loopback_any_host, bool):
        raise _InvalidCatalogError("quirk 'loopback_any_host' must be true or false")
    methods = _strings(value, "token_endpoint_auth_methods")
    if not set(methods) <= set(TOKEN_ENDPOINT_AUTH_METHODS):
        raise _InvalidCatalogError(
            "quirk 'token_endpoint_auth_methods' may list only "
            + ", ".join(TOKEN_ENDPOINT_AUTH_METHODS)
        )
    return Quirks(
        loopback_any_host=loopback_any_host,
        token_endpoint_auth_methods=methods,
        notes=_strings(value, "notes"),
    )


def _pinned(value: t.Any) -> PinnedDocument:
    if not isinstance(value, dict):
        raise _InvalidCatalogError("'pinned_document' must be a JSON object")
    url, document = value.get("url"), value.get("document")
    reconstructed_on, source = value.get("reconstructed_on"), value.get("source")
    if not isinstance(reconstructed_on, str) or not _DATE.fullmatch(reconstructed_on):
        raise _InvalidCatalogError("pinned_document: 'reconstructed_on' must be a date")
    if not isinstance(source, str) or not source:
        raise _InvalidCatalogError(
            "pinned_document: 'source' must say where the copy came from"
        )
    if not isinstance(url, str) or not isinstance(document, dict):
        raise _InvalidCatalogError(
            "pinned_document needs 'url' and a 'document' object"
        )
    # CIMD: the document's client_id equals its URL byte for byte.
    if document.get("client_id") != url:
        raise _InvalidCatalogError(
            "pinned_document: the document's client_id must equal 'url'"
        )
    if not isinstance(document.get("redirect_uris"), list):
        raise _InvalidCatalogError(
            "pinned_document: the document needs 'redirect_uris'"
        )
    return PinnedDocument(
        url=url, reconstructed_on=reconstructed_on, source=source, document=document
    )
