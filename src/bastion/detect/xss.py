"""Cross-site scripting confirmation: does this value, rendered into a page, execute script?

A value can land in four places of a page; we check each way it could start running code there:

- **HTML text**: it opens a tag. We parse every ``<name ...`` the way an HTML5 tokenizer would
  (attributes separated by whitespace or ``/``, quoted or bare values, no ``>`` needed since the page
  supplies one later) and flag: ``<script>``; elements that load active content (iframe, frame, object,
  embed, applet, base href, ``<meta http-equiv=refresh`` to a script URL); any event-handler attribute
  (``on*=``); a script URL (``javascript:``, ``vbscript:``, ``data:text/html``, SVG data) in any URL-bearing
  attribute after entity decoding and the control characters browsers ignore; ``srcdoc`` with markup;
  CSS that runs code (``expression()``, ``behavior``, ``-moz-binding``, script URLs) in ``style``.
- **An attribute value**: it breaks out with a quote (or whitespace, for unquoted values) and adds an
  event handler or a style with code (``" onmouseover="alert(1)``).
- **A URL** (a profile's website, a redirect target, a markdown link): it is a script URL.
- **A JS string or a client-side template**: it closes the string and calls a sink
  (``'-alert(1)-'``, ``";alert(document.cookie)//``), or it is an AngularJS/Vue expression reaching
  ``constructor``/``$eval``.

Where the line is (documented because rich text must pass): plain formatting tags (``<b>``, ``<i>``, ``<p>``,
``<a href="https://...">``, ``<img src="https://...">``, inline ``<svg>`` shapes) are *not* flagged; neither
are ``<3``, ``a < b and c > d``, markdown, or code in backticks that has no executable HTML. A literal
``<script`` tag, an ``on*=`` handler or a ``javascript:`` link *is* flagged even inside a code snippet: if the
application ever renders the field unescaped, that snippet runs, and there is no way to tell from the
value alone that it won't be.

Contract: ``xss_check(value)`` is pure and fast: a single regex pass rejects values with none of the
characters or words an XSS needs; expects an already URL-decoded value.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

__all__ = ["XssResult", "xss_check"]

MAX_SCAN = 8192
MAX_TAGS = 64


@dataclass(frozen=True, slots=True)
class XssResult:
    context: str  # "html", "attribute", "url", "js", "template"
    reason: str  # e.g. "script-tag", "event-handler", "script-url"
    evidence: str  # the tag, attribute or snippet that decided (short, for the event)


_TRIGGER = re.compile(
    r"<[a-z!/?]|\bon[a-z]{3,}[\s\x00-\x20/]*=|script\s*:|data\s*:|\{\{|style\s*=|expression\s*\(|&[#a-z]"
    r"|\\u00|srcdoc|(?:alert|prompt|confirm|eval|print)\s*[(`]|document\s*\.|constructor|\bfetch\s*\(",
    re.IGNORECASE,
)
_TAG_OPEN = re.compile(r"<((?:\?(?=xml-stylesheet|import))?[a-zA-Z][^\s/>\x00]*)")
_ATTR = re.compile(
    r"""[\s/\x00]*(?P<name>[^\s/>=\x00][^\s/>=\x00]*)?(?:[\s\x00]*=[\s\x00]*(?P<value>"[^"]*"?|'[^']*'?|`[^`]*`?|[^\s>]*))?""",
)
_SPACE = re.compile(r"[\x00-\x20\x7f-\xa0\u1680\u180e\u2000-\u200f\u2028\u2029\u205f\u3000\ufeff]+")
_SCRIPT_URL = re.compile(
    r"(?:java|vb|live|ecma)script:|mocha:|data:(?:[^,]*?)(?:text/html|image/svg|application/(?:x-)?(?:javascript|ecmascript|xhtml|xml)|text/(?:x-)?(?:javascript|ecmascript|xml|scriptlet)|text/xsl)",
    re.IGNORECASE,
)
_CSS_CODE = re.compile(
    r"expression\s*\(|(?:java|vb)script\s*:|behaviou?r\s*:|-moz-binding|@import|url\s*\(\s*['\"]?\s*(?:java|vb)script",
    re.IGNORECASE,
)
_CSS_ESCAPE = re.compile(r"\\([0-9a-fA-F]{1,6})\s?|/\*.*?\*/|\\", re.DOTALL)
_URL_ATTRS = frozenset({
    "href", "src", "action", "formaction", "data", "xlink:href", "background", "lowsrc", "dynsrc", "poster",
    "code", "codebase", "from", "to", "values", "by", "ping", "manifest", "icon", "srcset", "cite", "longdesc",
    "archive", "classid", "profile", "folder", "xml:base", "content", "datasrc", "namespace", "import",
    "implementation", "usemap", "itemtype", "target", "filter",
})
_ACTIVE_TAGS = frozenset({"script", "iframe", "object", "embed", "applet", "import", "xss",
                          "vmlframe", "isindex", "xml", "layer", "ilayer", "bgsound", "portal", "listing", "xmp"})
# <frame>/<frameset> do nothing outside a frameset document; they are judged by their attributes
_ALWAYS_TAGS = frozenset({"script", "iframe", "object", "embed", "applet", "vmlframe", "portal"})
_NOT_EVENTS = frozenset({"one", "only", "once", "onset", "onto", "onward", "onwards", "online", "ongoing", "onion",
                         "onions", "onboarding", "onboard", "onsite", "onload-placeholder"})
_EVENT = re.compile(
    r"""(?:^|[\s"'`/;>\x00])(on(?:abort|activate|after\w+|animation\w+|auxclick|before\w+|begin|blur|bounce|cancel|canplay\w*|change|click|close|contextmenu|copy|cuechange|cut|dblclick|deactivate|drag\w*|drop|durationchange|end|ended|error|finish|focus\w*|formdata|fullscreen\w*|gesture\w*|hashchange|help|input|invalid|key\w+|load\w*|lose\w*|message\w*|mouse\w+|move\w*|mozfullscreen\w*|offline|online|overflow\w*|page\w+|paste|pause|play\w*|pointer\w+|popstate|progress|propertychange|ratechange|readystatechange|repeat|reset|resize|scroll\w*|search|securitypolicyviolation|seek\w*|select\w*|show|slotchange|stalled|start|storage|submit|suspend|timeupdate|toggle|touch\w+|transition\w+|unhandledrejection|unload|volumechange|waiting|webkit\w+|wheel|zoom|content\w+|data\w+|error\w*|filter\w+|bounce|rowe\w+|rows\w+|cell\w+|row\w+|layout\w+|control\w+))[\s\x00/]*=""",
    re.IGNORECASE,
)
_STYLE_ATTR = re.compile(r"""(?:^|[\s"'`/])style[\s\x00]*=[\s\x00]*["'`]?([^"'`>]*)""", re.IGNORECASE)
_JS_SINK = re.compile(
    r"""(?:\b(?:alert|prompt|confirm|eval|settimeout|setinterval|execscript|fetch|importscripts|atob)\s*(?:\(\s*(?:[\d'"`/\[\]\-({]|[\w$.]+\s*[),+]|\))|`)"""
    r"""|\bimport\s*\(|\bdocument\s*\.\s*(?:cookie|domain|write\w*|location)|\bwindow\s*\.\s*(?:location|name|open)|\blocation\s*(?:\.\s*(?:href|hash|replace|assign)|=)"""
    r"""|\b(?:window|self|top|parent|this|globalthis|frames|document)\s*\[|\.constructor\s*\(|\bfunction\s*\(\s*\)\s*\{|\bnew\s+function\b|\bstring\s*\.\s*fromcharcode|\$\s*\.\s*getscript|\bxmlhttprequest|\bnavigator\s*\.\s*sendbeacon)""",
    re.IGNORECASE,
)
# A JS string/expression breakout: a quote (possibly escaped), then an operator, statement end or closing
# bracket, then code. "it's 'great'; really" has the quote and ';' but no sink after it.
_JS_BREAK = re.compile(r"""(?:\\?['"`]|</script\s*>)[\s)\]}]*(?:[-+*/%^|&,;?=<>!~]|\)|\]|\}|</script\s*>)""", re.IGNORECASE)
_TEMPLATE = re.compile(
    r"\{\{.*?(?:constructor|\$eval|\$on\b|\$parse|alert\s*\(|prototype|\bcharat\b|__proto__|_c\s*\.|_v\s*\.|\bwindow\b|\bdocument\b).*?(?:\}\}|$)",
    re.IGNORECASE | re.DOTALL,
)
_URL_START = re.compile(r"""(?:^|[\s"'`=(,;>\[\]])\s*((?:java|vb|live|ecma)script\s*:|data\s*:)""", re.IGNORECASE)


def xss_check(value: str) -> XssResult | None:
    """How `value` would execute script if rendered into a page, or None."""
    if not value or len(value) < 4:
        return None
    s = value[:MAX_SCAN]
    if "\x00" in s:  # browsers and filters drop NULs: <scr\0ipt>
        s = s.replace("\x00", "")
    if _TRIGGER.search(s) is None:
        return None
    if "&" in s:
        decoded = _decode_entities(s)
    else:
        decoded = s
    r = _check_tags(s)
    if r is None and decoded is not s:
        r = _check_tags(decoded) if "<" in decoded and "<" not in s else None
    if r is not None:
        return r
    low = decoded.lower()
    return _check_attribute(low) or _check_url(decoded) or _check_js(decoded) or _check_template(s)


def _decode_entities(s: str) -> str:
    """HTML entities as a browser decodes them in attribute values (also without ';': &#106avascript)."""
    return html.unescape(s)


def _clean_url(v: str) -> str:
    """What a URL parser sees: entities decoded, ASCII whitespace/control characters dropped
    (browsers remove tab/newline anywhere and strip leading control characters)."""
    if "&" in v:
        v = _decode_entities(v)
    return _SPACE.sub("", v)


def _css_clean(v: str) -> str:
    if "&" in v:
        v = _decode_entities(v)

    def repl(m: re.Match[str]) -> str:
        hexd = m.group(1)
        if hexd:
            try:
                return chr(int(hexd, 16))
            except (ValueError, OverflowError):
                return ""
        return ""

    return _CSS_ESCAPE.sub(repl, v)


def _check_tags(s: str) -> XssResult | None:
    count = 0
    for m in _TAG_OPEN.finditer(s):
        count += 1
        if count > MAX_TAGS:
            break
        name = m.group(1).lower()
        r = _check_tag(s, name, m.end())
        if r is not None:
            return r
    return None


def _check_tag(s: str, name: str, pos: int) -> XssResult | None:
    """Judge one start tag `<name` whose attributes begin at `pos`."""
    base = name.split(":")[-1].lstrip("?")
    if base == "import":
        return XssResult("html", "active-content", "<?import")
    if base in _ALWAYS_TAGS or base.startswith("script"):
        return XssResult("html", "script-tag" if base == "script" else "active-content", "<" + name[:24])
    attrs = _attributes(s, pos)
    for aname, aval in attrs:
        local = aname.rsplit(":", 1)[-1]
        if local.startswith("on") and len(local) > 4 and local not in _NOT_EVENTS and aval is not None:
            return XssResult("html", "event-handler", f"<{name[:16]} {aname[:24]}=")
        if aval is None:
            continue
        if aname in _URL_ATTRS or local == "href":
            url = _clean_url(aval)
            # anywhere in the value: fuzzers prefix the scheme with characters some engines ignore
            found = _SCRIPT_URL.search(url) is not None
            if not found and base in ("link", "xml-stylesheet") and url.lower().startswith("data:"):
                found = True
            if found:
                return XssResult("html", "script-url", f"<{name[:16]} {aname[:16]}={url[:20]}")
        elif aname == "srcdoc":
            if "<" in aval or "&lt" in aval.lower() or "&#" in aval:
                return XssResult("html", "srcdoc", f"<{name[:16]} srcdoc")
        elif aname == "style":
            if _CSS_CODE.search(_css_clean(aval)):
                return XssResult("html", "style-code", f"<{name[:16]} style")
        elif aname == "attributename" and aval.strip().lower().startswith("on"):
            # SVG <set attributeName="onmouseover" to="alert(1)">: animates a handler into existence
            return XssResult("html", "event-handler", f"<{name[:16]} attributename={aval[:16]}")
        elif aname == "dataformatas" and "html" in aval.lower():
            return XssResult("html", "active-content", f"<{name[:16]} dataformatas")
    if base in ("base",) and any(a == "href" for a, _ in attrs):
        return XssResult("html", "base-href", "<base href")
    if base == "meta":
        equiv = {a: (v or "").lower() for a, v in attrs}
        if "refresh" in equiv.get("http-equiv", "") and "url=" in _clean_url(equiv.get("content", "")).lower():
            return XssResult("html", "meta-refresh", "<meta http-equiv=refresh")
        charset = equiv.get("charset", "") + equiv.get("content", "")
        if re.search(r"utf-?7|imap4-modified", charset):  # UTF-7 decoding turns +ADw- into '<'
            return XssResult("html", "meta-charset", "<meta charset=utf-7")
        if "set-cookie" in equiv.get("http-equiv", ""):
            return XssResult("html", "meta-set-cookie", "<meta http-equiv=set-cookie")
    if base == "link":
        rel = next((v or "" for a, v in attrs if a == "rel"), "").lower()
        if "import" in rel:
            return XssResult("html", "link-import", "<link rel=import")
    if base == "style":
        end = s.lower().find("</style", pos)
        body = s[pos : end if end >= 0 else len(s)]
        if _CSS_CODE.search(_css_clean(body)):
            return XssResult("html", "style-code", "<style>")
    if base in _ACTIVE_TAGS and base not in ("xmp", "listing"):
        return XssResult("html", "active-content", "<" + name[:24])
    return None


def _attributes(s: str, pos: int) -> list[tuple[str, str | None]]:
    """Attributes of a start tag from `pos` to its '>' (or the end of the value), HTML5-style."""
    out: list[tuple[str, str | None]] = []
    n = len(s)
    while pos < n and len(out) < 32:
        if s[pos] == ">":
            break
        m = _ATTR.match(s, pos)
        if m is None or m.end() == pos:
            pos += 1
            continue
        aname = m.group("name")
        aval = m.group("value")
        pos = m.end()
        if aname is None:
            continue
        if aval is not None and aval[:1] in "\"'`":
            aval = aval[1:-1] if len(aval) > 1 and aval[-1] == aval[0] else aval[1:]
        out.append((aname.lower(), aval))
    return out


def _check_attribute(low: str) -> XssResult | None:
    """The value breaks out of an attribute value and adds a handler or code-running style."""
    m = _EVENT.search(low)
    if m is not None:
        name = m.group(1)
        if name not in _NOT_EVENTS:
            return XssResult("attribute", "event-handler", name[:24] + "=")
    m2 = _STYLE_ATTR.search(low)
    if m2 is not None and _CSS_CODE.search(_css_clean(m2.group(1))):
        return XssResult("attribute", "style-code", "style=")
    return None


def _check_url(s: str) -> XssResult | None:
    """A script URL where a URL is expected: the whole value, or after a quote/'='/'(' (markdown links)."""
    for m in _URL_START.finditer(s):
        start = m.start(1)
        tail = _clean_url(s[start : start + 200])
        if _SCRIPT_URL.match(tail) is None:
            continue
        if tail.lower().startswith("data"):
            return XssResult("url", "script-url", tail[:24])
        code = tail.split(":", 1)[1]
        # "javascript:" then code, not prose like "javascript: the good parts"
        if code and (any(c in code for c in "()=`[]{};+") or code[:4].lower() in ("void", "aler", "eval")):
            return XssResult("url", "script-url", tail[:24])
    return None


def _check_js(s: str) -> XssResult | None:
    """A JS string breakout followed by a sink: ';alert(1)//  '-alert(1)-'  "}};fetch('//x')//"."""
    sink = _JS_SINK.search(s)
    if sink is None:
        return None
    head = s[: sink.start()]
    brk = None
    for brk in _JS_BREAK.finditer(head):
        pass
    if brk is None:
        return None
    if sink.start() - brk.end() > 40:
        return None
    return XssResult("js", "string-breakout", s[brk.start() : sink.end()][:32])


def _check_template(s: str) -> XssResult | None:
    if "{{" not in s:
        return None
    m = _TEMPLATE.search(s)
    if m is None:
        return None
    return XssResult("template", "template-expression", m.group()[:32])
