"""TOTP/HOTP against the RFC test vectors, and the verifier's window and replay rules."""

from __future__ import annotations

import pytest

from bastion.admin.totp import TotpVerifier, decode_secret, hotp, new_secret, provisioning_uri, totp

# RFC 4226 appendix D: secret "12345678901234567890", counters 0..9.
RFC4226 = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"]

# RFC 6238 appendix B: 8 digits; seeds of 20, 32 and 64 bytes for SHA1, SHA256, SHA512.
SEEDS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize("counter,expected", list(enumerate(RFC4226)))
def test_hotp_rfc4226_vectors(counter, expected):
    assert hotp(b"12345678901234567890", counter) == expected


@pytest.mark.parametrize("at,sha1,sha256,sha512", RFC6238)
def test_totp_rfc6238_vectors(at, sha1, sha256, sha512):
    assert totp(SEEDS["sha1"], at, digits=8, algorithm="sha1") == sha1
    assert totp(SEEDS["sha256"], at, digits=8, algorithm="sha256") == sha256
    assert totp(SEEDS["sha512"], at, digits=8, algorithm="sha512") == sha512


def _base32(raw: bytes) -> str:
    import base64

    return base64.b32encode(raw).decode().rstrip("=")


def test_secret_decoding_is_lenient_about_case_spaces_and_padding():
    s = _base32(SEEDS["sha1"])
    spaced = " ".join(s[i : i + 4] for i in range(0, len(s), 4)).lower()
    assert decode_secret(spaced) == SEEDS["sha1"]
    assert len(decode_secret(new_secret())) == 20


def test_verifier_window_and_replay():
    t = [1111111109.0]
    v = TotpVerifier(_base32(SEEDS["sha1"]), now=lambda: t[0])
    code = totp(SEEDS["sha1"], t[0])
    assert v.verify(code)
    assert not v.verify(code), "a code must not be accepted twice"
    # the previous step's code is inside the window, but older than the accepted one: refused
    assert not v.verify(totp(SEEDS["sha1"], t[0] - 30))
    t[0] += 30
    assert v.verify(totp(SEEDS["sha1"], t[0] + 30)), "one step of clock skew ahead is accepted"
    t[0] += 300
    assert not v.verify(totp(SEEDS["sha1"], t[0] - 120)), "codes outside the window are refused"
    assert not v.verify("abcdef")
    assert not v.verify("12345")
    assert not v.verify("")


def test_provisioning_uri():
    uri = provisioning_uri("JBSWY3DPEHPK3PXP", "admin@example")
    assert uri.startswith("otpauth://totp/Bastion%3Aadmin%40example?secret=JBSWY3DPEHPK3PXP")
