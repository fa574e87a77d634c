"""proxy/oauth/redirect_uris.py: registration policy and matching (OAuth 2.1 §2.3)."""

from __future__ import annotations

import pytest

from proxy.oauth import redirect_uris
from proxy.oauth.redirect_uris import is_allowed_redirect_uri
from proxy.oauth.redirect_uris import matches
from proxy.oauth.redirect_uris import resolve

NO_SCHEMES: frozenset[str] = frozenset()


# -- registration policy ---------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "https://a.example/cb",
        "https://a.example/cb?x=1",
        "https://a.example:8443/cb",
        "http://127.0.0.1:9/cb",
        "http://127.0.0.1/cb",
        "http://localhost:8787/callback",
        "http://localhost/callback",
        "http://[::1]:33418/cb",
        "http://[::1]/cb",
        "http://127.0.0.1:33418",
        "http://127.0.0.1:33418/",
    ],
)
def test_https_and_loopback_http_are_allowed(uri: str) -> None:
    """DCR-8 / SEC-1: https, or http on 127.0.0.1, [::1] or localhost."""
    assert is_allowed_redirect_uri(uri, NO_SCHEMES)


@pytest.mark.parametrize(
    "uri",
    [
        "http://evil.example/cb",
        "http://localhost.evil.example/cb",
        "http://127.0.0.1.nip.io/cb",
        "http://10.0.0.5/cb",
        "http://192.168.1.1/cb",
    ],
)
def test_http_on_a_non_loopback_host_is_refused(uri: str) -> None:
    """DCR-8 / SEC-1: plain http only on a loopback host."""
    assert not is_allowed_redirect_uri(uri, NO_SCHEMES)


@pytest.mark.parametrize(
    "uri",
    [
        "https://a.example/cb#x",
        "https://a.example/cb#",
        "http://127.0.0.1:9/cb#frag",
    ],
)
def test_fragment_is_refused(uri: str) -> None:
    """DCR-8: a redirect URI has no fragment."""
    assert not is_allowed_redirect_uri(uri, NO_SCHEMES)


@pytest.mark.parametrize(
    "uri",
    [
        "/cb",
        "cb",
        "//a.example/cb",
        "",
        "https:///cb",
        "https://",
        "https://user:pw@a.example/cb",
        "https://user@a.example/cb",
        "http://127.0.0.1:notaport/cb",
        "http://127.0.0.1:99999/cb",
        "https://a.example/c b",
        "https://a.example/cb\n",
        "https://a.example/" + "x" * redirect_uris.MAX_REDIRECT_URI_LENGTH,
    ],
)
def test_relative_malformed_or_credentialed_uris_are_refused(uri: str) -> None:
    """DCR-8: every redirect URI is absolute and well-formed."""
    assert not is_allowed_redirect_uri(uri, NO_SCHEMES)


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "vbscript:msgbox(1)",
        "blob:https://a.example/uuid",
        "about:blank",
    ],
)
def test_dangerous_schemes_are_always_refused(uri: str) -> None:
    """DCR-9: javascript:, data:, file:, vbscript: are never allowed."""
    allow_all = frozenset({"javascript", "data", "file", "vbscript", "blob", "about"})
    assert not is_allowed_redirect_uri(uri, NO_SCHEMES)
    assert not is_allowed_redirect_uri(uri, allow_all)


def test_private_use_scheme_needs_the_allowlist() -> None:
    """DCR-9: reverse-DNS private-use schemes only when allowlisted."""
    uri = "com.example.app:/oauth/callback"
    assert not is_allowed_redirect_uri(uri, NO_SCHEMES)
    assert is_allowed_redirect_uri(uri, frozenset({"com.example.app"}))
    assert not is_allowed_redirect_uri(uri, frozenset({"com.example.other"}))


def test_dotless_private_use_scheme_only_when_the_operator_allowlists_it() -> None:
    """DCR-9 / J1: Cursor's `cursor://` is refused unless explicitly allowlisted."""
    uri = "cursor://anysphere.cursor-mcp/oauth/callback"
    assert not is_allowed_redirect_uri(uri, NO_SCHEMES)
    assert not is_allowed_redirect_uri(uri, frozenset({"com.example.app"}))
    assert is_allowed_redirect_uri(uri, frozenset({"cursor"}))


@pytest.mark.parametrize(
    ("uri", "loopback"),
    [
        ("http://127.0.0.1:5/cb", True),
        ("http://localhost/cb", True),
        ("http://[::1]:5/cb", True),
        ("https://127.0.0.1/cb", False),
        ("http://a.example/cb", False),
        ("com.example.app:/cb", False),
    ],
)
def test_is_loopback_uri(uri: str, loopback: bool) -> None:
    assert redirect_uris.is_loopback_uri(uri) is loopback


# -- matching --------------------------------------------------------------------------


def test_exact_string_matches() -> None:
    """AUTHZ-2: simple string comparison."""
    assert matches("https://a.example/cb", "https://a.example/cb")


@pytest.mark.parametrize(
    "requested",
    [
        "https://a.example/cb/",
        "https://a.example/cb?x=1",
        "https://A.example/cb",
        "https://a.example/x/../cb",
        "https://a.example/cb/more",
        "https://a.example/c",
        "https://a.example:443/cb",
        "http://a.example/cb",
        "https://a.example/cb#x",
        "https://a.example/CB",
        "https://a.example/cb%2F",
    ],
)
def test_anything_but_the_exact_string_is_refused(requested: str) -> None:
    """AUTHZ-2: no prefix match, wildcard or normalisation."""
    assert not matches(requested, "https://a.example/cb")
    assert resolve(requested, ("https://a.example/cb",)) is None


def test_non_loopback_root_trailing_slash_is_significant() -> None:
    """AUTHZ-2 / J3: the slash exception is for loopback URIs only."""
    assert not matches("https://a.example/", "https://a.example")
    assert not matches("https://a.example", "https://a.example/")


@pytest.mark.parametrize(
    ("requested", "registered"),
    [
        ("http://127.0.0.1:53123/callback", "http://127.0.0.1/callback"),
        ("http://127.0.0.1/callback", "http://127.0.0.1:8080/callback"),
        ("http://127.0.0.1:1/callback", "http://127.0.0.1:2/callback"),
        ("http://[::1]:53123/callback", "http://[::1]/callback"),
        ("http://[::1]:53123/callback", "http://[::1]:1/callback"),
        ("http://localhost:3118/callback", "http://localhost/callback"),
        ("http://localhost:8787/callback", "http://localhost:1234/callback"),
        ("http://127.0.0.1:5/cb?x=1", "http://127.0.0.1/cb?x=1"),
    ],
)
def test_loopback_port_is_ignored(requested: str, registered: str) -> None:
    """AUTHZ-5: loopback port-agnostic for 127.0.0.1, [::1] and localhost."""
    assert matches(requested, registered)
    assert resolve(requested, (registered,)) == requested


@pytest.mark.parametrize(
    ("requested", "registered"),
    [
        ("http://127.0.0.1:53123/other", "http://127.0.0.1/callback"),
        ("http://127.0.0.1:53123/callback/", "http://127.0.0.1/callback"),
        ("http://127.0.0.1:53123/callback?x=1", "http://127.0.0.1/callback"),
        ("http://127.0.0.1:53123/callback", "http://127.0.0.1/callback?x=1"),
        ("http://127.0.0.1:53123/callback#f", "http://127.0.0.1/callback"),
        ("http://localhost:53123/callback", "http://127.0.0.1/callback"),
        ("http://127.0.0.1:53123/callback", "http://localhost/callback"),
        ("http://[::1]:53123/callback", "http://127.0.0.1/callback"),
        ("https://127.0.0.1:53123/callback", "http://127.0.0.1/callback"),
        ("http://127.0.0.1:53123/callback", "https://127.0.0.1/callback"),
        ("http://127.0.0.2:53123/callback", "http://127.0.0.1/callback"),
        ("http://evil@127.0.0.1:53123/callback", "http://127.0.0.1/callback"),
        ("http://127.0.0.1:port/callback", "http://127.0.0.1/callback"),
    ],
)
def test_loopback_scheme_host_path_and_query_still_match_exactly(
    requested: str, registered: str
) -> None:
    """AUTHZ-5: only the port is ignored for loopback."""
    assert not matches(requested, registered)
    assert resolve(requested, (registered,)) is None


@pytest.mark.parametrize(
    ("requested", "registered"),
    [
        ("http://127.0.0.1:33418", "http://127.0.0.1:33418/"),
        ("http://127.0.0.1:33418/", "http://127.0.0.1:33418"),
        ("http://127.0.0.1:5000/", "http://127.0.0.1"),
        ("http://localhost:1", "http://localhost/"),
        ("http://[::1]:9/", "http://[::1]"),
    ],
)
def test_loopback_root_with_or_without_trailing_slash(
    requested: str, registered: str
) -> None:
    """AUTHZ-5 / J3: for loopback roots an empty path equals `/` (VS Code)."""
    assert matches(requested, registered)


def test_port_agnostic_matching_does_not_apply_to_https_hosts() -> None:
    """AUTHZ-2: non-loopback URIs never get the port exception."""
    assert not matches("https://a.example:8443/cb", "https://a.example/cb")
    assert not matches("https://localhost:8443/cb", "https://localhost/cb")


def test_omitted_redirect_uri_with_one_registered_uses_it() -> None:
    """AUTHZ-4: omission is allowed when exactly one URI is registered."""
    assert resolve(None, ("https://a.example/cb",)) == "https://a.example/cb"
    assert resolve("", ("https://a.example/cb",)) == "https://a.example/cb"


def test_omitted_redirect_uri_with_two_registered_is_refused() -> None:
    """AUTHZ-4: with two registered URIs, redirect_uri is required."""
    registered = ("https://a.example/cb", "https://a.example/cb2")
    assert resolve(None, registered) is None
    assert resolve("", registered) is None


def test_resolve_picks_any_registered_match() -> None:
    registered = ("https://a.example/cb", "http://127.0.0.1/cb")
    assert resolve("https://a.example/cb", registered) == "https://a.example/cb"
    assert resolve("http://127.0.0.1:7/cb", registered) == "http://127.0.0.1:7/cb"
    assert resolve("https://b.example/cb", registered) is None


def test_resolve_with_nothing_registered_is_refused() -> None:
    assert resolve("https://a.example/cb", ()) is None
    assert resolve(None, ()) is None


# -- what the client catalog lifts (proxy/clients/catalog.json) -------------------

CURSOR = "cursor://anysphere.cursor-mcp/oauth/callback"


def test_a_catalogued_private_use_uri_needs_no_allowlisted_scheme() -> None:
    assert is_allowed_redirect_uri(CURSOR, NO_SCHEMES, frozenset({CURSOR}))
    # Only that URI: the scheme itself stays closed.
    other = "cursor://anysphere.cursor-mcp/oauth/other"
    assert not is_allowed_redirect_uri(other, NO_SCHEMES, frozenset({CURSOR}))


def test_a_catalogued_uri_still_passes_every_safety_rule() -> None:
    bad = "javascript://anysphere.cursor-mcp/oauth/callback"
    assert not is_allowed_redirect_uri(bad, NO_SCHEMES, frozenset({bad}))


@pytest.mark.parametrize(
    ("requested", "any_host", "fits"),
    [
        ("http://localhost:47113/callback/abc", False, False),
        ("http://localhost:47113/callback/abc", True, True),
        ("http://localhost:5000/callback/abc", True, True),
        ("http://[::1]:47113/callback/abc", True, True),
        ("http://localhost:47113/callback/other", True, False),
        ("https://localhost:47113/callback/abc", True, False),
        ("http://evil.example:47113/callback/abc", True, False),
    ],
)
def test_any_loopback_host_lets_only_the_host_differ(
    requested: str, any_host: bool, fits: bool
) -> None:
    registered = "http://127.0.0.1:47113/callback/abc"
    assert matches(requested, registered, any_loopback_host=any_host) is fits
    assert (
        resolve(requested, (registered,), any_loopback_host=any_host) is not None
    ) is fits
