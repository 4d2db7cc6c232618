"""Zones: every inspectable value of a request (or response), where it lives and under which name.

A value is inspected where it lives, with its parameter name, so exclusions and events can name
it: `query:q`, `json:user.bio`, `header:user-agent`, `cookie:session`, `multipart:avatar`.

Zone groups (what rules select):
    path        the URL path (percent-encoded as sent; the decode view decodes it)
    args        argument values: query, urlencoded and multipart fields, JSON string values,
                XML text and attribute values, an unparsable body
    arg_names   argument names: query and form names, JSON keys (with their path)
    cookies     cookie values (cookie names go to arg_names)
    headers     request header values, minus the transport/negotiation ones (SKIP_HEADERS)
    filenames   multipart file names
    body        the raw text of an XML or unparsable body (XXE needs the DOCTYPE, which no parsed
                value holds); JSON, form and multipart bodies are inspected field by field
    response    the response body text (leak rules)
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote_plus

import orjson

from bastion.detect.signatures.transforms import VIEWS
from bastion.exchange import Request

ZONES = ("path", "args", "arg_names", "cookies", "headers", "filenames", "body", "response")

# Headers whose values are transport framing or negotiation: inspecting them costs time and
# finds nothing (their syntax is checked by the protocol detector). Authorization holds secrets.
SKIP_HEADERS = frozenset(
    {
        "host", "content-length", "connection", "keep-alive", "accept", "accept-encoding",
        "accept-language", "cache-control", "pragma", "upgrade-insecure-requests", "te",
        "if-none-match", "if-modified-since", "authorization", "proxy-authorization", "cookie",
        "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "sec-fetch-user", "sec-ch-ua",
        "sec-ch-ua-mobile", "sec-ch-ua-platform", "priority", "dnt", "content-encoding",
    }
)

MAX_VALUES = 1024  # per phase; beyond this the rest is joined into one overflow value
MAX_DEPTH = 64

# A name that is a plain identifier (`page`, `user_id`, `X-Trace`) cannot carry any attack the
# rules look for; only names with punctuation (`a[$ne]`, `__proto__`, `<x>`) are inspected.
_SIMPLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,40}")
# Session cookie names: as a query or form *parameter* (never as a cookie) one of these plants a
# session id chosen by someone else (session fixation), so it is inspected although it is plain
# (only when the request comes from another site or none: see _foreign_or_no_referer). The
# framework-specific names count in JSON bodies too; the generic ones (`session_id`) only as URL
# or form parameters, since a JSON API's `session_id` field is ordinary data.
SESSION_PARAM_NAMES = frozenset(
    {"jsessionid", "phpsessid", "phpsession", "aspsessionid", "asp.net_sessionid", "cfid", "cftoken", "cfsid",
     "laravel_session", "connect.sid", "_flask_session", "ci_session", "weblogicsession", "jservsession",
     "jwsession", "rack.session", "play_session", "sails.sid", "cakephp", "koa.sess", "koa:sess",
     "zend_session_id", "shiny-token", "meteor_login_token", "next-auth.session-token"}
)
# Generic names (and Rails' `_<app>_session`, see session_param_name): URL and form parameters
# of a browser navigation only (see Collector._navigation).
GENERIC_SESSION_PARAM_NAMES = frozenset({"sessionid", "session_id", "session-id", "_session_id"})
_SESSION_ANY = SESSION_PARAM_NAMES | GENERIC_SESSION_PARAM_NAMES


def session_param_name(low: str, generic: bool = True) -> bool:
    """Whether the lower-cased parameter name `low` is a session cookie's name (see above)."""
    if low.startswith(("__host-", "__secure-")):  # cookie prefixes: `__Host-next-auth.session-token`
        low = low[low.index("-") + 1:]
    return (
        low in SESSION_PARAM_NAMES
        or low.startswith("aspsessionid")  # ASPSESSIONIDQADRBSTC
        or (generic and (low in GENERIC_SESSION_PARAM_NAMES or (low[:1] == "_" and low.endswith("_session"))))
    )


_SUSPICIOUS_IN_PATH = re.compile(r"__|prototype|constructor|class|\$|java", re.IGNORECASE)
_B64_ZONES = frozenset({"args", "cookies", "headers"})

_B64 = re.compile(r"[A-Za-z0-9+/_-]{6,}={0,2}")

# A path segment made of these alone is an ordinary resource name; any other segment is also
# inspected on its own, so that rules anchored at a value's start (`sleep(20)`, `OR '1'='1`,
# `subSTR($x)`) see it the way the application's router hands it to the code.
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9._~@:,=+-]*")


# A value without any of these has every view equal to itself (no transform changes it): the
# common case, checked with one regex search instead of one call per view.
# (`//` right after a scheme's colon is left alone: the path view only folds repeated slashes,
# which in `https://host/x` changes nothing any rule looks at.)
_TRANSFORMABLE = re.compile(r"[%&\\\x00'\"$^]|/[*.]|(?<!:)//|\*/|[^\x00-\x7f]|\s{16}")


_BASE_VIEWS = frozenset({"raw", "decode"})


class Value:
    """One inspected value and its transformation views (each computed once, on first use)."""

    __slots__ = ("name", "plain", "source", "views", "zone")

    def __init__(self, zone: str, source: str, name: str, raw: str) -> None:
        self.zone = zone
        self.source = source
        self.name = name
        self.views: dict[str, str] = {"raw": raw}
        self.plain = (raw.isascii() and raw.isalnum()) or _TRANSFORMABLE.search(raw) is None

    @property
    def raw(self) -> str:
        return self.views["raw"]

    def all_views(self, names: tuple[str, ...]) -> list[str]:
        """The distinct texts of the views `names` (all but raw derive from decode), computed once."""
        views = self.views
        raw = views["raw"]
        if self.plain:
            return [raw]
        d = views.get("decode")
        if d is None:
            d = views["decode"] = VIEWS["decode"][1](raw)
        out = [raw] if d == raw else [raw, d]
        for name in names:
            if name in _BASE_VIEWS:
                continue
            t = views.get(name)
            if t is None:
                t = views[name] = VIEWS[name][1](d)
            if t != d and t not in out:
                out.append(t)
        return out

    def view(self, name: str) -> str:
        if self.plain:
            return self.views["raw"]
        v = self.views.get(name)
        if v is None:
            base, fn = VIEWS[name]
            v = fn(self.view(base or "raw"))
            self.views[name] = v
        return v

    @property
    def label(self) -> str:
        """`source:name` as shown in findings and matched by exclusions."""
        return f"{self.source}:{self.name}" if self.name else self.source

    def __repr__(self) -> str:
        return f"Value({self.zone}, {self.label}, {self.raw[:40]!r})"


@dataclass(slots=True)
class ZoneOptions:
    base64: bool = True
    multipart_file_content: bool = False
    max_values: int = MAX_VALUES


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def maybe_base64(v: str) -> str | None:
    """The decoded text when `v` is base64 (or base64url) of printable text; None otherwise.

    Binary payloads (images, encrypted tokens) decode to non-text and are left alone.
    """
    n = len(v)
    if n % 4 or n < 8 or n > 16384:
        return None  # encoders pad to a multiple of 4; random tokens mostly are not
    if v.islower() or v.isupper() or not _B64.fullmatch(v):
        return None  # one-case tokens (hex ids, UUIDs, words) are not base64 of text
    s = v.rstrip("=")
    try:
        raw = base64.b64decode(s + "=" * (-len(s) % 4), altchars=b"-_" if ("-" in s or "_" in s) else None)
    except (binascii.Error, ValueError):
        return None
    if len(raw) < 3:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(1 for c in text if c.isprintable() or c in "\t\r\n")
    if printable < len(text) * 0.95:
        return None
    return text


# (header name, value, base64 probe) -> the Values add() made of it (see Collector.add_header)
_HEADER_VALUES: dict[tuple[str, str, bool], tuple[Value, ...]] = {}


class Collector:
    """Builds the value list of one phase, capped at `max_values`."""

    __slots__ = ("_session_names", "b64", "max", "overflow", "req", "values")

    def __init__(self, opts: ZoneOptions, req: Request | None = None) -> None:
        self.req = req  # for the session-fixation context, computed only if a session name shows up
        self._session_names: bool | None = None
        self.values: list[Value] = []
        self.max = opts.max_values
        self.b64 = opts.base64
        self.overflow: list[str] = []

    def add(self, zone: str, source: str, name: str, raw: str) -> None:
        if not raw:
            return
        values = self.values
        if len(values) >= self.max:
            self.overflow.append(raw)
            return
        values.append(Value(zone, source, name, raw))
        n = len(raw)
        if self.b64 and n >= 8 and not n % 4 and zone in _B64_ZONES and " " not in raw:  # see maybe_base64
            decoded = maybe_base64(raw)
            if decoded is not None:
                self.values.append(Value(zone, source, f"{name}(base64)", decoded))

    def add_header(self, low: str, raw: str) -> None:
        """add("headers", "header", low, raw), sharing the Values of a recurring header line between
        requests: the same User-Agent, Accept, Referer... arrive on request after request, and a
        Value (its plain check, base64 probe and transformation views) depends on its text only."""
        if not raw:
            return
        values = self.values
        if len(values) >= self.max:
            self.overflow.append(raw)
            return
        cache = _HEADER_VALUES
        key = (low, raw, self.b64)
        made = cache.get(key)
        if made is not None:
            values.extend(made)
            return
        mark = len(values)
        self.add("headers", "header", low, raw)
        if len(raw) <= 512:
            if len(cache) >= 4096:
                cache.clear()
            cache[key] = tuple(values[mark:])

    def add_name(self, source: str, name: str, raw: str) -> None:
        """An argument name, unless it is a plain identifier (see _SIMPLE_NAME); a session cookie's
        name only as a parameter of a request from elsewhere (see SESSION_PARAM_NAMES)."""
        low = raw.lower()
        if low in _SESSION_ANY or (("sess" in low or low[:2] == "__") and session_param_name(low)):
            if source != "cookie" and self.session_names and (
                session_param_name(low, generic=False) or self._navigation()
            ):
                self.add("arg_names", source, name, raw)
        elif _SIMPLE_NAME.fullmatch(raw) is None:
            self.add("arg_names", source, name, raw)

    def _navigation(self) -> bool:
        """Whether the request is a browser's: it comes from another site's page (a Referer, which
        session_names has found foreign) or accepts HTML. A fixation link is followed by a
        browser, while an API client sending a generic `session_id` has neither."""
        h = self.req.headers if self.req is not None else None
        return h is not None and (bool(h.get("referer")) or "html" in (h.get("accept") or "").lower())

    @property
    def session_names(self) -> bool:
        """Whether session-cookie names used as parameters are inspected (see _foreign_or_no_referer)."""
        if self._session_names is None:
            self._session_names = self.req is not None and _foreign_or_no_referer(self.req)
        return self._session_names

    def finish(self) -> list[Value]:
        if self.overflow:
            # Cap the per-value work, not the inspection: the rest is still scanned, as one value.
            self.values.append(Value("args", "overflow", "(overflow)", "\n".join(self.overflow)))
            self.overflow = []
        return self.values


def _foreign_or_no_referer(req: Request) -> bool:
    """True when the request does not come from a page of the same site: no Referer, or one on
    another host. An application that rewrites URLs with its session id (`;jsessionid=`,
    `?PHPSESSID=`) links to itself; a fixation link arrives from elsewhere or is typed in."""
    referer = req.headers.get("referer")
    if not referer:
        return True
    m = _REFERER_HOST.match(referer)
    return m is None or _host_only(m.group(1)) != _host_only(req.headers.get("host") or "")


def _host_only(h: str) -> str:
    h = h.strip().lower()
    return h[: h.find("]") + 1] if h.startswith("[") else h.partition(":")[0]


_REFERER_HOST = re.compile(r"\s*[a-z][a-z0-9+.-]*://(?:[^/@\s]*@)?(\[[^\]]*\]|[^/:?#\s]*)", re.IGNORECASE)


def request_head_values(req: Request, opts: ZoneOptions) -> list[Value]:
    """Values known once the request head is in: path, query, cookies, headers."""
    c = Collector(opts, req)
    path = req.path
    c.add("path", "path", "", path)
    if path.count("/") > 1 and _PLAIN_SEGMENT.fullmatch(path.replace("/", "")) is None:
        for seg in path.split("/"):
            if seg and _PLAIN_SEGMENT.fullmatch(seg) is None:
                c.add("path", "path", "segment", seg)
                if "+" in seg:
                    # Routers that form-decode path parameters read `+` as a space: `24'union+all+
                    # select+1` reaches the code as SQL.
                    c.add("path", "path", "segment", seg.replace("+", " "))
    query = req.query
    if query:
        # An unencoded `&` inside a value (`ip=1.2.3.4&&ping -c 9 x`) splits it: a program reading
        # the raw query (CGI, a shell wrapper) sees it whole, so the value followed by its `=`-less
        # pieces is also inspected as one value.
        joined: list[str] = []
        last_k = ""
        for part in query.split("&"):
            if "=" not in part and joined:
                joined.append(part)
                continue
            if len(joined) > 1:
                c.add("args", "query", last_k, unquote_plus("&".join(joined), errors="surrogateescape"))
            joined = []
            if not part:
                continue
            k, _, v = part.partition("=")
            # Decoded once, as the application will (unquote only when there is something to undo).
            if "%" in k or "+" in k:
                k = unquote_plus(k, errors="surrogateescape")
            if "=" in part:
                c.add_name("query", k, k)
                joined = [part[len(part) - len(v):]]
                last_k = k
            else:  # `?<payload>`: a bare key is the whole value, plain or not
                c.add("arg_names", "query", k, k)
            if "%" in v or "+" in v:
                v = unquote_plus(v, errors="surrogateescape")
            c.add("args", "query", k, v)
        if len(joined) > 1:
            c.add("args", "query", last_k, unquote_plus("&".join(joined), errors="surrogateescape"))
    for name, value in req.headers.items:
        low = name.lower()
        if low == "cookie":
            _cookies(c, value)
        elif low not in SKIP_HEADERS:
            c.add_header(low, value)
    return c.finish()


def _cookies(c: Collector, header: str) -> None:
    for part in header.split(";"):
        k, sep, v = part.strip().partition("=")
        if not sep:
            c.add("cookies", "cookie", "", k)
            continue
        c.add_name("cookie", k, k)
        c.add("cookies", "cookie", k, v)


# Request content codings Python decodes without extra packages (zlib window bits).
_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
MAX_INFLATED = 1 << 20  # decoded bytes inspected at most (a 1 KB gzip bomb inflates to gigabytes)


def decoded_body(req: Request) -> bytes:
    """The request body with its gzip/deflate Content-Encoding undone (bounded, best effort): the
    API decompresses it, so a compressed payload must not be invisible. Other codings: as sent."""
    body = req.body
    coding = req.headers.get("content-encoding")
    if not body or coding is None:
        return body
    wbits = _CODINGS.get(coding.strip(" \t").lower())
    if wbits is None:
        return body
    for bits in (wbits, -zlib.MAX_WBITS) if wbits == zlib.MAX_WBITS else (wbits,):  # deflate: zlib or raw
        try:
            return zlib.decompressobj(bits).decompress(body, MAX_INFLATED)
        except zlib.error:
            continue
    return body


def request_body_values(req: Request, opts: ZoneOptions) -> list[Value]:
    """Values of the request body, parsed by its content type; unknown bodies are inspected raw."""
    body = decoded_body(req)
    if not body:
        return []
    c = Collector(opts, req)
    text = _text(body)
    ct_raw = req.headers.get("content-type") or ""
    ct = ct_raw.lower()
    parsed = False
    stripped = text.lstrip()
    if "json" in ct or (stripped[:1] in ("{", "[") and "form" not in ct and "xml" not in ct):
        parsed = _json(c, body)
    if not parsed and "multipart/" in ct:
        parsed = _multipart(c, body, ct_raw, opts)
    if not parsed and ("xml" in ct or stripped.startswith("<?xml") or stripped.startswith("<!")):
        # The raw text too: a DOCTYPE (XXE) lives in no parsed value.
        c.add("body", "body", "", text)
        parsed = _xml(c, text)
    if not parsed and ("x-www-form-urlencoded" in ct or (not ct and "=" in text and " " not in text)):
        parsed = _form(c, text)
    if not parsed:
        c.add("body", "body", "", text)
        c.add("args", "body", "", text)
    return c.finish()


def _form(c: Collector, text: str) -> bool:
    for part in text.split("&"):
        if not part:
            continue
        k, sep, v = part.partition("=")
        if "%" in k or "+" in k:  # unquote only when there is something to undo (same result)
            k = unquote_plus(k, errors="surrogateescape")
        if sep:
            c.add_name("form", k, k)
        else:  # a bare key (a body sent as one word) is the whole value, plain or not
            c.add("arg_names", "form", k, k)
        c.add("args", "form", k, unquote_plus(v, errors="surrogateescape") if "%" in v or "+" in v else v)
    return True


def _json(c: Collector, body: bytes) -> bool:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    # Iterative walk: a deeply nested document must not hit the recursion limit.
    stack: list[tuple[object, str, int]] = [(doc, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            c.add("args", "json", path or "$", node)
        elif isinstance(node, dict):
            if depth >= MAX_DEPTH:
                c.add("args", "json", path or "$", _deep_text(node))
                continue
            items = list(node.items())
            for k, v in reversed(items):
                sub = f"{path}.{k}" if path else str(k)
                if not depth and (
                    (low := sub.lower()) in _SESSION_ANY
                    or (("sess" in low or low[:2] == "__") and session_param_name(low))
                ):
                    if c.session_names and session_param_name(low, generic=False):
                        c.add("arg_names", "json", sub, sub)
                # The whole path: `password.$ne` says more than `$ne`.
                elif _SIMPLE_NAME.fullmatch(str(k)) is None or _SUSPICIOUS_IN_PATH.search(sub):
                    c.add("arg_names", "json", sub, sub)
                stack.append((v, sub, depth + 1))
        elif isinstance(node, list):
            if depth >= MAX_DEPTH:
                c.add("args", "json", path or "$", _deep_text(node))
                continue
            for v in reversed(node):
                stack.append((v, path, depth + 1))
        # numbers, booleans and null carry no injection
    return True


def _deep_text(node: object) -> str:
    """The keys and strings below MAX_DEPTH as one value, walked without recursion.

    Serialising the subtree instead (orjson.dumps) fails past ~255 levels, and a detector that
    fails lets the request through: a payload nested 300 deep must be inspected, not skipped.
    """
    parts: list[str] = []
    stack: list[object] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, str):
            parts.append(n)
        elif isinstance(n, dict):
            for k, v in n.items():
                parts.append(str(k))
                stack.append(v)
        elif isinstance(n, list):
            stack.extend(reversed(n))
    return " ".join(parts)


_DISPOSITION_PARAM = re.compile(r'(\w+)\*?=(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))', re.IGNORECASE)


def _multipart(c: Collector, body: bytes, ct: str, opts: ZoneOptions) -> bool:
    m = re.search(r'boundary="?([^";,]+)"?', ct, re.IGNORECASE)  # the boundary keeps its case
    if not m:
        return False
    delim = b"--" + m.group(1).strip().encode("latin-1", "replace")
    parts = body.split(delim)
    if len(parts) < 2:
        return False
    for part in parts[1:]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = part.partition(b"\n\n")
        if content.endswith(b"\r\n"):
            content = content[:-2]
        elif content.endswith(b"\n"):
            content = content[:-1]
        name, filename, part_ct = "", None, ""
        for line in _text(head).splitlines():
            hname, _, hval = line.partition(":")
            hname = hname.strip().lower()
            if hname == "content-disposition":
                for pm in _DISPOSITION_PARAM.finditer(hval):
                    key, val = pm.group(1).lower(), pm.group(2) if pm.group(2) is not None else pm.group(3)
                    if key == "name":
                        name = val
                    elif key == "filename":
                        filename = val
            elif hname == "content-type":
                part_ct = hval.strip().lower()
            elif hname:
                c.add("headers", "multipart-header", hname, hval.strip())
        if name:
            c.add_name("multipart", name, name)
        if filename is not None:
            c.add("filenames", "multipart", name, filename)
            textual = part_ct.startswith("text/") or "json" in part_ct or "xml" in part_ct
            if not (opts.multipart_file_content and textual):
                continue
        c.add("args", "multipart", name, _text(content))
    return True


_XML_ATTR = re.compile(r"""([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_XML_TEXT = re.compile(r">([^<]+)<")
_XML_CDATA = re.compile(r"<!\[CDATA\[(.*?)\]\]>", re.DOTALL)
_XML_TAG = re.compile(r"<([\w:.-]+)[^>]*>")


def _xml(c: Collector, text: str) -> bool:
    """Text and attribute values of an XML body, found lexically: no parser, so no entity expansion."""
    for m in _XML_CDATA.finditer(text):
        c.add("args", "xml", "cdata", m.group(1))
    for m in _XML_TAG.finditer(text):
        tag = m.group(1)
        for a in _XML_ATTR.finditer(m.group(0)):
            val = a.group(2) if a.group(2) is not None else a.group(3)
            c.add("args", "xml", f"{tag}@{a.group(1)}", val)
    for m in _XML_TEXT.finditer(text):
        t = m.group(1).strip()
        if t:
            c.add("args", "xml", "text", t)
    return True


def response_values(body: bytes, content_type: str) -> list[Value]:
    """The response body as text, unless it is binary (images, archives, fonts)."""
    if not body:
        return []
    ct = content_type.lower()
    if ct and not any(t in ct for t in ("text", "json", "xml", "html", "javascript", "problem")):
        return []
    return [Value("response", "response", "body", _text(body))]


def values_by_zone(values: Iterable[Value]) -> dict[str, list[Value]]:
    out: dict[str, list[Value]] = {}
    for v in values:
        out.setdefault(v.zone, []).append(v)
    return out
