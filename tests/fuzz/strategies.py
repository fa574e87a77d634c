"""Hypothesis strategies that aim at parsers: odd text, JSON, URLs, JWTs, bodies.

Each one mostly yields near-valid input (one field, one byte, one segment
wrong), because that is what gets past the first check into code that has
never seen it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import typing as t
from urllib.parse import quote

from hypothesis import strategies as st

#: Characters that have broken parsers before: controls, bidi, surrogates,
#: NUL, the BOM, non-characters, and a few that change URL meaning.
SPECIAL_CHARS = [
    "\x00",
    "\x01",
    "\x1b",
    "\x7f",
    "\x85",
    "\t",
    "\n",
    "\r",
    " ",
    "\u00a0",
    "\u202e",
    "\u2066",
    "\u200b",
    "\u200d",
    "\ufeff",
    "\ufffd",
    "\uffff",
    "\ud800",
    "\udc00",
    "\udfff",
    "\U0010ffff",
    "\U0001f600",
    "é",
    "ß",
    "İ",
    "\\",
    "/",
    "%",
    "%00",
    "%ff",
    "%2e",
    "@",
    ":",
    "#",
    "?",
    "&",
    "=",
    "+",
    ";",
    ",",
    '"',
    "'",
    "<",
    ">",
    "`",
    "{",
    "}",
    "[",
    "]",
    "|",
    "..",
    "*",
]

special_char = st.sampled_from(SPECIAL_CHARS)

odd_text = st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(special_char, st.text(max_size=3)), max_size=12).map("".join),
    st.sampled_from(["", " ", "null", "None", "0", "-1", "true", "[]", "{}"]),
    st.integers(min_value=1, max_value=70_000).map(lambda n: "a" * n),
    st.builds(lambda c, n: c * n, special_char, st.integers(1, 5000)),
)

#: Any JSON value, including the numbers Python's json reads but others don't.
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    odd_text,
)
odd_json = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(odd_text, inner, max_size=5),
    ),
    max_leaves=12,
)

_HOSTS = [
    "127.0.0.1",
    "localhost",
    "LOCALHOST",
    "[::1]",
    "[::1",
    "::1",
    "[::ffff:127.0.0.1]",
    "0x7f.1",
    "2130706433",
    "127.1",
    "0",
    "0.0.0.0",
    "example.com",
    "EXAMPLE.com.",
    "bücher.example",
    "xn--bcher-kva.example",
    "xn--",
    "xn--a",
    "xn--zz-",
    "evil.com\\@127.0.0.1",
    "127.0.0.1\\evil.com",
    "127.0.0.1%2f",
    "127.0.0.1%00",
    "a" * 300,
    "",
    "[",
    "]",
    "[v1.x]",
    "%65xample.com",
    "localhost.",
    "\u2024.com",
    "ex\u00adample.com",
    "例え.テスト",
]
_SCHEMES = [
    "http",
    "https",
    "HTTP",
    "hTtPs",
    "javascript",
    "data",
    "file",
    "com.example.app",
    "ftp",
    "",
    "h\ttp",
    "http\x00",
    "a" * 80,
]
_PORTS = [
    "",
    ":",
    ":0",
    ":80",
    ":443",
    ":5555",
    ":65535",
    ":65536",
    ":-1",
    ":abc",
    ":99999999999999999999",
    ": 80",
    ":８０",
]
_USERINFO = ["", "user@", "user:pass@", "@", "a@b@", "%40@", "\\@"]
_PATHS = [
    "/callback",
    "",
    "/",
    "\\callback",
    "/a/../callback",
    "/%2e%2e/",
    "//evil.com",
    "/cb?x=1",
    "/cb#frag",
    "/cb?",
    "/\u202ecb",
    "/%ff",
    "/cb;params",
]

odd_url = st.one_of(
    st.builds(
        lambda scheme, sep, user, host, port, path: (
            f"{scheme}{sep}{user}{host}{port}{path}"
        ),
        st.sampled_from(_SCHEMES),
        st.sampled_from(["://", ":", ":/", ":\\\\", ":///", "://\\"]),
        st.sampled_from(_USERINFO),
        st.sampled_from(_HOSTS),
        st.sampled_from(_PORTS),
        st.sampled_from(_PATHS),
    ),
    odd_text,
)


@st.composite
def near_url(draw: st.DrawFn, url: str) -> str:
    """A valid URL with one edit: the kind a lax comparison lets through."""
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    port = "".join(host.partition(":")[1:])
    edits = [
        f"{scheme.upper()}://{rest}",
        f"{scheme}://{host.upper()}/{path}",
        f"{scheme}://{host}:80/{path}" if ":" not in host else url + "/",
        url + "/",
        url + "?",
        url + "#",
        url + "#x",
        url + "?x=1",
        url + "%2f",
        url + "/..",
        url + "\\",
        url.replace("/", "\\"),
        f"{scheme}://user@{rest}",
        f"{scheme}://{host}@evil.example/{path}",
        f"{scheme}://evil.example\\@{rest}",
        f"{scheme}://{host}./{path}",
        f"{scheme}://[::ffff:127.0.0.1]{port}/{path}",
        f"{scheme}://localhost{port}/{path}",
        f"{scheme}://{host}{slash}{path.upper()}",
        f"{scheme}://{host}{slash}%{path.encode().hex()[:2]}{path[1:]}",
        f"{scheme}:{rest}",
        f"{scheme}:/{rest}",
        f"{scheme}:///{rest}",
        " " + url,
        url + "\x00",
        url + "\u202e",
        url.replace("1", "\uff11"),
        url * 2,
    ]
    return draw(st.sampled_from(edits))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_HEADER_VALUES: dict[str, list[t.Any]] = {
    "alg": [
        "none",
        "None",
        "HS256",
        "RS256",
        "ES256",
        "ES512",
        "EdDSA",
        "PS256",
        "",
        None,
        7,
        ["ES256"],
        {"alg": "ES256"},
        "ES256\x00",
    ],
    "kid": ["", None, 0, [], {}, "../../etc/passwd", "x" * 5000, "\ud800", "*"],
    "crit": [
        [],
        ["exp"],
        ["b64"],
        "exp",
        [1],
        [None],
        {},
        None,
        [[]],
        [""],
        ["crit"],
        ["alg"],
        ["b64", "b64"],
        0,
    ],
    "typ": ["JWT", "at+jwt", "AT+JWT", "application/at+jwt", "", None, 1, []],
    "b64": [False, True, "false", None],
    "zip": ["DEF", "", None],
    "jku": ["http://127.0.0.1:1/jwks", "", None],
    "jwk": [{}, {"kty": "oct", "k": ""}, "x", None],
    "x5c": [[], ["AAAA"], "x"],
    "enc": ["A256GCM", None],
    "cty": ["JWT", None, 5],
}


@st.composite
def mutated_jwt(draw: st.DrawFn, token: str, jwks: dict[str, t.Any]) -> str:
    """A real access token with its header, payload, signature or shape changed."""
    head, payload, signature = token.split(".")
    header = json.loads(b64url_decode(head))
    claims = json.loads(b64url_decode(payload))
    how = draw(
        st.sampled_from(
            [
                "header",
                "header_json",
                "claim",
                "claims_json",
                "signature",
                "shape",
                "hs256_confusion",
                "none",
                "bytes",
            ]
        )
    )
    if how == "header":
        name = draw(st.sampled_from(sorted(_HEADER_VALUES)))
        if draw(st.booleans()) and name in header:
            del header[name]
        else:
            header[name] = draw(
                st.one_of(st.sampled_from(_HEADER_VALUES[name]), odd_json)
            )
        head = _encode(header)
    elif how == "header_json":
        head = draw(_odd_segment())
    elif how == "claim":
        name = draw(st.one_of(st.sampled_from(sorted(claims)), odd_text))
        if draw(st.booleans()) and name in claims:
            del claims[name]
        else:
            claims[name] = draw(odd_json)
        payload = _encode(claims)
    elif how == "claims_json":
        payload = draw(_odd_segment())
    elif how == "signature":
        raw = b64url_decode(signature)
        signature = draw(
            st.one_of(
                st.just(""),
                st.binary(max_size=200).map(b64url),
                st.integers(0, len(raw) - 1).map(lambda i: b64url(_flip(raw, i))),
                st.just(b64url(raw[:-1])),
                st.just(signature + "="),
                st.just(signature + "A"),
            )
        )
    elif how == "shape":
        parts = [head, payload, signature]
        return draw(
            st.sampled_from(
                [
                    ".".join(parts[:2]),
                    ".".join(parts) + ".",
                    ".".join([*parts, "x", "y"]),
                    "." * 4,
                    "..",
                    head,
                    ".".join([head, "", signature]),
                    ".".join(parts).replace("-", "+"),
                    "=" + ".".join(parts),
                ]
            )
        )
    elif how == "hs256_confusion":
        # The classic: sign with HMAC, keyed by the server's public key.
        header["alg"] = "HS256"
        head = _encode(header)
        key = json.dumps(draw(st.sampled_from(jwks["keys"]))).encode()
        mac = hmac.new(key, f"{head}.{payload}".encode(), hashlib.sha256)
        signature = b64url(mac.digest())
    elif how == "none":
        header["alg"] = draw(st.sampled_from(["none", "NONE", "nOnE"]))
        head, signature = _encode(header), ""
    else:
        text = ".".join([head, payload, signature])
        index = draw(st.integers(0, len(text) - 1))
        char = draw(st.sampled_from("AZaz09-_+/=.~"))
        return text[:index] + char + text[index + 1 :]
    return ".".join([head, payload, signature])


def _encode(value: t.Any) -> str:
    return b64url(json.dumps(value).encode("utf-8", "surrogatepass"))


def _odd_segment() -> st.SearchStrategy[str]:
    """A segment that is not a base64url JSON object."""
    return st.one_of(
        odd_json.map(_encode),
        st.binary(max_size=64).map(b64url),
        st.sampled_from(["", "e30", "W10", "bnVsbA", "!!!", "e30=", "e30==="]),
        st.builds(lambda d: b64url(("{" * d).encode()), st.integers(1, 20_000)),
    )


def _flip(raw: bytes, index: int) -> bytes:
    return raw[:index] + bytes([raw[index] ^ 0x01]) + raw[index + 1 :]


def encode_pairs(pairs: list[tuple[str, str]]) -> bytes:
    """application/x-www-form-urlencoded, surrogates and all (as UTF-8 bytes)."""
    return "&".join(f"{_quote(name)}={_quote(value)}" for name, value in pairs).encode(
        "ascii"
    )


def _quote(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


#: Bytes that break a form parser: bare %, invalid UTF-8, separators.
raw_form_noise = st.sampled_from(
    [b"%", b"%f", b"%ff", b"%c3%28", b"%ed%a0%80", b"&&", b"==", b"\xff", b"+", b";"]
)

odd_bytes = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"",
            b"\xef\xbb\xbf{}",
            b"\xff\xfe{\x00}\x00",
            b"[" * 5000,
            b'{"a":' * 3000,
            b"null",
            b'"x"',
            b"\x00" * 50,
        ]
    ),
)

odd_content_type = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-16",
        "application/JSON",
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=latin-1",
        "multipart/form-data",
        "multipart/form-data; boundary=x",
        "text/plain",
        "",
        "application/json, application/x-www-form-urlencoded",
        ";;;",
        "\xff/\xfe",
    ]
)

odd_method = st.sampled_from(
    [
        "GET",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "HEAD",
        "OPTIONS",
        "TRACE",
        "CONNECT",
        "PROPFIND",
        "get",
        "FOO",
    ]
)


@st.composite
def mutated_pairs(
    draw: st.DrawFn, valid: dict[str, str], extra_names: t.Sequence[str] = ()
) -> list[tuple[str, str]]:
    """Valid parameters with some duplicated, dropped, replaced or added."""
    pairs = list(valid.items())
    names = [*valid, *extra_names]
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(["drop", "dup", "replace", "add", "empty"]))
        name = draw(st.sampled_from(names))
        if how == "drop":
            pairs = [p for p in pairs if p[0] != name]
        elif how == "dup":
            pairs.append(
                (name, draw(st.one_of(st.just(valid.get(name, "")), odd_text)))
            )
        elif how == "replace":
            value = draw(st.one_of(odd_text, odd_url))
            if "://" in valid.get(name, "") and draw(st.booleans()):
                value = draw(near_url(valid[name]))
            pairs = [(n, value if n == name else v) for n, v in pairs]
            if name not in valid:
                pairs.append((name, value))
        elif how == "add":
            pairs.append((draw(odd_text), draw(odd_text)))
        else:
            pairs = [(n, "" if n == name else v) for n, v in pairs]
    return pairs


@st.composite
def form_body(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> bytes:
    """Encoded pairs, now and then with raw noise bytes spliced in."""
    body = encode_pairs(pairs)
    if draw(st.integers(0, 9)) == 0:
        index = draw(st.integers(0, len(body)))
        body = body[:index] + draw(raw_form_noise) + body[index:]
    return body


def basic_header(client_id: str, secret: str) -> str:
    raw = f"{_quote(client_id)}:{_quote(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


@st.composite
def odd_basic(draw: st.DrawFn, client_id: str, secret: str) -> str:
    """A Basic header: valid, or with bad base64, non-UTF-8, or odd parts."""
    how = draw(
        st.sampled_from(["valid", "raw", "bytes", "parts", "scheme", "b64", "latin"])
    )
    if how == "valid":
        return basic_header(client_id, secret)
    if how == "raw":
        user = draw(st.one_of(st.just(client_id), odd_text))
        pw = draw(st.one_of(st.just(secret), odd_text))
        raw = f"{user}:{pw}".encode("utf-8", "surrogatepass")
        return "Basic " + base64.b64encode(raw).decode()
    if how == "bytes":
        return "Basic " + base64.b64encode(draw(st.binary(max_size=80))).decode()
    if how == "parts":
        user = draw(st.one_of(st.just(client_id), odd_text))
        pw = draw(st.one_of(st.just(secret), odd_text))
        return basic_header(user, pw)
    if how == "scheme":
        scheme = draw(st.sampled_from(["basic", "BASIC", "Basic  ", "Bearer", ""]))
        return scheme + " " + basic_header(client_id, secret)[6:]
    if how == "b64":
        good = basic_header(client_id, secret)[6:]
        return "Basic " + draw(
            st.sampled_from(
                [
                    good[:-1],
                    good + "=",
                    good.replace("=", ""),
                    "====",
                    "!!!!",
                    good + " x",
                    "\t" + good,
                    good.rstrip("=") + "=",
                ]
            )
        )
    # Non-ASCII (latin-1) header bytes where base64 belongs.
    return "Basic " + draw(
        st.text(
            st.characters(min_codepoint=0x80, max_codepoint=0xFF),
            min_size=1,
            max_size=20,
        )
    )


def header_safe(value: str) -> bool:
    """What an HTTP client can put in a header at all: latin-1, no line breaks."""
    return all(ord(c) < 256 for c in value) and "\r" not in value and "\n" not in value


def opaque(data: st.DataObject, token: str, *, keep: bool = True) -> str:
    """`<grant_id>.<secret>` with either half, or the separator, made odd."""
    grant_id, _, secret = token.partition(".")
    how = data.draw(
        st.sampled_from(["keep"] * keep + ["secret", "grant", "sep", "text", "flip"])
    )
    if how == "keep":
        # The real one: the other parameters then meet a live code or token.
        return token
    if how == "secret":
        return f"{grant_id}.{data.draw(odd_text)}"
    if how == "grant":
        return f"{data.draw(odd_text)}.{secret}"
    if how == "sep":
        return data.draw(
            st.sampled_from(
                [
                    grant_id + secret,
                    f"{token}.",
                    f".{token}",
                    f"{grant_id}..{secret}",
                    grant_id,
                ]
            )
        )
    if how == "text":
        return data.draw(odd_text)
    index = data.draw(st.integers(0, len(token) - 1))
    return token[:index] + data.draw(st.sampled_from("Aa0_-.")) + token[index + 1 :]
