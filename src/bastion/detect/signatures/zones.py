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
from urllib.parse import unquote, unquote_to_bytes

import orjson

from bastion.detect.signatures.transforms import VIEWS, decode, white_space_run
from bastion.exchange import Request

ZONES = ("path", "args", "arg_names", "cookies", "headers", "filenames", "body", "response")

# Headers whose values are transport framing or negotiation: inspecting them costs time and
# finds nothing (their syntax is checked by the protocol detector).
SKIP_HEADERS = frozenset(
    {
        "host", "content-length", "connection", "keep-alive", "accept", "accept-encoding",
        "accept-language", "cache-control", "pragma", "upgrade-insecure-requests", "te",
        "if-none-match", "if-modified-since", "cookie",
        "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "sec-fetch-user", "sec-ch-ua",
        "sec-ch-ua-mobile", "sec-ch-ua-platform", "priority", "dnt", "content-encoding",
    }
)

# Credentials are inspected unless they are a scheme and a token68 (RFC 9110 §11.4: a JWT, an API
# key, Basic's base64), which no injection can be written in: scanners spray `${jndi:...}` and SQL
# into Authorization. Findings never show the value (the detector masks secret-looking names).
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization"})
_TOKEN68 = re.compile(r"[ \t]*[A-Za-z][\w.+-]*(?:[ \t]+[A-Za-z0-9._~+/-]+=*)?[ \t]*")
# Credentials found to be plain tokens: a client sends the same token on request after request, and
# the match above reads every character of it (a JWT is hundreds).
_PLAIN_TOKENS: set[str] = set()
PLAIN_TOKENS_KEPT = 4096


def _plain_token(value: str) -> bool:
    """Whether a credential header's value is a scheme and a token68 (see _TOKEN68)."""
    if value in _PLAIN_TOKENS:
        return True
    if _TOKEN68.fullmatch(value) is None:
        return False
    if len(value) <= 4096:
        if len(_PLAIN_TOKENS) >= PLAIN_TOKENS_KEPT:
            _PLAIN_TOKENS.clear()
        _PLAIN_TOKENS.add(value)
    return True

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


def session_param_name(low: str, generic: bool = True) -> bool:
    """Whether the lower-cased parameter name `low` is a session cookie's name (see above)."""
    if low.startswith(("__host-", "__secure-")):  # cookie prefixes: `__Host-next-auth.session-token`
        low = low[low.index("-") + 1:]
    return (
        low in SESSION_PARAM_NAMES
        or low.startswith("aspsessionid")  # ASPSESSIONIDQADRBSTC
        or (generic and (low in GENERIC_SESSION_PARAM_NAMES or (low[:1] == "_" and low.endswith("_session"))))
    )


# (`xdebug`: a debugger trigger in a parameter name, 913150, is the one thing such a name says)
_SUSPICIOUS_IN_PATH = re.compile(r"__|prototype|constructor|class|\$|java|xdebug", re.IGNORECASE)
_B64_ZONES = frozenset({"args", "cookies", "headers"})

_B64 = re.compile(r"[A-Za-z0-9+/_-]{6,}={0,2}")

# A path segment made of these alone is an ordinary resource name; any other segment is also
# inspected on its own, so that rules anchored at a value's start (`sleep(20)`, `OR '1'='1`,
# `subSTR($x)`) see it the way the application's router hands it to the code.
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9._~@:,=+-]*")


# A value without any of these has every view equal to itself (no transform changes it): the
# common case. Any non-ASCII character, one of the characters below, `/*`, `*/`, `/.`, `//` (but
# not right after a scheme's colon: the path view only folds repeated slashes, which in
# `https://host/x` changes nothing any rule looks at) or a run of 16 white-space characters.
# Tested with str methods and one character-class search: an alternation regex costs ~30 ns per
# character in `re`, which over every value of every request was a tenth of the inspection.
_TRANSFORM_CHARS = re.compile(r"[%&\\\x00'\"$^]")
_SPACES16 = " " * 16


def _slashes_change(s: str) -> bool:
    """Whether the path view would change `s`: `/*`, `/.`, or `//` not right after a colon."""
    if "/*" in s or "/." in s:
        return True
    i = s.find("//")
    while i >= 0:
        if i == 0 or s[i - 1] != ":":
            return True
        i = s.find("//", i + 1)
    return False


# Printable ASCII that no transform reacts to alone (`/` only in the pairs above; no `*`): a value
# made of these is plain unless it holds 16 spaces in a row or such a pair (one match settles most).
# A fullmatch of the class rather than a search for a character outside it: `re` runs a repeated
# class in one tight loop, where a search starts a match attempt at every position (~2.5x the
# instructions per character).
_INERT = re.compile(r"[ !#(),+\-./0-9:;<=>?@A-Z\[\]_`a-z{|}~]*")


def _plain_ascii(s: str) -> bool:
    """Whether every transformation view of ASCII text `s` (not only letters and digits) is `s`."""
    # (a line break is not in _INERT: multi-line text, a body, skips the fullmatch, ~2k instructions)
    if "\n" not in s and _INERT.fullmatch(s) is not None:
        return _SPACES16 not in s and ("/" not in s or not _slashes_change(s))
    if _TRANSFORM_CHARS.search(s) is not None:
        return False
    if "/" in s and _slashes_change(s):
        return False
    return "*/" not in s and not white_space_run(s)


# The views computed from the decode view (all but raw and decode themselves).
DERIVED_VIEWS = {name: fn for name, (base, fn) in VIEWS.items() if base == "decode"}


class Value:
    """One inspected value and its transformation views (each computed once, on first use)."""

    __slots__ = ("name", "plain", "raw", "recurring", "source", "views", "zone")

    def __init__(self, zone: str, source: str, name: str, raw: str) -> None:
        self.zone = zone
        self.source = source
        self.name = name
        self.raw = raw
        self.plain = raw.isascii() and (raw.isalnum() or _plain_ascii(raw))  # every view is raw
        self.views: dict[str, str] | None = None  # view name -> text, for a value that is not plain
        # Seen in an earlier request too (a header line or cookie shared through Collector.add_shared):
        # the matcher may keep what its scan found in this text rather than scan it again.
        self.recurring = False

    def all_views(self, names: tuple[str, ...]) -> list[str]:
        """The distinct texts of raw, decode and the views `names` (derived from decode: see
        DERIVED_VIEWS), each computed once."""
        raw = self.raw
        if self.plain:
            return [raw]
        views = self.views
        if views is None:
            d = decode(raw)
            views = self.views = {"raw": raw, "decode": d}
        else:
            d = views["decode"]
        out = [raw] if d == raw else [raw, d]
        for name in names:
            t = views.get(name)
            if t is None:
                t = views[name] = DERIVED_VIEWS[name](d)
            if t != d and t not in out:
                out.append(t)
        return out

    def view(self, name: str) -> str:
        if self.plain:
            return self.raw
        views = self.views
        if views is None:
            views = self.views = {"raw": self.raw, "decode": decode(self.raw)}
        v = views.get(name)
        if v is None:
            base, fn = VIEWS[name]
            v = views[name] = fn(self.view(base or "raw"))
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
    if text.isprintable():
        return text  # what the count below finds, at C speed, for the usual case
    printable = sum(1 for c in text if c.isprintable() or c in "\t\r\n")
    if printable < len(text) * 0.95:
        return None
    return text


NAME_SIMPLE = 1  # a plain identifier (_SIMPLE_NAME)
NAME_SUSPICIOUS = 2  # _SUSPICIOUS_IN_PATH finds something in it
NAME_SESSION = 4  # a session cookie's name (session_param_name)
NAME_SESSION_SPECIFIC = 8  # ... and a framework-specific one (session_param_name(generic=False))

# Parameter names and JSON keys come from each API's small vocabulary and recur on every request:
# what the name checks (two regexes, the session-name tests) say about one is kept.
_NAME_FLAGS: dict[str, int] = {}
# The names among them that add_name leaves out (plain identifiers, no session cookie's name): the
# common case, tested where the names are read, with no call.
IGNORED_NAMES: set[str] = set()


def name_flags(name: str) -> int:
    """The NAME_* facts about parameter name or JSON key `name`."""
    flags = _NAME_FLAGS.get(name)
    if flags is not None:
        return flags
    low = name.lower()
    flags = (
        (NAME_SIMPLE if _SIMPLE_NAME.fullmatch(name) is not None else 0)
        | (NAME_SUSPICIOUS if _SUSPICIOUS_IN_PATH.search(name) is not None else 0)
        | (NAME_SESSION if session_param_name(low) else 0)
        | (NAME_SESSION_SPECIFIC if session_param_name(low, generic=False) else 0)
    )
    if len(name) <= 64:
        if len(_NAME_FLAGS) >= 8192:
            _NAME_FLAGS.clear()
            IGNORED_NAMES.clear()
        _NAME_FLAGS[name] = flags
        if flags & (NAME_SIMPLE | NAME_SESSION | NAME_SUSPICIOUS) == NAME_SIMPLE:
            IGNORED_NAMES.add(name)
    return flags


# Values shared between requests (see Collector.add_shared): (zone, name, value, base64 probe) -> the
# Values add() made of it. One memo per kind of value, so that a flood of one kind (one-off session
# cookies) does not push the other (header lines) out.
SharedValues = dict[tuple[str, str, str, bool], tuple[Value, ...]]
_HEADER_VALUES: SharedValues = {}
_COOKIE_VALUES: SharedValues = {}  # cookie names and values: a browser sends the same ones each time
_PATH_VALUES: SharedValues = {}  # request paths: an API's clients call the same endpoints again and again
SHARED_KEPT = 4096  # values kept per memo; past this the memo starts again
SHARED_MAX_CHARS = 512  # longer values are not kept


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
        if (
            n >= 8 and not n % 4 and self.b64 and zone in _B64_ZONES and " " not in raw
            and not raw.islower() and not raw.isupper()  # maybe_base64's first tests, without the call
        ):
            decoded = maybe_base64(raw)
            if decoded is not None:
                self.values.append(Value(zone, source, f"{name}(base64)", decoded))

    def add_shared(self, memo: SharedValues, zone: str, source: str, name: str, raw: str) -> None:
        """add(), sharing the Values made of a recurring value between requests through `memo`: the
        same header lines (User-Agent, Referer...) and cookies (preferences, consent, analytics ids)
        arrive on request after request, and a Value (its plain test, base64 probe and views)
        depends on its text only. A shared Value seen again is marked `recurring`: the matcher may
        then reuse what its scan found in it (see Matcher.candidates)."""
        if not raw:
            return
        values = self.values
        if len(values) >= self.max:
            self.overflow.append(raw)
            return
        key = (zone, name, raw, self.b64)
        made = memo.get(key)
        if made is not None:
            for v in made:
                v.recurring = True
            values.extend(made)
            return
        mark = len(values)
        self.add(zone, source, name, raw)
        if len(raw) <= SHARED_MAX_CHARS:
            if len(memo) >= SHARED_KEPT:
                memo.clear()
            memo[key] = tuple(values[mark:])

    def add_name(self, source: str, name: str, raw: str) -> None:
        """An argument name, unless it is a plain identifier (see _SIMPLE_NAME) saying nothing suspicious
    (_SUSPICIOUS_IN_PATH: `XDEBUG_SESSION_START`; a cookie's plain name, even so: a developer's browser
    extension sets `XDEBUG_SESSION`); a session cookie's
        name only as a parameter of a request from elsewhere (see SESSION_PARAM_NAMES)."""
        flags = _NAME_FLAGS.get(raw)
        if flags is None:
            flags = name_flags(raw)
        if flags & NAME_SESSION:
            if source != "cookie" and self.session_names and (flags & NAME_SESSION_SPECIFIC or self._navigation()):
                self.add("arg_names", source, name, raw)
        elif source == "cookie":
            if not flags & NAME_SIMPLE:  # `_ga`, `connect.sid`: the same names on every request, like the values
                self.add_shared(_COOKIE_VALUES, "arg_names", source, name, raw)
        elif flags & NAME_SUSPICIOUS or not flags & NAME_SIMPLE:
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


def form_unquote(s: str) -> str:
    """unquote_plus(s, errors="surrogateescape"), as the application decodes a query or form value;
    ASCII text (nearly every value) skips urllib's split into ASCII and non-ASCII runs."""
    if "+" in s:
        s = s.replace("+", " ")
    if "%" not in s:
        return s
    if s.isascii():
        return unquote_to_bytes(s).decode("utf-8", "surrogateescape")
    return unquote(s, errors="surrogateescape")


# Header names as sent -> lower-cased (the same few dozen names arrive on every request).
_HEADER_NAMES: dict[str, str] = {}


def request_head_values(req: Request, opts: ZoneOptions) -> list[Value]:
    """Values known once the request head is in: path, query, cookies, headers."""
    c = Collector(opts, req)
    target = req.target
    q = target.find("?")
    path, query = (target, "") if q < 0 else (target[:q], target[q + 1:])
    # Shared like a header line: the Value (its plain test, ~5k instructions) and what the scan
    # found in it are kept for the next request to the same path.
    c.add_shared(_PATH_VALUES, "path", "path", "", path)
    if path.count("/") > 1 and _PLAIN_SEGMENT.fullmatch(path.replace("/", "")) is None:
        for seg in path.split("/"):
            if seg and _PLAIN_SEGMENT.fullmatch(seg) is None:
                c.add("path", "path", "segment", seg)
                if "+" in seg:
                    # Routers that form-decode path parameters read `+` as a space: `24'union+all+
                    # select+1` reaches the code as SQL.
                    c.add("path", "path", "segment", seg.replace("+", " "))
    if query:
        # An unencoded `&` inside a value (`ip=1.2.3.4&&ping -c 9 x`) splits it: a program reading
        # the raw query (CGI, a shell wrapper) sees it whole, so the value followed by its `=`-less
        # pieces is also inspected as one value.
        joined: list[str] = []
        pairs: list[tuple[str, str]] = []
        last_k = ""
        for part in query.split("&"):
            if "=" not in part and joined:
                joined.append(part)
                continue
            if len(joined) > 1:
                c.add("args", "query", last_k, form_unquote("&".join(joined)))
            joined = []
            if not part:
                continue
            k, _, v = part.partition("=")
            # Decoded once, as the application will (unquote only when there is something to undo).
            if "%" in k or "+" in k:
                k = form_unquote(k)
            if "=" in part:
                if k not in IGNORED_NAMES:
                    c.add_name("query", k, k)
                joined = [part[len(part) - len(v):]]
                last_k = k
            else:  # `?<payload>`: a bare key is the whole value, plain or not
                c.add("arg_names", "query", k, k)
            if "%" in v or "+" in v:
                v = form_unquote(v)
            c.add("args", "query", k, v)
            pairs.append((k, v))
        if len(joined) > 1:
            c.add("args", "query", last_k, form_unquote("&".join(joined)))
        if len(pairs) > 1 and len({k for k, _ in pairs}) < len(pairs):
            _polluted(c, pairs)
    header_names = _HEADER_NAMES
    for name, value in req.headers.items:
        low = header_names.get(name)
        if low is None:
            low = name.lower()
            if len(header_names) < 1024:  # names recur; a flood of invented ones is not kept
                header_names[name] = low
        if low == "cookie":
            _cookies(c, value)
        elif low not in SKIP_HEADERS and (low not in _CREDENTIAL_HEADERS or not _plain_token(value)):
            c.add_shared(_HEADER_VALUES, "headers", "header", low, value)
    return c.finish()


def _polluted(c: Collector, pairs: list[tuple[str, str]]) -> None:
    """A parameter given more than once is also inspected as ASP.NET and others read it: its values
    joined by commas (`id=1/**/union/*&id=*/select/*` reaches the code as one SQL string)."""
    values: dict[str, list[str]] = {}
    for k, v in pairs:
        values.setdefault(k, []).append(v)
    for k, vs in values.items():
        if len(vs) > 1:
            c.add("args", "query", k, ",".join(vs))


def _cookies(c: Collector, header: str) -> None:
    for part in header.split(";"):
        k, sep, v = part.strip().partition("=")
        if not sep:
            c.add("cookies", "cookie", "", k)
            continue
        if k not in IGNORED_NAMES:
            c.add_name("cookie", k, k)
        c.add_shared(_COOKIE_VALUES, "cookies", "cookie", k, v)


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


_WIDE_CHARSET = re.compile(r"charset\s*=\s*[\"']?\s*(utf-?(?:16|32)(?:-?[bl]e)?)", re.IGNORECASE)
_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"),
              (b"\xfe\xff", "utf-16"))


def _as_utf8(body: bytes, ct: str) -> bytes:
    """A UTF-16/32 body (declared by its charset or its byte-order mark) as UTF-8, so that it is
    parsed and matched as the text the application reads, not as bytes full of NULs."""
    m = _WIDE_CHARSET.search(ct)
    codec = m.group(1) if m else next((c for bom, c in _WIDE_BOMS if body.startswith(bom)), None)
    if codec is None:
        return body
    try:
        return body.decode(codec).lstrip("\ufeff").encode("utf-8", "surrogatepass")
    except (UnicodeDecodeError, LookupError):
        return body  # not what it claims: inspected as sent


def request_body_values(req: Request, opts: ZoneOptions) -> list[Value]:
    """Values of the request body, parsed by its content type; unknown bodies are inspected raw."""
    body = decoded_body(req)
    if not body:
        return []
    c = Collector(opts, req)
    ct_raw = req.headers.get("content-type") or ""
    ct = ct_raw.lower()
    if b"\x00" in body[:4] or (b"\xff" in body[:2] or b"\xfe" in body[:2]) or "utf-16" in ct or "utf-32" in ct:
        body = _as_utf8(body, ct)
    if "json" in ct and _json(c, body):
        return c.finish()  # the body as text is not needed
    text = _text(body)
    parsed = False
    stripped = text.lstrip()
    if "json" not in ct and stripped[:1] in ("{", "[") and "form" not in ct and "xml" not in ct:
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
            k = form_unquote(k)
        if sep:
            if k not in IGNORED_NAMES:
                c.add_name("form", k, k)
        else:  # a bare key (a body sent as one word) is the whole value, plain or not
            c.add("arg_names", "form", k, k)
        c.add("args", "form", k, form_unquote(v) if "%" in v or "+" in v else v)
    return True


def _json(c: Collector, body: bytes) -> bool:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    # Iterative walk: a deeply nested document must not hit the recursion limit. Each entry carries
    # whether its path is already suspicious (_SUSPICIOUS_IN_PATH): no match spans the `.` that
    # joins a path and a key, so a path is suspicious when its parent's is or its own key is.
    stack: list[tuple[object, str, int, bool]] = [(doc, "", 0, False)]
    while stack:
        node, path, depth, marked = stack.pop()
        if isinstance(node, str):
            c.add("args", "json", path or "$", node)
        elif isinstance(node, dict):
            if depth >= MAX_DEPTH:
                c.add("args", "json", path or "$", _deep_text(node))
                continue
            for k, v in reversed(node.items()):
                flags = _NAME_FLAGS.get(k)
                if flags is None:
                    flags = name_flags(k)
                sub = f"{path}.{k}" if path else k
                suspicious = marked or bool(flags & NAME_SUSPICIOUS)
                if not depth and flags & NAME_SESSION:
                    if c.session_names and flags & NAME_SESSION_SPECIFIC:
                        c.add("arg_names", "json", sub, sub)
                # The whole path: `password.$ne` says more than `$ne`.
                elif suspicious or not flags & NAME_SIMPLE:
                    c.add("arg_names", "json", sub, sub)
                if isinstance(v, _JSON_INSPECTED):
                    stack.append((v, sub, depth + 1, suspicious))
                    if k == "$or" and isinstance(v, list) and {} in v[:64]:
                        # `{"$or": [{}]}`: an empty filter matches every document (the always-true
                        # operand no string carries, so it is given to the rules as the text it is)
                        c.add("args", "json", sub, '{"$or":[{}]}')
        elif isinstance(node, list):
            if depth >= MAX_DEPTH:
                c.add("args", "json", path or "$", _deep_text(node))
                continue
            if "prototype" in node and len(node) <= 64 and all(isinstance(v, str) for v in node):
                # a key path given as an array (lodash set/merge, `["constructor", "prototype", "x"]`)
                # is read as the dotted path it stands for
                c.add("arg_names", "json", path or "$", ".".join(node))
            for v in reversed(node):
                if isinstance(v, _JSON_INSPECTED):
                    stack.append((v, path, depth + 1, marked))
    return True


_JSON_INSPECTED = (str, dict, list)  # numbers, booleans and null carry no injection


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


_XML_STARTS = (b"<?xml", b"<!doctype")
_MARKUP_TYPES = ("svg", "html", "xhtml")
_MARKUP_NAME = re.compile(r"\.(?:svgz?|html?|xhtml|xht|shtml)\s*$", re.IGNORECASE)
_MARKUP_STARTS = (b"<svg", b"<html", b"<!doctype html", b"<?xml")
MARKUP_UPLOAD_BYTES = 65536  # of an uploaded SVG/HTML file inspected as markup
# A script element, or a start tag with an event handler or a script URL (javascript:, a data: HTML page).
_ACTIVE_MARKUP = re.compile(
    rb"<script\b[^>]{0,500}>[^<]{0,2048}"
    rb"|<[a-z][\w:.-]{0,40}\s[^>]{0,2000}?(?:\bon[a-z]{3,30}\s*=|\b(?:href|src|action|data|formaction)\s*=\s*"
    rb"[\"']?\s*(?:javascript|vbscript|data\s*:\s*text/html))[^>]{0,2000}>",
    re.IGNORECASE,
)
_PHP_TAG = re.compile(rb"<\?(?:php\b|=)", re.IGNORECASE)


def _renders_as_markup(part_ct: str, filename: str, head64: bytes) -> bool:
    """Whether a browser would render this upload as a document (SVG, HTML) if it is served back."""
    return (any(t in part_ct for t in _MARKUP_TYPES) or _MARKUP_NAME.search(filename) is not None
            or (head64.startswith(_MARKUP_STARTS) and (b"<svg" in head64 or b"html" in head64)))


def _php_open_tag(content: bytes) -> int:
    """Offset of a PHP open tag in the first 64 KB of an upload, or -1 (checked in bytes: most
    uploads are binary and never decoded)."""
    if b"<?" not in content[:MARKUP_UPLOAD_BYTES]:
        return -1
    m = _PHP_TAG.search(content, 0, MARKUP_UPLOAD_BYTES)
    return m.start() if m else -1


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
            head64 = content[:64].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
            if "xml" in part_ct or head64.startswith(_XML_STARTS):
                # An uploaded XML or SVG document is parsed by the application (an importer, an image
                # library): its DOCTYPE is read as an XML body's is (XXE), whatever file_content says.
                c.add("body", "multipart", name, _text(content))
            if not (opts.multipart_file_content and textual):
                if _renders_as_markup(part_ct, filename, head64):
                    # SVG or HTML served back from the site's origin runs its scripts there (stored
                    # XSS): its script elements and scripted attributes are read whatever
                    # file_content says (not the whole document: a page's own <meta>, <style> and
                    # links are what the XSS rules look for in a parameter, not in a page).
                    for m in _ACTIVE_MARKUP.finditer(content, 0, MARKUP_UPLOAD_BYTES):
                        c.add("args", "multipart", name, _text(m.group(0)))
                else:
                    php = _php_open_tag(content)
                    if php >= 0:  # a web shell riding in an image or a text file
                        c.add("args", "multipart", name, _text(content[php:php + 2048]))
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


# Content-Type value -> whether a response of that type is text (inspected). An upstream sends the
# same few types: one dict lookup instead of lower() and a generator over six names (~4k instructions).
_TEXTUAL: dict[str, bool] = {}


def response_values(body: bytes, content_type: str) -> list[Value]:
    """The response body as text, unless it is binary (images, archives, fonts)."""
    if not body:
        return []
    textual = _TEXTUAL.get(content_type)
    if textual is None:
        ct = content_type.lower()
        textual = not ct or any(t in ct for t in ("text", "json", "xml", "html", "javascript", "problem"))
        if len(_TEXTUAL) >= 1024:  # the upstream's to choose: keep the memo bounded
            _TEXTUAL.clear()
        _TEXTUAL[content_type] = textual
    if not textual:
        return []
    return [Value("response", "response", "body", body.decode("utf-8", "surrogateescape"))]  # _text(body)


def values_by_zone(values: Iterable[Value]) -> dict[str, list[Value]]:
    out: dict[str, list[Value]] = {}
    for v in values:
        out.setdefault(v.zone, []).append(v)
    return out
