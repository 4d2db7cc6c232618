"""Recognising what a value is: path-segment kinds (ids, uuids, hashes...) and string formats.

Used by the path templater (is this segment an id?) and the schema inference (is this string a
uuid, an email, a date-time?). Plain regexes compiled once; every function is cheap and pure.
"""

from __future__ import annotations

import itertools
import re

_INT = re.compile(r"-?\d{1,19}", re.ASCII)
_NUMBER = re.compile(r"-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?", re.ASCII)
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}", re.ASCII)
_HEX = re.compile(r"[0-9a-fA-F]{16,}", re.ASCII)
_EMAIL = re.compile(r"[^@\s/.][^@\s/]{0,63}(?<!\.)@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,24}", re.ASCII)
_DATE = re.compile(r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])", re.ASCII)
_DATE_TIME = re.compile(
    # RFC 3339 date-time (as JSON schema validators check it): a T and a zone are required.
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])[Tt](?:[01]\d|2[0-3]):[0-5]\d:(?:[0-5]\d|60)"
    r"(?:\.\d+)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):?[0-5]\d)",
    re.ASCII,
)
_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)", re.ASCII)
# Opaque ids: base64/base62 tokens (Mongo-style ids, nanoids, short hashes) mixing letters and digits.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{10,}={0,2}", re.ASCII)
_VERSION = re.compile(r"v\d{1,3}(?:\.\d{1,3})?", re.IGNORECASE | re.ASCII)
_KEYWORD = re.compile(r"[A-Za-z]{1,24}(?:_[A-Za-z]{1,24})?", re.ASCII)
_RUNS = re.compile(r"[-_.]", re.ASCII)
_SLUGGY = re.compile(r"[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)*", re.ASCII)

# Path-parameter kinds, most specific first; each maps to a JSON-schema (type, format).
KIND_SCHEMA: dict[str, tuple[str, str]] = {
    "id": ("integer", ""),
    "uuid": ("string", "uuid"),
    "hash": ("string", ""),
    "email": ("string", "email"),
    "date": ("string", "date"),
    "token": ("string", ""),
    "slug": ("string", ""),
}

# Parameter names for a template: /users/{id}; several parameters of one kind get numbered.
KIND_NAME: dict[str, str] = {
    "id": "id",
    "uuid": "uuid",
    "hash": "hash",
    "email": "email",
    "date": "date",
    "token": "token",
    "slug": "name",
}


def segment_kind(seg: str) -> str | None:
    """The id kind of a path segment, or None when it reads as a literal word.

    Words (`users`, `me`, `v2`) are literals here; whether a word position is really a parameter
    (a slug, a username) is decided by cardinality across siblings, not by the segment alone.
    """
    n = len(seg)
    if n == 0:
        return None
    c = seg[0]
    if c.isdigit() or c == "-":
        if _INT.fullmatch(seg):
            return "id"
        if n == 10 and _DATE.fullmatch(seg):
            return "date"
    if n in (32, 36) and _UUID.fullmatch(seg) and (n == 36 or not seg.isdigit()):
        return "uuid" if n == 36 or _looks_uuid32(seg) else "hash"
    if n >= 16 and _HEX.fullmatch(seg) and any(ch.isdigit() for ch in seg):
        return "hash"
    if "@" in seg and _EMAIL.fullmatch(seg):
        return "email"
    if n >= 10 and _TOKEN.fullmatch(seg) and (_mixed(seg) or (n >= 16 and _random_case(seg))
                                              or (n >= 16 and _three_classes(seg))):
        return "token"
    if n >= 6 and _TOKEN.fullmatch(seg + "____") and _numbered(seg):
        return "token"  # business ids: INV-000123, user-12345, ORD-2024-000987
    return None


def _looks_uuid32(seg: str) -> bool:
    # 32 hex digits: a dash-less uuid (version nibble 1-8 at index 12) or an md5-like hash.
    return seg[12] in "12345678"


def _mixed(seg: str) -> bool:
    """An opaque id: some run between separators mixes letters with at least two digits
    (`V1StGXR8_Z5jdHi6B`), unlike words with a number (`page2`, `top-10-tips`)."""
    for run in _RUNS.split(seg):
        if len(run) >= 6:
            digits = sum(ch.isdigit() for ch in run)
            if digits >= 2 and digits < len(run):
                tail = len(run) - len(run.rstrip("0123456789"))
                if digits - tail >= 1 or digits >= 4:
                    return True
    return False


def _three_classes(seg: str) -> bool:
    """Upper case, lower case and digits in one long segment: random base64, not a route word."""
    return any(c.isupper() for c in seg) and any(c.islower() for c in seg) and any(c.isdigit() for c in seg)


def _numbered(seg: str) -> bool:
    digits = sum(ch.isdigit() for ch in seg)
    return digits >= 4 and digits * 10 >= len(seg) * 4


def _random_case(seg: str) -> bool:
    """Base64-like: digits and case flips inside words (`QcE9RwXEDSRInD`), unlike `getUserById`."""
    if not any(ch.isdigit() for ch in seg):
        return False
    flips = sum(1 for a, b in itertools.pairwise(seg) if a.isalpha() and b.isalpha() and a.isupper() != b.isupper())
    return flips >= 4


def is_keyword(seg: str) -> bool:
    """A plain word (`me`, `search`, `current_user`): a candidate to stay a literal sibling of a parameter."""
    return _KEYWORD.fullmatch(seg) is not None


def is_version(seg: str) -> bool:
    return _VERSION.fullmatch(seg) is not None


def string_format(value: str) -> str:
    """The JSON-schema format a string value matches ('' when none): uuid, email, date, date-time, ipv4."""
    n = len(value)
    if n == 0 or n > 320:
        return ""
    c = value[0]
    if c.isdigit():
        if n == 10 and _DATE.fullmatch(value):
            return "date"
        if 19 <= n <= 35 and _DATE_TIME.fullmatch(value):
            return "date-time"
        if 7 <= n <= 15 and _IPV4.fullmatch(value):
            return "ipv4"
    if n == 36 and _UUID.fullmatch(value):
        return "uuid"
    if "@" in value and _EMAIL.fullmatch(value):
        return "email"
    return ""


def scalar_type(value: str) -> str:
    """The JSON-schema type a textual value (query, form, path) carries: integer, number, boolean or string."""
    if not value:
        return "string"
    c = value[0]
    if (c.isdigit() or c == "-") and len(value) <= 19 and _INT.fullmatch(value):
        # Leading zeros (zip codes, account numbers) are strings: 00123 is not the integer 123.
        if len(value) > 1 and value.lstrip("-").startswith("0"):
            return "string"
        return "integer"
    if (c.isdigit() or c in "-.") and len(value) <= 32 and _NUMBER.fullmatch(value):
        return "number"
    if value in ("true", "false"):
        return "boolean"
    return "string"


def is_enum_candidate(value: str) -> bool:
    """Short plain tokens (`active`, `asc`, `EUR`) may become enums; anything else is never kept."""
    return 0 < len(value) <= 32 and _SLUGGY.fullmatch(value) is not None and not value.isdigit()


_SECRET_NAME = re.compile(
    r"pass|pwd|secret|token|key|auth|session|sid|otp|pin|ssn|card|cvv|cvc|iban|account|sig|cred|code|nonce",
    re.IGNORECASE,
)


def secret_name(name: str) -> bool:
    """Field names whose values must never be kept, even as enum values."""
    return _SECRET_NAME.search(name) is not None
