"""URLs a browser reads exactly as we do (RFC 3986 §3, checked against WHATWG URL).

A redirect URI is compared by us as a string but followed by a browser, which
parses it by the WHATWG URL standard. Where the two disagree, an attacker can
register a URI that we show and match as one host while the browser sends the
code to another: `https://evil.example\\.claude.ai/cb` is host
`evil.example\\.claude.ai` to Python's urlsplit and `evil.example` to a browser
(it reads `\\` as `/`). So we accept only the plain subset both agree on and
refuse everything else at registration:

- printable ASCII only, from RFC 3986's character set, `%` only before two hex
  digits (no `\\`, spaces, controls, bidi marks, non-ASCII or lone surrogates);
- a host that is a DNS name of valid labels, a canonical dotted-quad IPv4
  address, or a bracketed IPv6 address (WHATWG reads `0x7f.1` or `2130706433`
  as 127.0.0.1, and decodes `%` escapes in hosts);
- a decimal port from 1 to 65535, no userinfo.
"""

from __future__ import annotations

import ipaddress
import re

MAX_URL_LENGTH = 2000
MAX_HOST_LENGTH = 253
MAX_LABEL_LENGTH = 63

# RFC 3986 §2: unreserved, reserved and the percent sign (checked below).
_URI_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_PERCENT_ESCAPES = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_AUTHORITY = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>[0-9]*))?")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?", re.IGNORECASE)
_DOTTED_QUAD = re.compile(r"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")
# WHATWG: a host whose last label is numeric (or 0x...) is parsed as IPv4.
_NUMERIC_LABEL = re.compile(r"(?:0[xX][0-9A-Fa-f]*|[0-9]+)")


def is_plain_uri(uri: str) -> bool:
    """RFC 3986 characters only, and every `%` starts a valid escape."""
    return (
        0 < len(uri) <= MAX_URL_LENGTH
        and _URI_CHARACTERS.fullmatch(uri) is not None
        and _PERCENT_ESCAPES.search(uri) is None
    )


def split_authority(uri: str) -> tuple[str, str, str] | None:
    """(scheme, authority, rest) of `scheme://authority/rest`, else None."""
    scheme, sep, rest = uri.partition("://")
    if not sep or _SCHEME.fullmatch(scheme) is None:
        return None
    end = len(rest)
    for delimiter in "/?#":
        found = rest.find(delimiter)
        if found != -1:
            end = min(end, found)
    return scheme.lower(), rest[:end], rest[end:]


def is_valid_host(host: str) -> bool:
    """A DNS name, canonical dotted-quad IPv4, or bracketed IPv6 (not zoned)."""
    if host.startswith("["):
        if not host.endswith("]") or "%" in host:
            return False
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    if not host or len(host) > MAX_HOST_LENGTH:
        return False
    labels = host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        if _DOTTED_QUAD.fullmatch(host) is None:
            return False
        return all(int(part) <= 255 for part in labels)
    return all(
        len(label) <= MAX_LABEL_LENGTH and _LABEL.fullmatch(label) is not None
        for label in labels
    )


def is_browser_safe_url(uri: str, *, need_authority: bool) -> bool:
    """Does a WHATWG parser read `uri` as we do? (see the module docstring)

    ``need_authority``: http(s) URLs must have `//host`; private-use schemes
    (RFC 8252 §7.1) may be authority-less, like `com.example.app:/callback`.
    """
    if not is_plain_uri(uri):
        return False
    parts = split_authority(uri)
    if parts is None:
        scheme, colon, _ = uri.partition(":")
        return (
            not need_authority
            and bool(colon)
            and _SCHEME.fullmatch(scheme) is not None
            and not uri[len(scheme) + 1 :].startswith("//")
        )
    _, authority, _ = parts
    if "@" in authority:
        return False
    match = _AUTHORITY.fullmatch(authority)
    if match is None or not is_valid_host(match["host"]):
        return False
    port = match["port"]
    if port is None:
        return True
    return port.isdigit() and 0 < int(port) <= 65535 and not port.startswith("0")
