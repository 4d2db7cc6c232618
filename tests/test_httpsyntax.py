"""HTTP syntax helpers used by the protocol checks."""

from __future__ import annotations

import pytest

from bastion.detect.httpsyntax import (
    NOT_JSON,
    first_byte,
    is_json_type,
    is_token,
    is_xml_type,
    json_ok,
    json_strings,
    known_codec,
    mask,
    parse_json,
    parse_media_type,
    percent_decode,
)


def test_media_type_parser():
    mt = parse_media_type('Multipart/Form-Data; boundary="x;y"; charset=utf-8')
    assert mt.valid and mt.type == "multipart/form-data" and mt.params == {"boundary": "x;y", "charset": "utf-8"}
    assert parse_media_type("application/json;").valid
    assert parse_media_type('text/plain; a="q\\"uoted"').params["a"] == 'q\\"uoted'
    for bad in ("text", "/", "a/b c", 'a/b; x="unterminated', "a/b; =v", "a/b; x=1 2", 'a/b; x="1"junk'):
        assert not parse_media_type(bad).valid, bad
    assert parse_media_type("a/b; charset=x; charset=y").charsets == 2


def test_tokens_and_types():
    assert is_token("X-Custom_1") and not is_token("") and not is_token("a b") and not is_token("a:")
    assert is_json_type("application/json") and is_json_type("application/problem+json")
    assert not is_json_type("application/jsonp")
    assert is_xml_type("text/xml") and is_xml_type("application/soap+xml") and not is_xml_type("text/html")


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [("a%20b", "a b"), ("%250d%250a", "\r\n"), ("%25252e", "."), ("100%", "100%"), ("%zz", "%zz"), ("plain", "plain")],
)
def test_percent_decode(raw, decoded):
    assert percent_decode(raw) == decoded


def test_mask_is_short_and_printable():
    out = mask("a\r\nb\x00" + "x" * 100)
    assert out.startswith("a\\r\\nb\\x00") and out.endswith("...") and len(out) <= 51
    assert mask("\U00010000" * 40, 16).endswith("...") and len(mask("\U00010000" * 40, 16)) <= 19


def test_json_ok():
    assert json_ok(b'{"a": [1, 2, {"b": null}]}', "utf-8")
    assert json_ok(b"\xef\xbb\xbf[]", "utf-8") and json_ok(b"  ", "utf-8")
    assert json_ok(b'{"x": NaN}', "utf-8")  # Python's json writes this
    assert json_ok(b'{"a": 1}\n{"b": 2}\n', "utf-8")  # JSON lines
    assert json_ok('{"a": "é"}'.encode("utf-16"), "utf-16")
    for bad in (b"a=1&b=2", b"{'a': 1}", b'{"a": 1', b"<a/>", b"\xff\xfe", b"{}\nnot json"):
        assert not json_ok(bad, "utf-8"), bad
    assert not json_ok(b"{}", "utf-16-bogus")


def test_known_codec_and_first_byte():
    assert known_codec("utf-8") and known_codec("Shift_JIS") and known_codec("koi8-r")
    assert not known_codec("garbage") and not known_codec("utf-88") and not known_codec("")
    assert first_byte(b"\xef\xbb\xbf \r\n {") == b"{" and first_byte(b"") == b""


def test_parse_json_and_strings():
    assert parse_json(b"not json") is NOT_JSON and parse_json(b"  ") is None
    assert parse_json(b'{"a": 1}\n{"b": 2}') == [{"a": 1}, {"b": 2}]
    doc = parse_json(b'{"a": ["x", {"b": "y", "n": 1}], "c": null}')
    assert sorted(json_strings(doc)) == [("a", "a"), ("a", "x"), ("b", "b"), ("b", "y"), ("c", "c"), ("n", "n")]
    deep = parse_json(b"[" * 500 + b'"z"' + b"]" * 500)
    assert ("", "z") in list(json_strings(deep))  # no recursion limit on nesting
    assert len(list(json_strings(list(range(50_000)), budget=100))) == 0  # bounded work
