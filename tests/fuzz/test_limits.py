"""Fuzz the abuse limits themselves (the only fuzz module with them on): odd
X-Forwarded-For chains and presented client ids become Redis key parts."""

from __future__ import annotations

import typing as t

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy import create_app
from proxy.config.limits import Limits
from proxy.config.limits import Rate
from proxy.config.settings import Settings

from .properties import Fuzzer
from .strategies import encode_pairs
from .strategies import odd_basic
from .strategies import odd_text

#: Generous enough that no example is refused for its rate: a 429 would hide
#: what the request does after the check.
_PLENTY = Rate(1_000_000, 60)

_HOPS = [
    "1.2.3.4",
    "::1",
    "[::1]",
    "10.0.0.1:443",
    "unknown",
    "",
    " ",
    "_hidden",
    "1.2.3.4%eth0",
    "fe80::1%eth0",
    "999.1.1.1",
    "a" * 2000,
    "{x} {y}",
    "*",
]


@pytest.fixture
def app(fuzz_settings: Settings, store_client: t.Any) -> t.Any:
    limits = Limits(
        per_ip={name: _PLENTY for name in Limits().per_ip},
        per_client=_PLENTY,
        per_grant=_PLENTY,
        auth_failures_allowed=1000,
        registrations_per_ip_per_day=10_000_000,
        trust_all_proxies=True,
    )
    return create_app(fuzz_settings.replace(limits=limits), redis_client=store_client)


@given(
    data=st.data(),
    path=st.sampled_from(
        ["/oauth2/token", "/oauth2/revoke", "/oauth2/introspect", "/oauth2/register"]
    ),
)
def test_limited_endpoints(fuzzer: Fuzzer, data: st.DataObject, path: str) -> None:
    hops = data.draw(st.lists(st.one_of(st.sampled_from(_HOPS), odd_text), max_size=4))
    client_id = data.draw(odd_text)
    headers = {"X-Forwarded-For": ",".join(hops)}
    if data.draw(st.booleans()):
        headers["Authorization"] = data.draw(odd_basic(client_id, "secret"))
    body = encode_pairs(
        [
            ("client_id", client_id),
            ("token", "x"),
            ("grant_type", "refresh_token"),
            ("refresh_token", "a.b"),
        ]
    )
    fuzzer.send(
        "POST",
        path,
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers=headers,
        environ_overrides={"REMOTE_ADDR": data.draw(st.sampled_from(_HOPS[:4]))},
    )
