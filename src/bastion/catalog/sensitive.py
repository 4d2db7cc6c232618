"""Sensitive data in responses: what kind of secret or personal data a value is, never the value.

Kinds: email, phone, card (checked with Luhn and card-number prefixes), ssn, iban (checked with
mod-97), jwt, api_key (well-known key formats, or a long token in a key-named field), private_key,
password_hash. JSON bodies are walked field by field so a finding names its place (`$.users[].email`);
other text bodies are searched as a whole (`(body)`). Returns (field, kind) pairs only.
"""

from __future__ import annotations

import re
from typing import Any

KINDS = ("email", "phone", "card", "ssn", "iban", "jwt", "api_key", "private_key", "password_hash")

MAX_DEPTH = 8
MAX_ITEMS = 50  # array elements walked per array
MAX_TEXT = 64 * 1024

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}", re.ASCII)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{0,}", re.ASCII)
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----", re.ASCII)
_PW_HASH = re.compile(
    r"\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}"
    r"|\$argon2(?:id|i|d)\$[^\s\"']{20,}"
    r"|\$pbkdf2[-_a-z0-9]*\$[^\s\"']{20,}"
    r"|\$(?:1|5|6)\$[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{22,86}"
    r"|\$scrypt\$[^\s\"']{20,}",
    re.ASCII,
)
_API_KEY = re.compile(
    r"(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|(?:sk|rk|pk)_live_[0-9A-Za-z]{16,}"
    r"|sk-(?:proj-)?[A-Za-z0-9_-]{32,}"
    r"|gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{40,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|glpat-[A-Za-z0-9_-]{20}"
    r"|SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
    re.ASCII,
)
_CARD = re.compile(r"(?<![\d.])(?:\d[ -]?){12,18}\d(?![\d.])", re.ASCII)
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])", re.ASCII)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b", re.ASCII)
_PHONE_STRICT = re.compile(
    r"(?<![\w+])(?:\+[1-9]\d{0,2}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,3}"
    r"|\(\d{3}\) ?\d{3}[-. ]\d{4}|\d{3}[-.]\d{3}[-.]\d{4})(?![\w-])",
    re.ASCII,
)
_PHONE_LOOSE = re.compile(r"\+?[\d ().-]{7,20}", re.ASCII)
_TOKEN = re.compile(r"[A-Za-z0-9_\-./+=]{20,}", re.ASCII)
_DIGIT = re.compile(r"\d", re.ASCII)
_SEVEN_DIGITS = re.compile(r"\d(?:\D{0,3}\d){6}", re.ASCII)  # seven digits, a few separators apart at most

_PHONE_NAME = re.compile(r"phone|mobile|cell|tel(?:ephone)?$|fax|msisdn", re.IGNORECASE | re.ASCII)
_SSN_NAME = re.compile(r"ssn|social_?sec|national_?id|tax_?id|sin$", re.IGNORECASE | re.ASCII)
_CARD_NAME = re.compile(r"card|pan$|^cc_?n|ccnum", re.IGNORECASE | re.ASCII)
_KEY_NAME = re.compile(r"api_?key|secret|access_?key|private_?key|client_?secret|token$", re.IGNORECASE | re.ASCII)
_PW_NAME = re.compile(r"pass(?:word|wd)?(?:_?hash)?$|pwd|password_digest|hashed_password", re.IGNORECASE | re.ASCII)
_HEX_HASH = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64}|[0-9a-fA-F]{128}", re.ASCII)

# IBAN lengths by country (ISO 13616), for the countries most APIs meet; others are checked by mod-97 only.
_IBAN_LEN = {
    "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24,
    "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27, "LI": 21,
    "LT": 20, "LU": 20, "LV": 21, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24,
    "SI": 19, "SK": 24, "TR": 26, "AE": 23, "SA": 24, "IL": 23, "BR": 29, "MC": 27, "SM": 27,
}


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_prefix(d: str) -> bool:
    """Issuer prefixes of the big networks (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay)."""
    n = len(d)
    if d[0] == "4":
        return n in (13, 16, 19)
    p2 = int(d[:2])
    p4 = int(d[:4])
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16
    if p2 in (34, 37):
        return n == 15
    if d.startswith("6011") or p2 == 65 or 644 <= int(d[:3]) <= 649 or p2 == 62:
        return 16 <= n <= 19
    if 3528 <= p4 <= 3589:
        return 16 <= n <= 19
    if p2 in (36, 38, 39) or 300 <= int(d[:3]) <= 305:
        return 14 <= n <= 19
    return False


def is_card(text: str) -> bool:
    d = "".join(ch for ch in text if "0" <= ch <= "9")
    return 13 <= len(d) <= 19 and len(set(d)) > 1 and _card_prefix(d) and luhn(d)


def is_iban(text: str) -> bool:
    s = text.replace(" ", "")
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    want = _IBAN_LEN.get(s[:2])
    if want is not None and len(s) != want:
        return False
    moved = s[4:] + s[:4]
    num = "".join(str(int(ch, 36)) for ch in moved)
    return int(num) % 97 == 1


def _phone_digits_ok(text: str) -> bool:
    digits = sum(ch.isdigit() for ch in text)
    return 7 <= digits <= 15


def classify(value: str, name: str = "") -> set[str]:
    """The kinds of sensitive data in one string value (`name` is its field name, a hint)."""
    found: set[str] = set()
    n = len(value)
    if n < 6:
        return found
    if "@" in value and _EMAIL.search(value):
        found.add("email")
    if "eyJ" in value and _JWT.search(value):
        found.add("jwt")
    if "PRIVATE KEY-----" in value and _PRIVATE_KEY.search(value):
        found.add("private_key")
    if _DIGIT.search(value) is None:
        return found  # words and names: every remaining kind has digits
    if ("$" in value and _PW_HASH.search(value)) or (
        n >= 32 and name and _HEX_HASH.fullmatch(value) and _PW_NAME.search(name)
    ):
        found.add("password_hash")
    if n >= 15 and (_API_KEY.search(value) or (
        n >= 20 and name and _TOKEN.fullmatch(value) and _mixed(value) and _KEY_NAME.search(name)
    )):
        found.add("api_key")
    if _SEVEN_DIGITS.search(value):
        _digit_kinds(value, name, found)
        if n >= 15:
            for m in _IBAN.finditer(value):
                if is_iban(m.group()):
                    found.add("iban")
                    break
    return found


def _mixed(v: str) -> bool:
    return any(c.isdigit() for c in v) and any(c.isalpha() for c in v)


def _digit_kinds(value: str, name: str, found: set[str]) -> None:
    for m in _CARD.finditer(value):
        if is_card(m.group()):
            found.add("card")
            break
    ssn_named = bool(name) and _SSN_NAME.search(name) is not None
    if ("-" in value and _SSN.search(value)) or (ssn_named and len(value) == 9 and value.isdigit()):
        found.add("ssn")
    if "card" not in found and "ssn" not in found:
        if name and _PHONE_NAME.search(name):
            if _PHONE_LOOSE.fullmatch(value.strip()) and _phone_digits_ok(value):
                found.add("phone")
        elif _PHONE_STRICT.search(value):
            found.add("phone")


def _number_kinds(value: int, name: str) -> set[str]:
    if not name:
        return set()
    s = str(abs(value))
    if _CARD_NAME.search(name) and is_card(s):
        return {"card"}
    if _SSN_NAME.search(name) and len(s) == 9:
        return {"ssn"}
    if _PHONE_NAME.search(name) and 7 <= len(s) <= 15:
        return {"phone"}
    return set()


def scan_json(doc: Any) -> set[tuple[str, str]]:
    """(field path, kind) pairs in a decoded JSON document."""
    out: set[tuple[str, str]] = set()
    _walk(doc, "$", "", 0, out)
    return out


def _walk(v: Any, path: str, name: str, depth: int, out: set[tuple[str, str]]) -> None:
    # `path` is the place of `v` itself; leaves are classified before their path string is built
    # (most fields hold nothing sensitive, so most paths are never needed).
    if isinstance(v, dict):
        if depth >= MAX_DEPTH:
            return
        for k, sub in v.items():
            if isinstance(sub, str):
                if len(sub) >= 6:
                    for kind in classify(sub, k):
                        out.add((f"{path}.{_key(k)}", kind))
            elif isinstance(sub, dict | list):
                _walk(sub, f"{path}.{_key(k)}", k, depth + 1, out)
            elif isinstance(sub, int) and not isinstance(sub, bool) and abs(sub) >= 1_000_000:
                for kind in _number_kinds(sub, k):
                    out.add((f"{path}.{_key(k)}", kind))
    elif isinstance(v, list):
        if depth >= MAX_DEPTH:
            return
        here = path + "[]"
        for sub in v[:MAX_ITEMS]:
            if isinstance(sub, str):
                if len(sub) >= 6:
                    for kind in classify(sub, name):
                        out.add((here, kind))
            elif isinstance(sub, dict | list):
                _walk(sub, here, name, depth + 1, out)
    elif isinstance(v, str):
        for kind in classify(v, name):
            out.add((path, kind))


def _key(k: str) -> str:
    return k if len(k) <= 64 else "*"


def scan_text(text: str) -> set[tuple[str, str]]:
    """(\"(body)\", kind) pairs in a non-JSON text body."""
    return {("(body)", kind) for kind in classify(text[:MAX_TEXT])}
