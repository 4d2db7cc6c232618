"""Views of a value: each decoding an evasion relies on."""

from __future__ import annotations

import pytest

from bastion.detect.signatures.transforms import cmd, decode, jndi, path, sql, url_decode


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("%3Cscript%3E", "<script>"),
        ("%253Cscript%253E", "<script>"),  # double encoding
        ("%25253Cscript%25253E", "<script>"),  # triple
        ("%u003cscript%u003e", "<script>"),  # IIS %u
        ("..%c0%af..%c0%afetc", "../../etc"),  # overlong UTF-8 slash
        ("\udcc0\udcae\udcc0\udcae/etc", "../etc"),  # overlong dots already percent-decoded by the zone parser
        ("&lt;img src=x&gt;", "<img src=x>"),
        ("&#x3c;svg&#62;", "<svg>"),
        ("\\u003cscript\\u003e", "<script>"),
        ("\\x3cscript\\x3e", "<script>"),
        ("\uff1cscript\uff1e", "<script>"),  # full-width forms
        ("http://\u2460\u2461\u2466.\u24ea.\u24ea.\u2460/", "http://127.0.0.1/"),  # enclosed digits (NFKC, as IDNA)
        ("\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3", "localhost"),
        ("\ufe64svg\ufe65", "<svg>"),  # small forms
        ("\u00bcscript\u00be", "\u00bcscript\u00be"),  # Latin-1 is kept: US-ASCII bit-stripping vectors
        ("a\x00b", "ab"),
        ("ja&tab;vascript&colon;", "ja\tvascript:"),  # IE reads named entities in any letter case
        ("v&NewLine;b&TAB;s", "v\nb\ts"),
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("plain text", "plain text"),
    ],
)
def test_decode(raw: str, expected: str) -> None:
    assert decode(raw) == expected


def test_decode_leaves_unicode_text_alone() -> None:
    s = "Привет, 你好 🌍 café"
    assert decode(s) == s
    s = "Zoë Saldaña, 山田太郎, 김민준, محمد, e\u0301"  # composed or not, nothing to fold
    assert decode(s) == s


def test_url_decode_keeps_invalid_sequences() -> None:
    assert url_decode("100% sure %zz") == "100% sure %zz"


def test_sql_opens_comments() -> None:
    assert "union select" in " ".join(sql("union/**/select").split())
    assert "union" in sql("/*!50000union*/ select").lower()
    assert sql("1'\udca0union\udca0select\udca01") == "1' union select 1"  # a raw %A0 byte is a MySQL blank


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("c'a't /e't'c/passwd", "cat /etc/passwd"),
        ('c""at /etc/passwd', "cat /etc/passwd"),
        ("c\\at /etc/passwd", "cat /etc/passwd"),
        ("x;ca\\\nt /etc/passwd", "x;cat /etc/passwd"),  # backslash-newline continues the line
        ("x;ca\\\r\nt /etc/passwd", "x;cat /etc/passwd"),
        ("cat${IFS}/etc/passwd", "cat /etc/passwd"),
        ("ca$@t /etc/passwd", "cat /etc/passwd"),
        ("c^m^d", "cmd"),
        ("a; sh$XX -c id", "a; sh -c id"),
        ("|$u wget x", "| wget x"),
        ("echo $HOME/x", "echo $HOME/x"),
        ("cat $FILE", "cat $FILE"),
    ],
)
def test_cmd(raw: str, expected: str) -> None:
    assert cmd(raw) == expected


def test_path() -> None:
    assert path("..\\..\\windows") == "../../windows"
    assert path("/a/./b//c") == "/a/b/c"


@pytest.mark.parametrize(
    "raw",
    [
        "${${lower:j}ndi:ldap://x/a}",
        "${${::-j}${::-n}${::-d}${::-i}:ldap://x/a}",
        "${${env:NOPE:-j}ndi:ldap://x/a}",
        "${${upper:j}${upper:n}di:ldap://x/a}",
        "${${date:'j'}ndi:ldap://x/a}",
    ],
)
def test_jndi_lookups_are_evaluated(raw: str) -> None:
    assert jndi(raw).lower().startswith("${jndi:")
