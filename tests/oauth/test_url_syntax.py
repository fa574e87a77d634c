"""proxy/oauth/url_syntax.py: only URLs a WHATWG parser reads as we do."""

from __future__ import annotations

import pytest

from proxy.oauth.url_syntax import is_browser_safe_url
from proxy.oauth.url_syntax import is_valid_host

# What real MCP clients register (shared reference, clients.md).
REAL_CLIENT_URIS = [
    "https://claude.ai/api/mcp/auth_callback",
    "https://chatgpt.com/connector_platform_oauth_redirect",
    "https://vscode.dev/redirect",
    "http://127.0.0.1:33418/",
    "http://localhost:6274/oauth/callback",
    "http://localhost:6274/oauth/callback/debug",
    "http://[::1]:8080/callback",
    "cursor://anysphere.cursor-mcp/oauth/callback",
    "https://grok.com/oauth/callback/",
    "http://127.0.0.1:1455/auth/callback?x=1&y=%20z",
]


@pytest.mark.parametrize("uri", REAL_CLIENT_URIS)
def test_real_client_redirect_uris_are_accepted(uri: str) -> None:
    assert is_browser_safe_url(uri, need_authority=True)


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("https://evil.example\\.claude.ai/cb", "a browser reads \\ as /"),
        ("https://evil.example/\\cb", "backslash anywhere"),
        ("https://claude.ai/cb\t", "control character"),
        ("https://claude.ai/c b", "space"),
        ("https://claude.ai/\u202ebc", "bidi override"),
        ("https://claude.ai/\ud800", "lone surrogate"),
        ("https://cl\u0430ude.ai/cb", "non-ASCII host (Cyrillic a)"),
        ("https://claude.ai/%zz", "broken percent escape"),
        ("https://cla%75de.ai/cb", "percent escape in the host"),
        ("https://a..b/cb", "empty label"),
        ("https://.claude.ai/cb", "empty first label"),
        ("https://" + "a" * 64 + ".com/cb", "label over 63 characters"),
        ("https://-a.com/cb", "label starting with a hyphen"),
        ("https://a_b.com/cb", "underscore in a host"),
        ("https://0x7f.1/cb", "hex IPv4 that WHATWG reads as 127.0.0.1"),
        ("https://2130706433/cb", "decimal IPv4"),
        ("https://127.1/cb", "short IPv4"),
        ("https://010.0.0.1/cb", "octal-looking IPv4"),
        ("https://256.0.0.1/cb", "IPv4 part over 255"),
        ("https://example.123/cb", "numeric last label"),
        ("https://[::1%25eth0]/cb", "zoned IPv6"),
        ("https://[zz::1]/cb", "invalid IPv6"),
        ("https://user@claude.ai/cb", "userinfo"),
        ("https://claude.ai:0/cb", "port 0"),
        ("https://claude.ai:65536/cb", "port too large"),
        ("https://claude.ai:08/cb", "port with a leading zero"),
        ("https:///cb", "empty host"),
        ("https:/claude.ai/cb", "http(s) without an authority"),
        ("", "empty"),
        ("https://a.com/" + "a" * 2000, "too long"),
    ],
)
def test_uris_a_browser_could_read_differently_are_refused(uri: str, why: str) -> None:
    assert not is_browser_safe_url(uri, need_authority=True), why


def test_private_use_schemes_may_have_no_authority() -> None:
    """RFC 8252 §7.1: `com.example.app:/oauth2redirect` is a native app's URI."""
    assert is_browser_safe_url("com.example.app:/oauth2redirect", need_authority=False)
    assert not is_browser_safe_url("com.example.app:/cb", need_authority=True)
    assert not is_browser_safe_url("1app:/cb", need_authority=False)


@pytest.mark.parametrize(
    ("host", "valid"),
    [
        ("claude.ai", True),
        ("127.0.0.1", True),
        ("[2001:db8::1]", True),
        ("xn--bcher-kva.example", True),
        ("a" * 63 + ".com", True),
        (".".join(["a" * 63] * 4), False),  # 255 characters: over 253
        ("", False),
        ("a.", False),
    ],
)
def test_host_rules(host: str, valid: bool) -> None:
    assert is_valid_host(host) is valid
