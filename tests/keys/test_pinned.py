"""proxy/keys/pinned.py: SIGNING_KEYS as PEM, a JWK or a JWKS; bad material refused."""

from __future__ import annotations

import json

import pytest
from joserfc.jwk import ECKey
from joserfc.jwk import RSAKey

from proxy.keys.pinned import KeyMaterialError
from proxy.keys.pinned import parse_signing_keys


def _ec(curve: str = "P-256") -> ECKey:
    return ECKey.generate_key(curve, private=True)


def test_one_pem_key_is_named_by_its_thumbprint() -> None:
    key = _ec()
    (parsed,) = parse_signing_keys(key.as_pem(private=True).decode())
    assert parsed.kid == key.thumbprint()
    assert parsed.is_private


def test_several_pem_blocks_keep_their_order() -> None:
    first, second = _ec(), _ec()
    text = (first.as_pem(private=True) + b"\n" + second.as_pem(private=False)).decode()
    parsed = parse_signing_keys(text)
    assert [k.kid for k in parsed] == [first.thumbprint(), second.thumbprint()]
    assert [k.is_private for k in parsed] == [True, False]


def test_a_jwk_keeps_its_kid() -> None:
    key = _ec()
    (parsed,) = parse_signing_keys(
        json.dumps({**key.as_dict(private=True), "kid": "k1", "use": "sig"})
    )
    assert parsed.kid == "k1"


def test_a_jwks_first_signs() -> None:
    first, second = _ec(), _ec()
    text = json.dumps(
        {"keys": [first.as_dict(private=True), second.as_dict(private=False)]}
    )
    parsed = parse_signing_keys(text)
    assert [k.kid for k in parsed] == [first.thumbprint(), second.thumbprint()]


BAD = {
    "empty": "   ",
    "not a key": "hello",
    "truncated pem": "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----",
    "no end line": "-----BEGIN PRIVATE KEY-----\nabc\n",
    "bad json": '{"kty": "EC",',
    "json list": "[1]",
    "jwks without list": '{"keys": {}}',
    "empty jwks": '{"keys": []}',
    "jwk without kty": '{"x": "y"}',
    "rsa jwk": json.dumps(RSAKey.generate_key(2048, private=True).as_dict()),
    "rsa pem": RSAKey.generate_key(2048, private=True).as_pem().decode(),
    "p-384": _ec("P-384").as_pem(private=True).decode(),
    "public first": _ec().as_pem(private=False).decode(),
    "wrong alg": json.dumps({**_ec().as_dict(private=True), "alg": "ES384"}),
    "enc use": json.dumps({**_ec().as_dict(private=True), "use": "enc"}),
    "encrypted pem": "-----BEGIN ENCRYPTED PRIVATE KEY-----\nabc\n"
    "-----END ENCRYPTED PRIVATE KEY-----",
}


@pytest.mark.parametrize("text", BAD.values(), ids=BAD.keys())
def test_bad_material_is_one_line_without_the_key(text: str) -> None:
    with pytest.raises(KeyMaterialError) as exc:
        parse_signing_keys(text)
    message = str(exc.value)
    assert "\n" not in message
    assert "PRIVATE" not in message


def test_the_same_kid_twice_is_refused() -> None:
    text = json.dumps(
        {
            "keys": [
                {**_ec().as_dict(private=True), "kid": "a"},
                {**_ec().as_dict(private=True), "kid": "a"},
            ]
        }
    )
    with pytest.raises(KeyMaterialError, match="twice"):
        parse_signing_keys(text)


def test_the_same_key_twice_is_refused() -> None:
    pem = _ec().as_pem(private=True).decode()
    with pytest.raises(KeyMaterialError, match="twice"):
        parse_signing_keys(pem + pem)
