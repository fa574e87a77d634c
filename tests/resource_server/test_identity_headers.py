"""proxy/resource_server/identity_headers.py: the identity a backend receives."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from proxy.resource_server.identity_headers import header_value


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("alice@example.com", "alice@example.com"),
        ("github|12345", "github|12345"),
        ("mcp:read mcp:write", "mcp:read mcp:write"),
        ("用户@example.com", "%E7%94%A8%E6%88%B7@example.com"),
        ("josé@example.com", "jos%C3%A9@example.com"),
        ("a%40b@example.com", "a%2540b@example.com"),
        ("evil\r\nX-Injected: 1", "evil%0D%0AX-Injected: 1"),
        # HTTP parsers strip a value's outer spaces: " admin" is not "admin".
        (" admin ", "%20admin%20"),
        ("  ", "%20%20"),
    ],
)
def test_a_header_value_is_printable_ascii_and_decodes_back(
    value: str, sent: str
) -> None:
    """Printable ASCII as is; '%', control characters and the rest
    percent-encoded, so no value can break or bend a header."""
    assert header_value(value) == sent
    assert sent.isascii()
    assert all(0x20 <= ord(c) < 0x7F for c in sent)
    assert unquote(sent) == value
