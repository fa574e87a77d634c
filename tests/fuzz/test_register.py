"""Fuzz POST /oauth2/register: valid bodies with one field made odd, raw bodies."""

from __future__ import annotations

import json
import typing as t

from hypothesis import given
from hypothesis import strategies as st

from .properties import Fuzzer
from .strategies import odd_bytes
from .strategies import odd_content_type
from .strategies import odd_json
from .strategies import odd_method
from .strategies import odd_text
from .strategies import odd_url

VALID: dict[str, t.Any] = {
    "redirect_uris": ["http://127.0.0.1:5555/callback"],
    "token_endpoint_auth_method": "none",
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "client_name": "Fuzz client",
    "client_uri": "https://example.com",
    "logo_uri": "https://example.com/logo.png",
    "scope": "mcp",
    "software_id": "fuzz",
    "software_version": "1.0",
    "application_type": "native",
}

_FIELDS = sorted(VALID) + ["tos_uri", "policy_uri", "jwks", "contacts", "client_id"]


def _field_value(name: str) -> st.SearchStrategy[t.Any]:
    if name.endswith(("_uri", "_uris")):
        url = st.one_of(odd_url, odd_json)
        return st.one_of(url, st.lists(url, max_size=25))
    return odd_json


@st.composite
def registration(draw: st.DrawFn) -> t.Any:
    """The valid body with up to three fields replaced, dropped or added."""
    body = dict(VALID)
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.one_of(st.sampled_from(_FIELDS), odd_text))
        if draw(st.integers(0, 4)) == 0:
            body.pop(name, None)
        else:
            body[name] = draw(_field_value(name))
    return body


@given(body=registration())
def test_registration_fields(fuzzer: Fuzzer, body: t.Any) -> None:
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    response = fuzzer.send(
        "POST", "/oauth2/register", data=raw, content_type="application/json"
    )
    if response.status_code == 201:
        client_id = response.get_json()["client_id"]
        assert client_id.startswith("mcp_")
        # Keep the store small: every request snapshots all of it.
        fuzzer.redis.delete(fuzzer.prefix + "client:" + client_id)


@given(
    method=odd_method,
    content_type=odd_content_type,
    body=st.one_of(odd_bytes, odd_json.map(lambda v: json.dumps(v).encode())),
)
def test_registration_bodies(
    fuzzer: Fuzzer, method: str, content_type: str | None, body: bytes
) -> None:
    kwargs: dict[str, t.Any] = {"data": body}
    if content_type is not None:
        kwargs["content_type"] = content_type
    fuzzer.send(method, "/oauth2/register", **kwargs)
