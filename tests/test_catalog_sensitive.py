"""Sensitive data in responses: a leaking fixture API is tagged per field; a clean one is not."""

from __future__ import annotations

import orjson
import pytest

from bastion.catalog import sensitive
from bastion.catalog.learner import Learner
from bastion.exchange import Headers, Response
from bastion.testing import make_exchange

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
BCRYPT = "$2b$12$" + "R9h/cIPz0gi.URNNX3kh2O" + "PST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n-----END"

# What a leaky API returns, field by field, with the kind each field must be tagged with.
LEAKY: dict[str, tuple[object, str]] = {
    "email": ("jane.doe@example.com", "email"),
    "phone": ("+1 415-555-2671", "phone"),
    "card": ("4111 1111 1111 1111", "card"),
    "amex": ("378282246310005", "card"),
    "ssn": ("123-45-6789", "ssn"),
    "iban": ("DE89370400440532013000", "iban"),
    "iban_spaced": ("GB82 WEST 1234 5698 7654 32", "iban"),
    "session": (JWT, "jwt"),
    "aws": ("AKIAIOSFODNN7EXAMPLE", "api_key"),
    "stripe": ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "api_key"),
    "api_key": ("Zx81kQp2LmN7vB3cD9fG4hJ6", "api_key"),
    "private": (PEM, "private_key"),
    "password": (BCRYPT, "password_hash"),
    "password_hash": ("5f4dcc3b5aa765d61d8327deb882cf99", "password_hash"),
    "card_number": (5500000000000004, "card"),
    "mobile": ("(415) 555-2671", "phone"),
}

# What a careful API returns: ids, money, times, hashes that are not passwords, codes.
CLEAN = {
    "id": 4111111111111112, "order_no": "1234567812345670", "uuid": "550e8400-e29b-41d4-a716-446655440000",
    "etag": "da39a3ee5e6b4b0d3255bfef95601890afd80709", "created_at": "2024-03-01T10:00:00Z", "price": 19.99,
    "version": "1.2.3", "ip": "10.0.0.1", "count": 12345678, "tracking": "1Z999AA10123456784",
    "sku": "SKU-12345", "zip": "94107", "isbn": "978-3-16-148410-0", "token_type": "Bearer",
    "expires_in": 3600, "timestamp": 1700000000, "description": "Ships in 2-3 days from our 2nd warehouse",
    "ratio": "1234567.89", "date_range": "2024-01-01/2024-12-31", "checksum": "sha256:9f86d081884c7d659a2feaa0c55ad015",
    "items": [{"qty": 2, "code": "AB12"}], "color": "#1a2b3c", "build": "20240301.1234",
}


def test_luhn_and_card_prefixes() -> None:
    assert sensitive.luhn("4111111111111111")
    assert not sensitive.luhn("4111111111111112")
    assert sensitive.is_card("4111-1111-1111-1111")
    assert not sensitive.is_card("1234567812345670")  # Luhn-valid but no issuer uses 1
    assert not sensitive.is_card("0000000000000000")


def test_iban_checksum() -> None:
    assert sensitive.is_iban("DE89370400440532013000")
    assert not sensitive.is_iban("DE89370400440532013001")
    assert not sensitive.is_iban("DE8937040044053201300")  # wrong length for Germany


def test_every_leak_is_tagged_on_its_field() -> None:
    doc = {"user": {k: v for k, (v, _) in LEAKY.items()}}
    found = sensitive.scan_json(doc)
    for name, (_, kind) in LEAKY.items():
        assert (f"$.user.{name}", kind) in found, name
    kinds_by_field: dict[str, set[str]] = {}
    for f, k in found:
        kinds_by_field.setdefault(f, set()).add(k)
    for name, (_, kind) in LEAKY.items():
        assert kinds_by_field[f"$.user.{name}"] == {kind}, name


def test_a_clean_api_has_nothing() -> None:
    assert sensitive.scan_json(CLEAN) == set()
    assert sensitive.scan_json([CLEAN] * 3) == set()
    assert sensitive.scan_text(orjson.dumps(CLEAN).decode()) == set()


def test_text_bodies_are_searched() -> None:
    found = sensitive.scan_text("<p>Contact jane@example.com, card 4111 1111 1111 1111, SSN 123-45-6789</p>")
    assert found == {("(body)", "email"), ("(body)", "card"), ("(body)", "ssn")}


def _learn(path: str, body: object, ct: str = "application/json") -> Learner:
    lr = Learner()
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    for _ in range(3):
        ex = make_exchange("GET", path, host="api.test")
        ex.response = Response(200, Headers([("Content-Type", ct)]), body=raw, body_size=len(raw))
        lr.observe(ex)
    return lr


def test_learner_tags_per_endpoint_and_field_and_never_stores_values() -> None:
    leaky = {"users": [{k: v for k, (v, _) in LEAKY.items()}]}
    lr = _learn("/api/users", leaky)
    ep = lr.find("api.test", "GET", "/api/users")
    assert ep is not None
    assert ep.sensitive["$.users[].card"] == {"card": 3}
    assert ep.sensitive["$.users[].email"] == {"email": 3}
    assert set(ep.sensitive_kinds()) == {k for _, k in LEAKY.values()}
    stored = orjson.dumps(ep.to_dict()).decode()
    for value, _ in LEAKY.values():
        text = str(value)
        assert text not in stored and text.replace(" ", "") not in stored
    clean = _learn("/api/orders", {"orders": [CLEAN]}).find("api.test", "GET", "/api/orders")
    assert clean is not None and clean.sensitive == {}


def test_html_response_is_scanned_as_text() -> None:
    ep = _learn("/profile", b"<b>jane@example.com</b>", "text/html").find("api.test", "GET", "/profile")
    assert ep is not None and ep.sensitive == {"(body)": {"email": 3}}


@pytest.mark.parametrize("value", ["", "short", "a" * 100_000, "\x00\xff" * 10, "$$$$$$$$", "eyJ" * 1000])
def test_odd_values_do_not_crash(value: str) -> None:
    sensitive.classify(value, "x")
    sensitive.scan_text(value)
