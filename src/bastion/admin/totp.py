"""TOTP (RFC 6238) over HOTP (RFC 4226): the console's optional second factor.

Small on purpose: HMAC-SHA1/256/512, 6 to 8 digits, 30 s steps, a window of one step either side
for clock skew, and replay protection (a code, once accepted, cannot be used again: the verifier
remembers the last accepted step).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from collections.abc import Callable
from urllib.parse import quote

_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


def hotp(key: bytes, counter: int, digits: int = 6, algorithm: str = "sha1") -> str:
    """RFC 4226 section 5.3: HMAC, dynamic truncation, modulo 10^digits."""
    if not 6 <= digits <= 10:
        raise ValueError("digits must be between 6 and 10")
    digest = hmac.new(key, struct.pack(">Q", counter), _DIGESTS[algorithm]).digest()
    offset = digest[-1] & 0x0F
    code = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


def totp(key: bytes, at: float, step: int = 30, digits: int = 6, algorithm: str = "sha1", t0: int = 0) -> str:
    """RFC 6238 section 4: HOTP over T = floor((time - T0) / step)."""
    return hotp(key, int((at - t0) // step), digits, algorithm)


def decode_secret(secret: str) -> bytes:
    """A base32 secret as authenticator apps show it (spaces, lower case and missing padding allowed)."""
    s = secret.replace(" ", "").upper()
    return base64.b32decode(s + "=" * (-len(s) % 8))


def new_secret() -> str:
    """A fresh 160-bit base32 secret (RFC 4226 recommends 160 bits)."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii").rstrip("=")


def provisioning_uri(secret: str, account: str, issuer: str = "Bastion") -> str:
    """The otpauth:// URI authenticator apps import (usually as a QR code)."""
    label = quote(f"{issuer}:{account}")
    return f"otpauth://totp/{label}?secret={secret}&issuer={quote(issuer)}&algorithm=SHA1&digits=6&period=30"


class TotpVerifier:
    """Checks codes for one secret; accepts each time step at most once (no replay)."""

    def __init__(self, secret: str, *, step: int = 30, digits: int = 6, window: int = 1,
                 now: Callable[[], float] = time.time) -> None:
        self.key = decode_secret(secret)
        self.step = step
        self.digits = digits
        self.window = window
        self._now = now
        self._last_step = -1

    def match(self, code: str) -> int:
        """The time step a code is valid for (within the window, newer than the last accepted one),
        or -1. Does not consume it: call `accept(step)` once the whole login succeeded."""
        code = code.strip().replace(" ", "")
        if len(code) != self.digits or not code.isdigit():
            return -1
        current = int(self._now() // self.step)
        ok_step = -1
        # Check every step in the window (no early exit) so timing does not tell which one matched.
        for s in range(current - self.window, current + self.window + 1):
            if hmac.compare_digest(hotp(self.key, s, self.digits), code) and s > self._last_step:
                ok_step = s
        return ok_step

    def accept(self, step: int) -> None:
        self._last_step = max(self._last_step, step)

    def verify(self, code: str) -> bool:
        """Check and consume a code."""
        step = self.match(code)
        if step < 0:
            return False
        self.accept(step)
        return True
