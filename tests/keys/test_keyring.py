"""proxy/keys/keyring.py: random tokens, digests, AES-GCM sealing, HMAC signing."""

from __future__ import annotations

import hashlib
import hmac
import typing as t

import pytest

from proxy.keys import keyring as crypto
from proxy.keys.keyring import Keyring
from proxy.keys.keyring import SealError
from proxy.oauth import opaque_tokens
from proxy.oauth import pkce

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(KEY)


def _flip(text: str, index: int) -> str:
    """Change one base64url character of `text`."""
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


# -- GEN-11: randomness ----------------------------------------------------------------


def _bits(token: str) -> int:
    return len(crypto.b64url_decode(token)) * 8


@pytest.mark.parametrize(
    "make",
    [
        crypto.random_token,
        lambda: opaque_tokens.new_opaque(opaque_tokens.new_grant_id())[1],
        lambda: pkce.new_pair()[0],
    ],
    ids=["random_token", "opaque_secret", "pkce_verifier"],
)
def test_secrets_are_unique_and_at_least_128_bits(make: t.Any) -> None:
    """GEN-11: 1,000 secrets are all unique, each with >= 128 random bits."""
    values = [make() for _ in range(1000)]
    assert len(set(values)) == 1000
    assert all(_bits(v) >= 128 for v in values)


def test_random_tokens_show_no_structure() -> None:
    """GEN-11: every bit position is set about half the time; no shared prefix."""
    values = [crypto.b64url_decode(crypto.random_token()) for _ in range(1000)]
    nbits = len(values[0]) * 8
    for bit in range(nbits):
        ones = sum((v[bit // 8] >> (bit % 8)) & 1 for v in values)
        # 1,000 fair coins: mean 500, sd ~16; 400..600 is more than 6 sd.
        assert 400 <= ones <= 600, bit
    assert len({v[:2] for v in values}) > 500
    assert values != sorted(values)


def test_grant_ids_are_unique_and_128_bits() -> None:
    """GEN-11: the public half of a code or refresh token is unguessable too."""
    ids = [opaque_tokens.new_grant_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(_bits(i) >= 128 for i in ids)


# -- digests and comparison ------------------------------------------------------------


def test_sha256_hex() -> None:
    assert crypto.sha256_hex("abc") == hashlib.sha256(b"abc").hexdigest()


def test_b64url_round_trip_without_padding() -> None:
    for size in range(0, 40):
        data = bytes(range(size))
        text = crypto.b64url(data)
        assert not set("=+/") & set(text)
        assert crypto.b64url_decode(text) == data


def test_equal() -> None:
    assert crypto.equal("abc", "abc")
    assert crypto.equal(b"abc", "abc")
    assert not crypto.equal("abc", "abd")
    assert not crypto.equal("abc", "abcd")


# -- AES-GCM seal / open ---------------------------------------------------------------


def test_seal_then_open_round_trips(keyring: Keyring) -> None:
    sealed = keyring.seal(b"upstream-token", context="grant:{g}")
    assert b"upstream-token" not in crypto.b64url_decode(sealed)
    assert keyring.open(sealed, context="grant:{g}") == b"upstream-token"


def test_seal_is_randomised(keyring: Keyring) -> None:
    assert keyring.seal(b"x", context="c") != keyring.seal(b"x", context="c")


@pytest.mark.parametrize("index", [0, 5, 20, -1])
def test_tampered_ciphertext_does_not_open(keyring: Keyring, index: int) -> None:
    sealed = keyring.seal(b"secret payload", context="c")
    with pytest.raises(SealError):
        keyring.open(_flip(sealed, index % len(sealed)), context="c")


@pytest.mark.parametrize("bad", ["", "AAAA", "not base64!", "é", "A" * 27])
def test_garbage_does_not_open(keyring: Keyring, bad: str) -> None:
    with pytest.raises(SealError):
        keyring.open(bad, context="c")


def test_truncated_ciphertext_does_not_open(keyring: Keyring) -> None:
    sealed = keyring.seal(b"secret payload", context="c")
    with pytest.raises(SealError):
        keyring.open(sealed[:-4], context="c")


def test_sealed_value_is_bound_to_its_context(keyring: Keyring) -> None:
    """A ciphertext moved to another record does not open."""
    sealed = keyring.seal(b"x", context="grant:{a}")
    with pytest.raises(SealError):
        keyring.open(sealed, context="grant:{b}")


def test_sealed_value_is_bound_to_the_key(keyring: Keyring) -> None:
    sealed = keyring.seal(b"x", context="c")
    with pytest.raises(SealError):
        Keyring(OTHER_KEY).open(sealed, context="c")


def test_seal_with_needs_the_same_secret(keyring: Keyring) -> None:
    sealed = keyring.seal_with("refresh-secret", b"pair", context="c")
    assert keyring.open_with("refresh-secret", sealed, context="c") == b"pair"
    with pytest.raises(SealError):
        keyring.open_with("other-secret", sealed, context="c")
    with pytest.raises(SealError):
        keyring.open_with("refresh-secret", sealed, context="d")
    with pytest.raises(SealError):
        keyring.open_with("refresh-secret", _flip(sealed, 20), context="c")
    with pytest.raises(SealError):
        keyring.open(sealed, context="c")


# -- HMAC sign / unsign ----------------------------------------------------------------


def test_sign_then_unsign_round_trips(keyring: Keyring) -> None:
    blob = keyring.sign({"a": 1, "b": "x"}, purpose="consent", max_age=60)
    body = keyring.unsign(blob, purpose="consent")
    assert body is not None
    assert body["a"] == 1
    assert body["b"] == "x"


def test_signed_blob_expires(keyring: Keyring, monkeypatch: pytest.MonkeyPatch) -> None:
    now = 1_800_000_000.0
    monkeypatch.setattr(crypto.time, "time", lambda: now)
    blob = keyring.sign({"a": 1}, purpose="consent", max_age=60)
    monkeypatch.setattr(crypto.time, "time", lambda: now + 60)
    assert keyring.unsign(blob, purpose="consent") is not None
    monkeypatch.setattr(crypto.time, "time", lambda: now + 61)
    assert keyring.unsign(blob, purpose="consent") is None


@pytest.mark.parametrize("part", ["data", "mac"])
def test_tampered_signed_blob_is_refused(keyring: Keyring, part: str) -> None:
    blob = keyring.sign({"a": 1}, purpose="consent", max_age=60)
    data, mac = blob.split(".")
    if part == "data":
        blob = _flip(data, 3) + "." + mac
    else:
        blob = data + "." + _flip(mac, 3)
    assert keyring.unsign(blob, purpose="consent") is None


def test_forged_payload_with_old_signature_is_refused(keyring: Keyring) -> None:
    blob = keyring.sign({"role": "user"}, purpose="consent", max_age=60)
    _, mac = blob.split(".")
    forged = crypto.b64url(b'{"role":"admin","exp":9999999999}')
    assert keyring.unsign(forged + "." + mac, purpose="consent") is None


def test_signed_blob_is_bound_to_its_purpose(keyring: Keyring) -> None:
    blob = keyring.sign({"a": 1}, purpose="consent", max_age=60)
    assert keyring.unsign(blob, purpose="consent-remember") is None


def test_signed_blob_is_bound_to_the_key(keyring: Keyring) -> None:
    blob = keyring.sign({"a": 1}, purpose="consent", max_age=60)
    assert Keyring(OTHER_KEY).unsign(blob, purpose="consent") is None


@pytest.mark.parametrize("bad", ["", ".", "abc", "abc.", ".abc", "a.b.c", "é.é"])
def test_malformed_signed_blob_is_refused(keyring: Keyring, bad: str) -> None:
    assert keyring.unsign(bad, purpose="consent") is None


def test_signed_non_object_or_without_int_exp_is_refused(keyring: Keyring) -> None:
    """A validly MACed body that is not an object with an int `exp` is refused."""

    for body in (b"[1,2]", b'{"exp":"soon"}', b'{"a":1}', b"not json"):
        data = crypto.b64url(body)
        mac = hmac.new(keyring.derive("sign/consent"), data.encode(), hashlib.sha256)
        assert (
            keyring.unsign(f"{data}.{crypto.b64url(mac.digest())}", purpose="consent")
            is None
        )


def test_derived_keys_differ_by_purpose(keyring: Keyring) -> None:
    assert keyring.derive("a") != keyring.derive("b")
    assert keyring.derive("a") == Keyring(KEY).derive("a")
    assert keyring.derive("a") != Keyring(OTHER_KEY).derive("a")


def test_mac_is_deterministic_and_purpose_bound(keyring: Keyring) -> None:
    assert keyring.mac("v", purpose="txn") == keyring.mac("v", purpose="txn")
    assert keyring.mac("v", purpose="txn") != keyring.mac("v", purpose="csrf")
    assert keyring.mac("v", purpose="txn") != keyring.mac("w", purpose="txn")


# -- a changed PROXY_SECRET_KEY (PROXY_SECRET_KEY_PREVIOUS) --------------------------

THIRD_KEY = bytes(range(2, 34))


def test_a_value_sealed_under_a_previous_key_opens_and_is_resealed() -> None:
    sealed = Keyring(OTHER_KEY).seal(b"upstream", context="grant:{g}")
    moved = Keyring(KEY, [THIRD_KEY, OTHER_KEY])
    opened = moved.open_current(sealed, context="grant:{g}")
    assert opened.plaintext == b"upstream"
    assert opened.resealed is not None
    # The resealed value is under the current key alone, for the same record.
    assert Keyring(KEY).open(opened.resealed, context="grant:{g}") == b"upstream"
    with pytest.raises(SealError):
        Keyring(OTHER_KEY).open(opened.resealed, context="grant:{g}")
    with pytest.raises(SealError):
        Keyring(KEY).open(opened.resealed, context="grant:{h}")


def test_a_value_under_the_current_key_is_not_resealed(keyring: Keyring) -> None:
    sealed = keyring.seal(b"x", context="c")
    opened = Keyring(KEY, [OTHER_KEY]).open_current(sealed, context="c")
    assert opened == crypto.Opened(b"x", None)


def test_a_value_no_key_opens_is_a_seal_error() -> None:
    sealed = Keyring(THIRD_KEY).seal(b"x", context="c")
    with pytest.raises(SealError):
        Keyring(KEY, [OTHER_KEY]).open_current(sealed, context="c")
    with pytest.raises(SealError):
        Keyring(KEY, [OTHER_KEY]).open(sealed, context="c")


def test_previous_keys_open_grace_values_and_signed_blobs() -> None:
    old = Keyring(OTHER_KEY)
    moved = Keyring(KEY, [OTHER_KEY])
    pending = old.seal_with("rt-secret", b"pair", context="c")
    assert moved.open_with("rt-secret", pending, context="c") == b"pair"
    with pytest.raises(SealError):
        moved.open_with("other", pending, context="c")
    blob = old.sign({"a": 1}, purpose="consent", max_age=60)
    assert moved.unsign(blob, purpose="consent") is not None
    assert Keyring(KEY).unsign(blob, purpose="consent") is None
    # New blobs use the current key only.
    assert (
        old.unsign(
            moved.sign({"a": 1}, purpose="consent", max_age=60), purpose="consent"
        )
        is None
    )


def test_a_mac_under_a_previous_key_still_matches() -> None:
    mac = Keyring(OTHER_KEY).mac("browser|digest", purpose="csrf")
    assert Keyring(KEY, [OTHER_KEY]).mac_matches("browser|digest", mac, purpose="csrf")
    assert not Keyring(KEY).mac_matches("browser|digest", mac, purpose="csrf")
    assert not Keyring(KEY, [OTHER_KEY]).mac_matches("other", mac, purpose="csrf")
