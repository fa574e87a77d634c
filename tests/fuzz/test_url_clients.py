"""Fuzz URL client ids (CIMD) at /oauth2/authorize and /oauth2/token, and the
client_assertion of private_key_jwt.

Odd URLs (IDNs, ports, userinfo, encoded dots, very long ones) go through the
real document cache and the SSRF-safe fetcher, whose resolver here sends the
test hosts to a real https document server on 127.0.0.1 and every other host
to a documentation address the fetcher refuses before connecting, so nothing
leaves the machine. Assertions are garbage, huge, of the wrong type, or a
real signed one with one thing changed.
"""

from __future__ import annotations

import dataclasses
import typing as t

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from proxy import create_app
from proxy.clients.documents import DocumentCache
from proxy.clients.fetch import DocumentFetcher
from proxy.config.client_documents import ClientDocuments
from proxy.config.settings import Settings
from proxy.oauth.client_assertion import CLIENT_ASSERTION_TYPE
from proxy.oauth.pkce import s256
from proxy.store import Store
from tests.client_assertions import claims_for
from tests.client_assertions import jwks
from tests.client_assertions import private_key
from tests.client_assertions import sign
from tests.document_server import DocumentServer
from tests.oauth_client import OAuthTestClient

from .properties import Fuzzer
from .strategies import form_body
from .strategies import mutated_jwt
from .strategies import mutated_pairs
from .strategies import near_url
from .strategies import odd_basic
from .strategies import odd_text
from .strategies import odd_url
from .world import World

PATH = "/oauth/client.json"
KEYED_PATH = "/oauth/keyed/client.json"

_HOSTS = [
    "127.0.0.1",
    "localhost",
    "LOCALHOST",
    "127.0.0.1.",
    "localhost.",
    "127%2e0%2e0%2e1",
    "127\u30020\u30020\u30021",  # ideographic full stops
    "127\uff0e0\uff0e0\uff0e1",  # fullwidth full stops
    "bücher.example",
    "xn--bcher-kva.example",
    "xn--",
    "xn--zz-",
    "例え.テスト",
    "ex\u00adample.com",
    "\u2024.com",
    "a" * 64 + ".example",
    "a" * 300,
    "a." * 130 + "com",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[64:ff9b::7f00:1]",
    "[fe80::1%25eth0]",
    "0x7f.1",
    "2130706433",
    "017700000001",
    "169.254.169.254",
    "example.com",
    "nowhere.invalid",
    "evil.com\\@127.0.0.1",
    "127.0.0.1#@evil.com",
    "",
]
_USERINFO = ["", "u@", "u:p@", "@", "%40@", ":@", "127.0.0.1@"]
_PATHS = [
    PATH,
    KEYED_PATH,
    "",
    "/",
    PATH + "/..",
    "/oauth/../oauth/client.json",
    "/oauth/%2e%2e/client.json",
    "/oauth/%2E/client.json",
    "/oauth/./client.json",
    "/%2e%2e%2f%2e%2e%2fetc/passwd",
    PATH + "%00",
    PATH + "?x=1",
    PATH + "#frag",
    PATH + "?",
    "/" + "a" * 5000,
    "/" + "%41" * 2000,
    "/\u202eclient.json",
    "//127.0.0.1" + PATH,
]


def url_client_ids(port: int) -> st.SearchStrategy[str]:
    """Client ids that are URLs, most of them odd, a few of them real."""
    ports = ["", f":{port}", ":0", ":443", ":65535", ":65536", ":-1", ":abc", ":８０"]
    built = st.builds(
        lambda scheme, user, host, port_, path: f"{scheme}://{user}{host}{port_}{path}",
        st.sampled_from(["https", "https", "HTTPS", "http", "hTTps"]),
        st.sampled_from(_USERINFO),
        st.sampled_from(_HOSTS),
        st.sampled_from(ports),
        st.sampled_from(_PATHS),
    )
    real = f"https://127.0.0.1:{port}{PATH}"
    return st.one_of(
        built,
        built,
        near_url(real),
        st.sampled_from([real, f"https://127.0.0.1:{port}{KEYED_PATH}"]),
        odd_url.map(lambda u: u if u.startswith("https") else "https://" + u),
    ).filter(_encodable)


def _encodable(text: str) -> bool:
    """A request carries UTF-8: a lone surrogate cannot reach the server at all."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def fuzz_resolver(host: str, port: int) -> list[str]:
    """The test hosts are the document server; nothing else is ever reached."""
    if host in ("127.0.0.1", "localhost"):
        return ["127.0.0.1"]
    if host.endswith(".invalid"):
        raise OSError("no such host")
    return ["192.0.2.10"]  # TEST-NET-1: refused as not public, never dialled


@pytest.fixture
def fuzz_settings(fuzz_settings: Settings) -> Settings:
    documents = ClientDocuments(
        allowed_private_hosts=frozenset({"127.0.0.1", "localhost"}),
        connect_timeout_seconds=1.0,
        fetch_timeout_seconds=2.0,
        cache_min_seconds=0,
        fetches_per_host=None,  # a fuzz run is a flood by design
        fetches_per_ip=None,
    )
    return dataclasses.replace(fuzz_settings, client_documents=documents)


@pytest.fixture
def app(
    fuzz_settings: Settings,
    store_client: redis.Redis,
    trust_test_ca: str,
    document_server: DocumentServer,
) -> t.Any:
    documents = fuzz_settings.client_documents
    store = Store(store_client, fuzz_settings.key_prefix)
    cache = DocumentCache(
        store.documents,
        documents,
        private_schemes=fuzz_settings.allowed_redirect_schemes,
        fetcher=DocumentFetcher(documents, resolver=fuzz_resolver),
        limiter=store.limits,
    )
    return create_app(fuzz_settings, redis_client=store_client, documents=cache)


@dataclasses.dataclass
class Clients:
    """The URL clients the document server serves, and a DCR keyed client."""

    port: int
    public_url: str
    keyed_url: str
    keyed_dcr_id: str
    issuer: str


@pytest.fixture
def clients(
    document_server: DocumentServer,
    world: World,
    oauth: OAuthTestClient,
    fuzz_settings: Settings,
) -> Clients:
    public = document_server.client_document(PATH, [world.redirect_uri])
    keyed = document_server.client_document(
        KEYED_PATH,
        [world.redirect_uri],
        token_endpoint_auth_method="private_key_jwt",
        jwks=jwks(private_key("ES256")),
    )
    registered = oauth.register(
        token_endpoint_auth_method="private_key_jwt", jwks=jwks(private_key("ES256"))
    )
    return Clients(
        port=document_server.port,
        public_url=document_server.serve_json(PATH, public),
        keyed_url=document_server.serve_json(KEYED_PATH, keyed),
        keyed_dcr_id=registered["client_id"],
        issuer=fuzz_settings.issuer,
    )


_ACCEPTS = ["text/html", "application/json", "*/*"]


@given(data=st.data(), post=st.booleans())
def test_authorize_with_url_client_ids(
    fuzzer: Fuzzer, world: World, clients: Clients, data: st.DataObject, post: bool
) -> None:
    params = {
        "response_type": "code",
        "client_id": data.draw(url_client_ids(clients.port)),
        "redirect_uri": data.draw(
            st.one_of(st.just(world.redirect_uri), near_url(world.redirect_uri))
        ),
        "code_challenge": s256("v" * 43),
        "code_challenge_method": "S256",
        "scope": "mcp",
        "state": "s",
    }
    pairs = data.draw(mutated_pairs(params, ("resource",)))
    body = data.draw(form_body(pairs))
    headers = {"Accept": data.draw(st.sampled_from(_ACCEPTS))}
    if post:
        fuzzer.send(
            "POST",
            "/oauth2/authorize",
            data=body,
            content_type="application/x-www-form-urlencoded",
            headers=headers,
        )
    else:
        fuzzer.send(
            "GET", "/oauth2/authorize?" + body.decode("latin-1"), headers=headers
        )


def _assertion(data: st.DataObject, clients: Clients, client_id: str) -> str:
    """A client_assertion: garbage, huge, or a real one with one thing changed."""
    audience = data.draw(
        st.sampled_from([clients.issuer, clients.issuer + "/oauth2/token", ""])
    )
    # A JWT is UTF-8: a client id with a lone surrogate cannot be signed for.
    signer = client_id.encode("utf-8", "replace").decode("utf-8")
    real = sign(claims_for(signer, audience), private_key("ES256"), alg="ES256")
    return data.draw(
        st.one_of(
            st.just(real),
            mutated_jwt(real, jwks(private_key("ES256"))),
            odd_text,
            st.sampled_from(["", ".", "..", "a.b.c", "null", "[]", "{}", "e30.e30."]),
            st.builds(lambda n: "e30." * n, st.integers(1, 8000)),
            st.builds(lambda n: "A" * n, st.integers(1, 60_000)),
            st.builds(
                lambda n: real.split(".")[0] + "." + "A" * n + ".",
                st.integers(1, 30_000),
            ),
        )
    )


_ASSERTION_TYPES = [
    CLIENT_ASSERTION_TYPE,
    CLIENT_ASSERTION_TYPE + " ",
    CLIENT_ASSERTION_TYPE.upper(),
    "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
    "",
]


@given(data=st.data())
def test_token_with_url_client_ids_and_assertions(
    fuzzer: Fuzzer, world: World, clients: Clients, data: st.DataObject
) -> None:
    client_id = data.draw(
        st.one_of(
            url_client_ids(clients.port),
            st.sampled_from(
                [clients.keyed_url, clients.keyed_dcr_id, clients.public_url]
            ),
        )
    )
    flow = world.code_flow
    form = data.draw(
        st.sampled_from(
            [
                {
                    "grant_type": "authorization_code",
                    "code": flow.code,
                    "code_verifier": flow.verifier,
                    "redirect_uri": flow.redirect_uri,
                },
                {"grant_type": "refresh_token", "refresh_token": world.refresh_token},
            ]
        )
    )
    form = {**form, "client_id": client_id}
    if data.draw(st.integers(0, 3)):
        # The assertion's iss/sub name the client it claims to be.
        signer = data.draw(st.sampled_from([client_id, clients.keyed_url]))
        form["client_assertion"] = _assertion(data, clients, signer)
        form["client_assertion_type"] = data.draw(
            st.one_of(
                st.just(CLIENT_ASSERTION_TYPE),
                st.sampled_from(_ASSERTION_TYPES),
                odd_text,
            )
        )
    # Half the requests keep their shape, so the odd values reach the checks
    # behind the form parsing.
    pairs = (
        list(form.items())
        if data.draw(st.booleans())
        else data.draw(
            mutated_pairs(form, ("client_assertion", "client_assertion_type"))
        )
    )
    headers = {}
    if data.draw(st.integers(0, 4)) == 0:
        headers["Authorization"] = data.draw(odd_basic(client_id, "secret"))
    fuzzer.send(
        "POST",
        "/oauth2/token",
        data=data.draw(form_body(pairs)),
        content_type="application/x-www-form-urlencoded",
        headers=headers,
    )


@given(data=st.data())
def test_revoke_and_introspect_with_assertions(
    fuzzer: Fuzzer, world: World, clients: Clients, data: st.DataObject
) -> None:
    client_id = data.draw(
        st.sampled_from([clients.keyed_url, clients.keyed_dcr_id, world.public_id])
    )
    form = {
        "token": data.draw(st.sampled_from([world.access_token, "x", ""])),
        "client_id": client_id,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": _assertion(data, clients, client_id),
    }
    pairs = (
        list(form.items())
        if data.draw(st.booleans())
        else data.draw(mutated_pairs(form, ("token_type_hint",)))
    )
    path = data.draw(st.sampled_from(["/oauth2/revoke", "/oauth2/introspect"]))
    fuzzer.send(
        "POST",
        path,
        data=data.draw(form_body(pairs)),
        content_type="application/x-www-form-urlencoded",
    )
