"""proxy/oauth/pkce.py: RFC 7636 PKCE, S256 only."""

from __future__ import annotations

import base64
import hashlib

import pytest

from proxy.oauth import pkce

# RFC 7636 Appendix B: the worked example.
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_s256_matches_the_rfc_example() -> None:
    assert pkce.s256(RFC_VERIFIER) == RFC_CHALLENGE


def test_verify_accepts_the_matching_verifier() -> None:
    """CODE-3: BASE64URL(SHA256(verifier)) equal to the challenge passes."""
    assert pkce.verify(RFC_VERIFIER, RFC_CHALLENGE)


def test_verify_refuses_another_verifier() -> None:
    """CODE-3: a verifier that does not hash to the challenge fails."""
    other = "x" * 43
    assert not pkce.verify(other, RFC_CHALLENGE)


def test_verify_refuses_the_plain_method() -> None:
    """AUTHZ-8: a challenge equal to the verifier (plain) never verifies."""
    verifier = "a" * 43
    assert not pkce.verify(verifier, verifier)


def test_only_s256_is_supported() -> None:
    """AUTHZ-8 / DISC-6: plain is not a supported method."""
    assert pkce.SUPPORTED_METHODS == ("S256",)


@pytest.mark.parametrize(
    ("verifier", "valid"),
    [
        ("a" * 42, False),
        ("a" * 43, True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("Az09-._~" * 6, True),
        ("a" * 42 + "+", False),
        ("a" * 42 + "/", False),
        ("a" * 42 + "=", False),
        ("a" * 42 + " ", False),
        ("a" * 43 + "\n", False),
        ("é" * 43, False),
        ("", False),
    ],
)
def test_verifier_format(verifier: str, valid: bool) -> None:
    """CODE-4: a verifier is 43-128 unreserved characters."""
    assert pkce.is_valid_verifier(verifier) is valid


def test_verify_refuses_a_short_verifier_even_if_it_hashes_right() -> None:
    """CODE-4: a 42-character verifier is refused although its hash matches."""
    short = "a" * 42
    assert not pkce.verify(short, pkce.s256(short))


@pytest.mark.parametrize(
    ("challenge", "valid"),
    [
        (RFC_CHALLENGE, True),
        (RFC_CHALLENGE[:-1], False),
        (RFC_CHALLENGE + "A", False),
        ("a" * 10, False),
        ("a" * 42 + "=", False),
        ("a" * 42 + ".", False),
        ("a" * 42 + "~", False),
        (RFC_CHALLENGE + "\n", False),
        ("", False),
    ],
)
def test_challenge_format(challenge: str, valid: bool) -> None:
    """AUTHZ-9: an S256 challenge is exactly 43 base64url characters."""
    assert pkce.is_valid_challenge(challenge) is valid


def test_new_pair_is_a_valid_s256_pair() -> None:
    verifier, challenge = pkce.new_pair()
    assert pkce.is_valid_verifier(verifier)
    assert pkce.is_valid_challenge(challenge)
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert pkce.verify(verifier, challenge)


def test_new_pairs_differ() -> None:
    """UP-4: the proxy's own PKCE pair is fresh for every authorization."""
    pairs = {pkce.new_pair() for _ in range(50)}
    assert len(pairs) == 50
