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
import unicodedata
from dataclasses import dataclass

__all__ = ["XssResult", "xss_check"]

MAX_SCAN = 8192
MAX_TAGS = 64


@dataclass(frozen=True, slots=True)
class XssResult:
    context: str  # "html", "attribute", "url", "js", "template"
    reason: str  # e.g. "script-tag", "event-handler", "script-url"
    evidence: str  # the tag, attribute or snippet that decided (short, for the event)


_TAG_OPEN = re.compile(r"<((?:\?(?=xml-stylesheet|import)|:(?=vmlframe))?[a-zA-Z][^\s/>\x00<]*)")
_ATTR = re.compile(
    r"""[\s/\x00]*(?P<name>=?[^\s/>=\x00][^\s/>=\x00]*)?(?:[\s\x00]*=[\s\x00]*(?P<value>"[^"]*"?|'[^']*'?|`[^`]*`?|[^\s>]*))?""",
)
_SPACE = re.compile(r"[\x00-\x20\x7f-\xa0\u1680\u180e\u2000-\u200f\u2028\u2029\u205f\u3000\ufeff]+")
_SCRIPT_URL = re.compile(
    r"(?:java|vb|live|ecma)script:|mocha:|data:[^,]{0,64}?(?:text/html|image/svg|application/(?:x-)?(?:javascript|ecmascript|xhtml|xml)|text/(?:x-)?(?:javascript|ecmascript|xml|scriptlet)|text/xsl)",
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
# Event-handler attribute names browsers fire (plus prefixes of families: onanimation*, onpointer*...).
_EVENT_NAME = re.compile(
    r"""on(?:abort|activate|after\w+|animation\w+|auxclick|before\w+|begin|blur|bounce|cancel|canplay\w*|change|click|close|contextmenu|copy|cuechange|cut|dblclick|deactivate|drag\w*|drop|durationchange|end|ended|error|finish|focus\w*|formdata|fullscreen\w*|gesture\w*|hashchange|help|input|invalid|key\w+|load\w*|lose\w*|message\w*|mouse\w+|move\w*|mozfullscreen\w*|offline|online|overflow\w*|page\w+|paste|pause|play\w*|pointer\w+|popstate|progress|propertychange|ratechange|readystatechange|repeat|reset|resize|scroll\w*|search|securitypolicyviolation|seek\w*|select\w*|show|slotchange|stalled|start|storage|submit|suspend|timeupdate|toggle|touch\w+|transition\w+|unhandledrejection|unload|volumechange|waiting|webkit\w+|wheel|zoom|content\w+|data\w+|error\w*|filter\w+|bounce|rowe\w+|rows\w+|cell\w+|row\w+|layout\w+|control\w+)""",
    re.IGNORECASE,
)
_EVENT = re.compile(r"on([a-z]+)[\s\x00/]*=")  # literal prefix: the regex engine scans for "on" quickly
_EVENT_BEFORE = frozenset(" \t\n\r\f\"'`/;>\x00")
_STYLE_ATTR = re.compile(r"""style[\s\x00]*=[\s\x00]*["'`]?([^"'`>]*)""")
_CALL_ARGS = r"""\s*(?:\(\s*(?:[\d'"`/\[\]\-({]|[\w$.]+\s*[),+]|\))|`)"""
# sink word -> what must follow it for a call/access that runs or leaks something (anchored at the word)
_SINKS: dict[str, re.Pattern[str]] = {
    w: re.compile(p)
    for w, p in {
        "alert": "alert" + _CALL_ARGS, "prompt": "prompt" + _CALL_ARGS, "confirm": "confirm" + _CALL_ARGS,
        "eval": "eval" + _CALL_ARGS, "settimeout": "settimeout" + _CALL_ARGS,
        "setinterval": "setinterval" + _CALL_ARGS, "execscript": "execscript" + _CALL_ARGS,
        "fetch": "fetch" + _CALL_ARGS, "importscripts": "importscripts" + _CALL_ARGS, "atob": "atob" + _CALL_ARGS,
        "import": r"import\s*\(",
        "document": r"document\s*(?:\.\s*(?:cookie|domain|write\w*|location)|\[)",
        "window": r"window\s*(?:\.\s*(?:location|name|open)|\[)",
        "location": r"location\s*(?:\.\s*(?:href|hash|replace|assign)|=)",
        "self": r"self\s*\[", "top": r"top\s*\[", "parent": r"parent\s*\[", "this": r"this\s*\[",
        "globalthis": r"globalthis\s*\[", "frames": r"frames\s*\[",
        "constructor": r"constructor\s*\(", "function": r"""function\s*\(\s*(?:\)\s*\{|['"`])""",
        "fromcharcode": r"fromcharcode\s*\(", "getscript": r"getscript\s*\(", "xmlhttprequest": "xmlhttprequest",
        "sendbeacon": r"sendbeacon\s*\(",
    }.items()
}
_SINK_ANY = re.compile(r"(?<![\w$])(?:" + "|".join(p.pattern for p in _SINKS.values()) + ")")
# A JS string/expression breakout: a quote (possibly escaped), then an operator, statement end or closing
# bracket, then code. "it's 'great'; really" has the quote and ';' but no sink after it.
_JS_BREAK = re.compile(
    r"""(?:\\?['"`]|</script\s*>)[\s)\]}]*(?:[-+*/%^|&,;?=<>!~]|\)|\]|\}|</script\s*>)""", re.IGNORECASE
)
_TEMPLATE = re.compile(
    r"\{\{(?:(?!\}\}).)*?(?:constructor|\$eval|\$on\b|\$parse|alert\s*\(|prototype|\bcharat\b|__proto__|_c\s*\."
    r"|_v\s*\.|\bwindow\s*[.\[]|\bdocument\s*[.\[]).*?\}\}",
    re.IGNORECASE | re.DOTALL,
)
# a scheme right before a ':' (browsers ignore tabs/newlines inside it: "java\tscript:")
_SCHEME_END = re.compile(r"(?:(?:j[\t\n\r]*a[\t\n\r]*v[\t\n\r]*a|vb|live|ecma)[\t\n\r]*s[\t\n\r]*c[\t\n\r]*r"
                         r"[\t\n\r]*i[\t\n\r]*p[\t\n\r]*t|mocha|data)[\s\x00-\x20]*$")
_SCHEME_BEFORE = re.compile(r"""(?:^|[\s"'`=(,;>\[\]\x00-\x20])[\s\x00-\x20]*$""")


def xss_check(value: str) -> XssResult | None:
    """How `value` would execute script if rendered into a page, or None."""
    if not value or len(value) < 4:
        return None
    s = value[:MAX_SCAN]
    if "\x00" in s:  # browsers and filters drop NULs: <scr\0ipt>
        s = s.replace("\x00", "")
    decoded = _decode_entities(s) if "&" in s else s
    r: XssResult | None = None
    if "<" in s:  # entity-escaped markup (&lt;script&gt;) renders as text: not decoded here
        r = _check_tags(s)
    elif "\uff1c" in s:  # fullwidth <script> (U+FF1C): harmless to a browser, but back-ends that NFKC-normalize
        r = _check_tags(unicodedata.normalize("NFKC", s))  # text turn it into markup
    if r is not None:
        return r
    r = _check_bare_js(s)
    if r is not None:
        return r
    low = decoded.lower()
    if "=" in low:
        r = _check_attribute(low)
    if r is None and ":" in low:
        r = _check_url(decoded, low)
    if r is None and ("'" in s or '"' in s or "`" in s or "</" in s):
        r = _check_js(decoded, low)
    if r is None and "{{" in s:
        r = _check_template(s)
    return r


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
    for count, m in enumerate(_TAG_OPEN.finditer(s)):
        if count >= MAX_TAGS:
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
    attrs = _attributes(s, pos)
    if base.startswith("script"):
        if attrs or _script_runs(s, pos) or s[max(0, pos - len(name) - 3) : pos - len(name) - 1] in ('">', "'>"):
            return XssResult("html", "script-tag", "<" + name[:24])
        return None
    embed = base == "iframe" and _embed_frame(attrs)
    if base in _ALWAYS_TAGS and attrs and not embed:
        return XssResult("html", "active-content", "<" + name[:24])
    for aname, aval in attrs:
        local = aname.rsplit(":", 1)[-1]
        if local.startswith("on") and len(local) > 4 and local not in _NOT_EVENTS and aval is not None:
            return XssResult("html", "event-handler", f"<{name[:16]} {aname[:24]}=")
        if aval is None:
            continue
        if aname in _URL_ATTRS or local == "href":
            url = _clean_url(aval[:1024])
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
        if "refresh" in equiv.get("http-equiv", ""):  # injected redirect, to a script URL or a phishing page
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
        if "script" in next((v or "" for a, v in attrs if a == "type"), "").lower():
            return XssResult("html", "style-code", "<style type=text/javascript>")
        end = s.lower().find("</style", pos)
        body = s[pos : end if end >= 0 else len(s)]
        if _CSS_CODE.search(_css_clean(body)):
            return XssResult("html", "style-code", "<style>")
    if base in _ACTIVE_TAGS and base not in ("xmp", "listing") and attrs and not embed:
        return XssResult("html", "active-content", "<" + name[:24])
    return None


# Players and widgets that rich-text editors embed (a YouTube or Vimeo video, a map, a form, a
# slide deck): an https URL on the provider's embed path, or the generic shapes of one (an `/embed`
# path segment, a `player.` or `embed.` host). Such a frame runs in the provider's origin, not the
# page's; what can still make it run code here (a script URL, srcdoc, a handler) is judged as for
# any element.
_EMBED_URL = re.compile(
    r"https://(?:[\w-]+\.)*(?:youtube(?:-nocookie)?\.com/embed/|vimeo\.com/video/|dailymotion\.com/embed/"
    r"|spotify\.com/embed|soundcloud\.com/player/|google\.com/maps/embed|google\.com/maps\?[^#]*output=embed"
    r"|docs\.google\.com/(?:document|spreadsheets|presentation|forms)/|loom\.com/embed/|codepen\.io/[\w-]+/embed/"
    r"|player\.twitch\.tv/|wistia\.(?:net|com)/embed/|figma\.com/embed|ted\.com/talks/|streamable\.com/[eo]/"
    r"|facebook\.com/plugins/|twitter\.com/embed/|instagram\.com/(?:p|reel)/[\w-]+/embed|airtable\.com/embed/"
    r"|miro\.com/app/live-embed/|calendly\.com/|typeform\.com/to/|powerbi\.com/(?:view|reportEmbed)"
    r"|lookerstudio\.google\.com/embed/|datastudio\.google\.com/embed/|slideshare\.net/slideshow/embed_code/"
    r"|bandcamp\.com/EmbeddedPlayer/|mixcloud\.com/widget/|giphy\.com/embed/|tiktok\.com/embed/"
    r"|music\.apple\.com/|canva\.com/design/|player\.bilibili\.com/)"
    r"|https://(?:player|embed)\.[\w.-]+/|https://[\w.-]+(?::\d+)?/(?:[^\s?#]*/)?(?:embed|embed_code|EmbeddedPlayer)(?:[/?#]|$)",
    re.IGNORECASE,
)


def _embed_frame(attrs: list[tuple[str, str | None]]) -> bool:
    """An iframe showing a provider's player or widget: its src an embed URL, no srcdoc."""
    src = None
    for aname, aval in attrs:
        if aname == "srcdoc":
            return False
        if aname == "src" and src is None:
            src = aval
    return src is not None and _EMBED_URL.match(_clean_url(src[:1024])) is not None


def _script_runs(s: str, pos: int) -> bool:
    """A `<script>` without attributes runs what follows it: flag it when that looks like code or the
    element is closed; prose naming the tag ("put it in a <script> tag.") does not."""
    if "</script" in s[:pos].lower():  # closes the page's script, then opens a new one
        return True
    gt = s.find(">", pos)
    if gt < 0:
        return True  # "<script" left open: the page's own markup completes it
    rest = s[gt + 1 : gt + 400]
    lt = rest.find("<")
    code = rest[: lt if lt >= 0 else 80][:80]  # what runs first: up to the next tag
    if "&" in code:  # inside <svg>, script text is entity-decoded: alert&lpar;1&rpar;
        code = html.unescape(code)
    # "...<script>" at the very end: the page's content after the value becomes the script
    return not rest.strip() or "/script" in rest.lower() or any(c in code for c in "(=`[")


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
    for m in _EVENT.finditer(low):
        i = m.start()
        if i > 0 and low[i - 1] not in _EVENT_BEFORE:
            continue
        name = "on" + m.group(1)
        if name not in _NOT_EVENTS and _EVENT_NAME.fullmatch(name):
            return XssResult("attribute", "event-handler", name[:24] + "=")
    for m2 in _STYLE_ATTR.finditer(low):
        i = m2.start()
        if (i == 0 or low[i - 1] in _EVENT_BEFORE) and _CSS_CODE.search(_css_clean(m2.group(1))):
            return XssResult("attribute", "style-code", "style=")
    return None


def _check_url(s: str, low: str) -> XssResult | None:
    """A script URL where a URL is expected: the whole value, or after a quote/'='/'(' (markdown links).
    Found from each ':' backwards, so long text costs one scan for ':' and little else."""
    i = low.find(":")
    seen = 0
    while i >= 0 and seen < 32:
        seen += 1
        window = low[max(0, i - 40) : i]
        m = _SCHEME_END.search(window)
        i_next = low.find(":", i + 1)
        at_start = m is not None and max(0, i - 40) + m.start() == 0
        if m is None or not (at_start or _SCHEME_BEFORE.search(window[: m.start()])):
            i = i_next
            continue
        start = max(0, i - 40) + m.start()
        i = i_next
        tail = _clean_url(s[start : start + 200])
        if _SCRIPT_URL.match(tail) is None:
            continue
        if tail.lower().startswith("data"):
            return XssResult("url", "script-url", tail[:24])
        code = tail.split(":", 1)[1][:60]
        # "javascript:" then code, not prose ("javascript: the good parts") or markup ("JavaScript:</p>")
        if code and code[0] != "<" and (
            any(c in code for c in "()=`[]{};+") or code[:4].lower() in ("void", "aler", "eval")
        ):
            return XssResult("url", "script-url", tail[:24])
    return None


def _check_js(s: str, low: str) -> XssResult | None:
    """A JS string breakout followed by a sink: ';alert(1)//  '-alert(1)-'  "}};fetch('//x')//".

    The breakout quote must be the value's first quote of its kind: it closes the string the value was
    put in (in a code snippet, a quote before a call opens a literal of its own). So only the first
    quote of each kind and each `</script>` are candidates, and the sink is looked for in the 40
    characters after each: long prose costs three `find` calls."""
    starts = []
    for q in "'\"`":
        i = s.find(q)
        if i >= 0:
            starts.append(i - 1 if i > 0 and s[i - 1] == "\\" else i)
    i = low.find("</script")
    while i >= 0 and len(starts) < 8:
        starts.append(i)
        i = low.find("</script", i + 8)
    for start in starts:
        brk = _JS_BREAK.match(s, start)
        if brk is None:
            continue
        sink = _SINK_ANY.search(low, brk.end(), brk.end() + 64)
        if sink is not None and sink.start() - brk.end() <= 40:
            return XssResult("js", "string-breakout", s[brk.start() : sink.end()][:32])
    return None


# The whole value is a script-only expression: a dialog/eval call with short arguments, or JSFuck
# (only []()!+ characters). A value that *is* `alert(document.domain)` has no business but XSS
# probing; longer code that merely contains such a call (a snippet in a comment) is not matched.
_BARE_CALL = re.compile(
    r"""\s*(?:alert|prompt|confirm|eval|settimeout|setinterval|top\s*\[\s*['"`]?alert|window\s*\.\s*alert)"""
    r"""\s*(?:\(\s*(?:\d+|document\s*\.\s*(?:cookie|domain)|window\s*\.\s*origin|origin|['"`][^'"`]{0,24}['"`]|/[^/]{0,24}/"""
    r"""(?:\.source)?|atob\s*\([^)]{0,200}\)|string\s*\.\s*fromcharcode\s*\([\d,\s]{0,200}\))?\s*\)|`[^`]{0,24}`)\s*;?\s*""",
    re.IGNORECASE,
)
_JSFUCK = re.compile(r"[\[\]()!+\s]{24,}")


def _check_bare_js(s: str) -> XssResult | None:
    if len(s) > 400:
        return None
    if _BARE_CALL.fullmatch(s):
        return XssResult("js", "script-call", s.strip()[:32])
    if _JSFUCK.fullmatch(s) and s.count("[") >= 6 and "!" in s:
        return XssResult("js", "jsfuck", s[:16])
    return None


def _check_template(s: str) -> XssResult | None:
    """An AngularJS/Vue expression reaching the sandbox escapes. Each '{{' is judged on the next 300
    characters only, so a value full of braces costs linear time."""
    i = s.find("{{")
    seen = 0
    while i >= 0 and seen < 16:
        seen += 1
        m = _TEMPLATE.match(s[i : i + 300])
        if m is not None:
            return XssResult("template", "template-expression", m.group()[:32])
        i = s.find("{{", i + 2)
    return None
