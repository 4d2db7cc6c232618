"""The `behaviour` detector: scenarios over many exchanges, run after the response (complete phase).

Each scenario counts one kind of event per *subject* and fires a finding with risk points when a
threshold is crossed (CrowdSec's leaky buckets, with distinct counts and outcome shares):

    scanning        4xx answers (404/403/400/405/410) over many distinct paths
    brute_force     failed logins per subject
    stuffing        failed logins over many distinct accounts per subject
    account_attack  one account failing from many addresses: each further failure adds risk
    ato_success     a successful login right after many failures
    token_spread    one API key / session / user from many addresses or networks at once
    enumeration     many distinct identifiers (email, phone, username, id) on one endpoint, mostly misses
    bola            many distinct object ids on /x/{id}, many refused, or walked in sequence
    scraping        distinct resources far above the population's baseline
    sequence        a login or checkout POST from a subject that never made a GET first
    guessing        distinct codes (one-time codes, gift cards, vouchers, PINs) refused on one endpoint

Subjects are the client address, the linked identity (entity) and the client fingerprint; the
fingerprint only while it is not popular (a common browser shared by many users is never a
subject, see bastion.entity) and only with an outcome share (most of its logins fail, most of
its lookups miss), so a shared fingerprint is never blamed for one user's mistakes.
`slow_threshold` gives each counting scenario a low-and-slow variant over hours.

Only answers of the API count: Bastion's own refusals (a ban's 403s) never feed a scenario.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

import orjson

from bastion.detect.behaviour.counters import Decayed, Distinct, Fired, Spread, Sweeper, Track, Tracks, make_room
from bastion.detect.behaviour.settings import ScenarioSettings, ScenariosSettings, activity_cap, subject_cap
from bastion.entity import ESTABLISHED, Entity, Node, Resolved, hash_key
from bastion.exchange import Exchange, Request
from bastion.verdict import Finding, Severity

if TYPE_CHECKING:
    from bastion.config import BastionConfig
    from bastion.detect.behaviour.core import BehaviourCore
    from bastion.engine.registry import BuildContext

_EMAIL = re.compile(r"^[^@\s/]{1,64}@[^@\s/]{1,255}\.[a-z]{2,}$", re.I)
_PHONE = re.compile(r"^\+?[\d\s().-]{8,20}$")
# Not phone numbers, though made of digits and separators: dates, dotted quads and versions, decimals
_NOT_PHONE = re.compile(r"^(?:\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|\d{1,3}(?:\.\d{1,3}){3}|\d+\.\d+|[\d.]+)$")
_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I)
_HEX = re.compile(r"^[0-9a-f]{12,64}$", re.I)
_MIXED_ID = re.compile(r"^(?=.*\d)[a-z0-9_-]{8,40}$", re.I)
IDENT_PARAMS = frozenset({"email", "e-mail", "mail", "email_address", "phone", "mobile", "msisdn", "tel", "telephone",
                          "phone_number", "phonenumber", "mobile_number", "cell", "cellphone", "username",
                          "user", "login", "handle", "account", "nickname", "screen_name", "user_id", "userid",
                          "uid", "id", "member", "customer", "customer_id"})
SCAN_STATUSES = frozenset({400, 403, 404, 405, 410})
DENY_STATUSES = frozenset({401, 403, 404})
_NEGATIVE = (b'"found":false', b'"exists":false', b'"found": false', b'"exists": false', b"not found",
             b"no such", b"does not exist", b"unknown user", b"no user")
# What login APIs say when the credentials are wrong, beyond the configured markers: "Invalid email or
# password", "wrong_password", {"ok": false} (lower-cased body)
_FAILED_LOGIN = re.compile(
    rb'(?:invalid|incorrect|wrong|bad|unknown)[ _-]?(?:e-?mail|user ?name|user|login|credentials?|password|passcode'
    rb'|pin|phone|account)|"(?:ok|success|succeeded|authenticated|valid|login)"\s*:\s*false'
)
_REDIRECT_ERROR = re.compile(r"(?:^|&)(?:error|failed|failure|invalid|login_error|auth_error)(?:=|&|$)", re.I)
_GRAPHQL_ERRORS = re.compile(rb'^\{\s*"errors"\s*:\s*\[\s*\{'
                             rb'|"data"\s*:\s*(?:null|\{\s*"\w+"\s*:\s*null\s*\})\s*,\s*"errors"'
                             rb'|"errors"\s*:\s*\[\s*\{[^\]]*"(?:unauthenticated|unauthorized|forbidden|bad_user_input)"')
_EMPTY_ONE = re.compile(rb'^\{\s*"[\w.-]+"\s*:\s*(?:null|\[\s*\]|\{\s*\}|false)\s*\}$')
_GRAPHQL_NULL = re.compile(rb'^\{\s*"data"\s*:\s*\{\s*"\w+"\s*:\s*null\s*\}\s*\}$')
# Failures on an account that then logs in from the same subject, at most this many, are typos (forgiven)
TYPOS = 3
# The low-and-slow login variants need this share of the subject's logins (decayed over the slow
# window) to fail: counts over a day are reached by a busy shared address's ordinary mistakes too
SLOW_FAILURE_SHARE = 0.5
# The enumeration volume rule (3x the threshold of distinct identifiers) needs this share of misses
# (or identifiers walked in order): an integration resolving its own records mostly finds them
VOLUME_MISS_SHARE = 0.35
# The slow BOLA walk: share of a subject's recent new ids (decayed, see _walk) that were the
# neighbour of one it had fetched
SLOW_WALK_SHARE = 0.8
_EMPTY = frozenset({b"", b"[]", b"{}", b"null", b'""', b"false"})
# Request targets (and paths) longer than this are not memoised: 20,000 targets of the 8 KiB the proxy
# accepts would hold ~500 MB; a real API's targets are shorter, an attacker's long ones are worked out each time
MEMO_TARGET = 1024
# The BOLA coverage rule: one subject fetched this share of every id anyone fetched on a template
COVERAGE = 0.6
# Scraping: the share of a subject's distinct resources on its two most used route templates above which
# they are a harvest (see _concentration); spread more thinly, only this many times the threshold are
SPREAD_SCRAPING = 4.0
CONCENTRATION = 0.6


# Guessing: request fields that carry a code to be checked (one-time codes, PINs, gift cards, vouchers,
# coupons, recovery and reset codes), by the end of their name: `code`, `otp`, `promo_code`, `card_pin`...
_CODE_FIELD = re.compile(r"(?:^|[_.-])(?:code|otp|totp|pin|passcode|voucher|coupon|promo|gift_?card|cvv|cvc"
                         r"|recovery_?key|reset_?token|invite_?token|verification_?token)$")
# and not these: a form's anti-forgery token, a captcha, a country or postal code is no code to guess
_NOT_CODE_FIELD = re.compile(r"csrf|xsrf|authenticity|captcha|country|postal|zip|post_code|postcode|lang|locale"
                             r"|currency|status|error|response|oauth|redirect|state|challenge")
# an answer of 200 that says the code was wrong
_FAILED_CODE = re.compile(rb'"(?:ok|success|valid|verified|redeemed|applied)"\s*:\s*false'
                          rb"|(?:invalid|incorrect|wrong|unknown|expired)[ _-]?"
                          rb"(?:code|otp|pin|token|voucher|coupon|card)")
# statuses that say nothing of the code (too many requests, a timeout, a body too large)
_NOT_GUESS_STATUSES = frozenset({408, 413, 415, 429, 431})


# A GraphQL mutation that logs in: its operation name or first field (`mutation { tokenAuth(...) }`)
_GQL_MUTATION = re.compile(r"\bmutation\b\s*(\w*)[^{]*\{\s*(?:\w+\s*:\s*)?(\w+)")
_GQL_LOGIN = re.compile(r"log_?in|sign_?in|sign_?on|authenticate|token_?auth|create_?session"
                        r"|obtain_?(?:json_?web_?)?token|create_?token|generate_?token", re.I)


def graphql_login(body: bytes) -> bool:
    """Whether a JSON body is a GraphQL login: a mutation whose operation or first field is named
    like login, signIn, authenticate, tokenAuth, createSession (the account is in `variables`)."""
    if len(body) > 16_384 or body[:1] != b"{":
        return False
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(data, dict):
        return False
    query = data.get("query")
    if not isinstance(query, str):
        return False
    m = _GQL_MUTATION.search(query[:4096])
    if m is None:
        return False
    op = data.get("operationName")
    names = (m.group(1), m.group(2), op if isinstance(op, str) else "")
    return any(n and _GQL_LOGIN.search(n) is not None for n in names)


def id_segment(seg: str) -> bool:
    """Whether a path segment is an object identifier (number, UUID, long hex, token-like)."""
    if not seg:
        return False
    if seg.isascii() and seg.isdigit():  # ASCII only: '²'.isdigit() is True and int('²') fails
        return True
    return bool(_UUID.match(seg) or _HEX.match(seg) or _MIXED_ID.match(seg))


def looks_identifier(value: str) -> bool:
    """An email address or a phone number, whatever the parameter's name. A bare digit string is no
    phone number here (a Unix time, an amount, an order number look the same): it is an identifier
    only under an identifier-named parameter (IDENT_PARAMS: phone, mobile, msisdn, id...). A phone
    number elsewhere needs its international `+` or separators (`555-123-4567`, `(06) 12 34 56 78`)."""
    if "@" in value:
        return _EMAIL.match(value) is not None
    if _PHONE.match(value) is None:
        return False
    if value[0] == "+":
        return True
    if _NOT_PHONE.match(value) is not None:
        return False
    return sum(c.isdigit() for c in value) >= 8 and not value.isdigit()


class _Templates:
    """Path -> route template ('/orders/123' -> '/orders/{id}'), memoised with a bounded table."""

    def __init__(self, size: int = 20_000) -> None:
        self.cache: dict[str, tuple[str, str]] = {}
        self.size = size

    def __call__(self, path: str) -> tuple[str, str]:
        """(template, last id or '')."""
        hit = self.cache.get(path)
        if hit is not None:
            return hit
        segs = path.split("/")
        last = ""
        for i, seg in enumerate(segs):
            s = unquote(seg)
            if id_segment(s):
                segs[i] = "{id}"
                last = s
            elif looks_identifier(s):
                segs[i] = "{ident}"
        # one string for a template, however many paths have it (routes, tracks and tables keep it)
        out = (sys.intern("/".join(segs)), last)
        if len(path) <= MEMO_TARGET:  # (a long path is rare: recomputed rather than kept, see MEMO_TARGET)
            if len(self.cache) >= self.size:
                self.cache.clear()
            self.cache[path] = out
        return out


class Route:
    """What the complete phase needs to know of a request target, worked out once per target
    (memoised): the lower-cased path, its route template and last id, the identifiers the target
    itself carries, and (once a login or POST request asks) whether it is a login or sequence route."""

    __slots__ = ("ident", "idents", "login", "obj_id", "path", "plain", "sequence", "target", "template")

    def __init__(self, raw: str, templates: _Templates, now: float = 0.0) -> None:
        if raw.isascii():  # (lower-casing keeps the length: the path is a prefix of the target, one string)
            low = raw.lower()
            q = low.find("?")
            path = low if q < 0 else low[:q]
            target = low[:256]
        else:
            q = raw.find("?")
            path = (raw if q < 0 else raw[:q]).lower()
            target = raw.lower()[:256]
        self.path = path
        self.template, self.obj_id = templates(path)
        self.target = stable_target(target, now) if q >= 0 else target  # distinct resources (scraping)
        self.ident = "{ident}" in self.template
        # identifiers in the path and the query (a body may carry more: see BehaviourDetector._identifiers)
        self.idents = target_identifiers(raw, self.ident)[:4]
        self.plain = not self.idents  # no lookup scenario concerns it without a body (see complete)
        self.login: bool | None = None  # see classify()
        self.sequence: bool | None = None

    def classify(self, login_re: re.Pattern[str] | None, seq_re: re.Pattern[str] | None,
                 not_login_re: re.Pattern[str] | None = None) -> None:
        """Whether the path is a login route and a sequence route (checkout, payment): asked only
        by requests whose method can make them one (a GET never is a login). A login-looking path
        that names another account action (/auth/password-reset, /login/verify) is none."""
        self.login = (login_re is not None and login_re.search(self.path) is not None
                      and (not_login_re is None or not_login_re.search(self.path) is None))
        self.sequence = seq_re is not None and seq_re.search(self.path) is not None


def target_identifiers(raw: str, ident: bool) -> tuple[str, ...]:
    """The identifiers a request target carries: path segments that look like one (when its route
    template has an {ident}), and query values named like one or looking like one."""
    out: list[str] = []
    q = raw.find("?")
    if ident:
        for seg in (raw if q < 0 else raw[:q]).split("/"):
            s = unquote(seg)
            if looks_identifier(s):
                out.append(s.lower())
    if q >= 0:
        for part in raw[q + 1:].split("&"):  # as Request.query_args() decodes them
            if not part:
                continue
            k, _, v = part.partition("=")
            k = unquote_plus(k, errors="surrogateescape")
            v = unquote_plus(v, errors="surrogateescape")
            if v and (k.lower() in IDENT_PARAMS or looks_identifier(v)):
                out.append(v.strip().lower()[:128])
    return tuple(out)


def body_fields(req: Request, most: int) -> list[tuple[Any, Any]]:
    """The fields of a small body (under 8 KiB): a JSON object's, one level down too (GraphQL's
    `{"variables": {"email": ...}}`, Rails' `{"user": {...}}`), or a form's; at most `most` per level.
    Nothing for any other body."""
    body = req.body
    if len(body) >= 8192:
        return []
    if body[:1] == b"{":
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(data, dict) or len(data) > most:
            return []
        out: list[tuple[Any, Any]] = []
        for k, v in data.items():
            if not isinstance(v, dict):
                out.append((k, v))
            elif len(v) <= most:
                out.extend(v.items())
        return out
    if b"=" in body and (req.headers.get("content-type") or "").lower().startswith(
            "application/x-www-form-urlencoded"):
        pairs = parse_qsl(body.decode("latin-1"))
        return list(pairs) if len(pairs) <= most else []
    return []


# Query parameters whose value changes on every request without naming another resource (jQuery's `_=`,
# cache-busters, nonces)
CACHE_BUSTERS = frozenset({"_", "cb", "cachebuster", "cache_buster", "cachebust", "nocache", "no_cache", "rnd", "rand",
                           "random", "nonce"})
# A time this close to the clock is the client's own clock, not a resource's name
NOW_LIKE = 2 * 86400.0


def stable_target(target: str, now: float) -> str:
    """A lower-cased request target as one resource: the values of cache-busters and of times near now
    (`since=1796292701`, `_=1796292701234`, `updated_after=2026-12-03T10:00:00z`) become `*`. A client
    polling "what is new since my last call" every second asks for one resource, not a new one each
    time; a date range walked far from today still counts each of its dates."""
    q = target.find("?")
    if q < 0:
        return target
    parts = target[q + 1:].split("&")
    changed = False
    for i, part in enumerate(parts):
        k, eq, v = part.partition("=")
        if eq and v and v != "*" and (k in CACHE_BUSTERS or _now_like(v, now)):
            parts[i] = k + "=*"
            changed = True
    return target[:q + 1] + "&".join(parts) if changed else target


def _now_like(v: str, now: float) -> bool:
    """A Unix time (seconds or milliseconds) or an ISO 8601 date within NOW_LIKE of `now`."""
    if v.isascii() and v.isdigit():  # (ASCII only: '²'.isdigit() is True and int('²') fails)
        if len(v) == 10:
            return abs(int(v) - now) <= NOW_LIKE
        if len(v) == 13:
            return abs(int(v) / 1000.0 - now) <= NOW_LIKE
        return False
    if len(v) >= 10 and v[4] == "-" and v[7] == "-" and v[:4].isdigit():
        return v[:10] in {time.strftime("%Y-%m-%d", time.gmtime(now + d)) for d in (-NOW_LIKE, 0.0, NOW_LIKE)}
    return False


class Activity:
    """What every request of an address or identity updates: distinct resources, request rate, when
    it last made a GET. (A client software or network subject keeps only the last GET, on its own
    entity in the graph: `Entity.last_get`.)"""

    __slots__ = ("bola_id", "bola_key", "bola_t", "bola_tpl", "clean", "failed", "last", "last_get", "paths", "peak",
                 "slow_paths", "spread_n", "total_t", "total_v")

    def __init__(self) -> None:
        # the template this subject last fetched ids of, and its BOLA track key (subject|template) once
        # it has a track (see BehaviourDetector._bola_plain): one string built per subject and template,
        # not per exchange. The first id fetched there waits here (`bola_id` at `bola_t`) until a second
        # request makes the track: most subjects fetch one id once (a client seen once), and a track
        # costs several hundred bytes.
        self.bola_tpl = ""
        self.bola_key = ""
        self.bola_id = ""
        self.bola_t = 0.0
        self.paths: Distinct | None = None  # made by the first scraping count
        self.slow_paths: Distinct | None = None
        # requests per minute, decayed (a Decayed's two floats, kept here: one object less per subject)
        self.total_v = 0.0
        self.total_t = 0.0
        self.last_get = -1e18
        self.clean = False
        self.failed = False
        self.last = 0.0
        # the highest distinct count this subject added to the scraping baseline: a subject whose count
        # hovers at a power of two (an integration's steady sync) is one subject there, not one per
        # return to it
        self.peak = 0
        # the distinct resources counted when they were last found spread over many kinds (see _concentrated)
        self.spread_n = 0


# Subjects the scraping baseline needs before its percentile is used (fewer: the threshold alone): a
# 99th percentile means something once ten subjects or more are above it; below that, a handful of
# heavy subjects (an integration, scrapers not caught yet) would set it
MIN_POPULATION = 1000


class Baseline:
    """Population baseline of per-subject counts: how many subjects ever reached 2**k (log buckets).
    The percentile is recomputed at most every few seconds (it moves slowly)."""

    def __init__(self, threshold: float = 150.0) -> None:
        self.reached = [0.0] * 24
        self.last_decay = 0.0
        self._p99 = 0.0
        self._at = -1e18
        # the scraping limit: max(threshold, 4 x p99), never above twice the threshold (a few heavy
        # subjects, an integration syncing all day, must not lift it out of an attacker's reach)
        self.threshold = threshold
        self.limit = threshold

    def crossed(self, count: int) -> None:
        if count > 0 and count & (count - 1) == 0:  # a power of two: one more subject reached it
            k = count.bit_length() - 1
            if k < len(self.reached):
                self.reached[k] += 1

    def p99(self, now: float) -> float:
        if now - self._at < 5.0:
            return self._p99
        self._at = now
        if now - self.last_decay > 3600.0:  # follow the population as it changes
            self.last_decay = now
            self.reached = [x / 2 for x in self.reached]
        base = self.reached[0]
        self._p99 = 0.0
        if base >= MIN_POPULATION:
            self._p99 = float(2 ** len(self.reached))
            for k, n in enumerate(self.reached):
                if n <= base * 0.01:
                    self._p99 = float(2**k)
                    break
        self.limit = max(self.threshold, min(4.0 * self._p99, 2.0 * self.threshold))
        return self._p99


class EndpointPressure:
    """Population view of one endpoint's bad outcomes (login failures, lookup misses).

    When an endpoint's recent bad outcomes are many and most of its traffic fails, it is under a
    (possibly distributed) attack: per-subject thresholds are divided by `factor`, so that an
    attacker spreading over many addresses, a few requests each, is still caught.
    """

    __slots__ = ("bad", "total")

    def __init__(self) -> None:
        self.total = Decayed()
        self.bad = Decayed()

    def record(self, now: float, bad: bool, half_life: float = 300.0) -> None:
        self.total.add(now, half_life)
        self.bad.add(now, half_life, 1.0 if bad else 0.0)

    def under_attack(self, now: float, min_bad: float = 25.0, share: float = 0.5, half_life: float = 300.0) -> bool:
        b = self.bad.value(now, half_life)
        return b >= min_bad and b >= share * self.total.value(now, half_life)


class Scenario:
    """One scenario's settings as plain attributes. They are read several times per exchange, and
    a pydantic model's attribute access costs several times a slot's (its `__getattr__` hook keeps
    the interpreter from specialising the access)."""

    __slots__ = ("cooldown", "enabled", "min_share", "risk", "slow_threshold", "slow_window", "threshold", "window")
    enabled: bool
    threshold: float
    window: float
    risk: float
    min_share: float
    slow_threshold: float
    slow_window: float
    cooldown: float

    def __init__(self, s: ScenarioSettings) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(s, name))


class Scenarios:
    """Every scenario's settings (`behaviour.scenarios`), as plain attributes (see Scenario)."""

    __slots__ = ("account_attack", "ato_success", "bola", "brute_force", "enumeration", "guessing", "scanning",
                 "scraping", "sequence", "stuffing", "token_spread")
    account_attack: Scenario
    ato_success: Scenario
    bola: Scenario
    brute_force: Scenario
    enumeration: Scenario
    guessing: Scenario
    scanning: Scenario
    scraping: Scenario
    sequence: Scenario
    stuffing: Scenario
    token_spread: Scenario

    def __init__(self, s: ScenariosSettings) -> None:
        for name in self.__slots__:
            setattr(self, name, Scenario(getattr(s, name)))


def integration(ex: Exchange) -> bool:
    """Whether the request comes from a machine client with an API key in an API-key header or parameter
    (`X-API-Key`, `?api_key=`: an ERP, a partner's sync job). Such a client walks the objects its key
    owns, in order, and the API answers each one: the BOLA rules that need no refusal (a walk, the
    coverage of a collection) do not judge it. Refused objects still count (the refused-share rule), as
    do its address's other scenarios, and its searches and listings count for scraping (a trial key
    dumping a directory). An opaque bearer token is a user's session as often as not: judged."""
    if not ex.keys.get("api_key"):
        return False
    auth = ex.request.headers.get("authorization")
    return not auth or auth.lstrip()[:7].lower() != "bearer "


def _refused_share(t: Track, now: float, window: float, refused: bool) -> float:
    """Count one request on a track and return the share of its recent requests that were refused."""
    tot, bad = t.total, t.bad
    last = tot.t
    if last != bad.t:
        total = tot.add(now, window)
        b = bad.add(now, window, 1.0 if refused else 0.0)
        return float(b / max(total, 1.0))
    # Both counts were last updated together (the usual case): Decayed.add twice, inlined, with
    # the one decay factor they share (the same arithmetic, so the same floats).
    f = 0.5 ** ((now - last) / window) if now > last else 1.0
    total = tot.v * f + 1.0
    b = bad.v * f + (1.0 if refused else 0.0)
    tot.v, tot.t, bad.v, bad.t = total, now, b, now
    return float(b / max(total, 1.0))


def _walked(obj_id: str, ids: Distinct) -> int:
    """1 when a new numeric id is the neighbour (id +/- 1) of one already seen (`ids`), else 0."""
    if obj_id.isascii() and obj_id.isdigit() and len(obj_id) < 18:
        i = int(obj_id)
        seen = ids.seen
        if seen is None:  # (a set of one: its member is `head`)
            head = ids.head
            return 1 if head is not None and (head == str(i - 1) or head == str(i + 1)) else 0
        if str(i - 1) in seen or str(i + 1) in seen:
            return 1
    return 0


def _neighbours(ident: str) -> tuple[str, ...]:
    """hash_key() of the identifiers next to one ending in digits (+15550100 -> +15550099, +15550101),
    the same length: a walked range of phone or account numbers looks them up one after the other."""
    end = len(ident)
    start = end
    while start > 0 and ident[start - 1].isdigit():
        start -= 1
    if end - start < 3 or end - start > 18:
        return ()
    head, num = ident[:start], ident[start:]
    i = int(num)
    out = tuple(hash_key(head + str(j).zfill(len(num))) for j in (i - 1, i + 1) if j >= 0 and len(str(j)) <= len(num))
    return out


def _decayed_value(v: float, t: float, now: float, half_life: float) -> float:
    """Decayed.value() of a count kept as two floats (v at time t)."""
    if v <= 0.0 or now <= t:
        return v
    return float(v * 0.5 ** ((now - t) / half_life))


def _lowered(threshold: float, pressure: bool, factor: float = 3.0, floor: float = 2.0) -> float:
    return max(floor, threshold / factor) if pressure else threshold


class BehaviourDetector:
    name = "behaviour"

    def __init__(self, core: BehaviourCore) -> None:
        self.core = core
        s = core.settings
        self.sc = Scenarios(s.scenarios)
        self.clock = core.clock
        self.observe = False
        lg = s.login
        self.login_re = core.login_re
        self.not_login_re = core.not_login_re
        seq = list(lg.sequence_routes)
        self.seq_re = re.compile("|".join(f"(?:{r})" for r in seq)) if seq else None
        self.login_methods = frozenset(m.upper() for m in lg.methods)
        self.failure_statuses = frozenset(lg.failure_statuses)
        self.markers = tuple(m.lower().encode() for m in lg.failure_body_markers)
        self.account_fields = tuple(f.lower() for f in lg.account_fields)
        self.salt = s.entity.key_salt
        self.templates = _Templates()
        self._routes: dict[str, Route] = {}
        self._route_methods = self.login_methods | {"POST"}  # methods for which login or sequence routes matter
        self.baseline = Baseline(self.sc.scraping.threshold)
        longest = max(x.slow_window for x in self._all()) + 600.0
        # Every per-subject table is capped (an attacker inventing addresses, keys or accounts must not
        # grow it forever): at a share of the entity graph's keys, so that one setting bounds the memory
        # of behaviour (see subject_cap, docs/behaviour.md "Memory")
        self.activity: dict[str, Activity] = {}
        self._activity_sweeper = Sweeper()
        self._activity_idle = longest
        self._activity_max = activity_cap(s.entity.max_keys)
        cap = subject_cap(s.entity.max_keys)
        self.tracks: dict[str, Tracks[Any]] = {}
        for name in ScenariosNames:
            # scraping and sequence count nothing per subject (only their firing); token spread has its own record
            factory = Spread if name == "token_spread" else Fired if name in ("scraping", "sequence") else Track
            self.tracks[name] = Tracks(idle=longest, max_subjects=cap, factory=factory)
        self._bola_tracks: Tracks[Track] = self.tracks["bola"]
        self._spread: Tracks[Spread] = self.tracks["token_spread"]
        self._guessing_tracks: Tracks[Track] = self.tracks["guessing"]
        # the caps of the distinct sets counted on every exchange (see _bola, _scraping)
        self._bola_cap = int(self.sc.bola.threshold * 5) + 1
        # Scraping fires at the baseline's limit, never above twice the threshold: counting on to four times
        # it keeps the baseline's power-of-two buckets up to 512 (its p99, hence the limit, the same)
        self._scraping_cap = int(self.sc.scraping.threshold * 4) + 1
        # and the settings the short path of complete() reads on every exchange (see _scrape, _bola_plain)
        self._bola_window = self.sc.bola.window
        self._bola_threshold = self.sc.bola.threshold
        self._scraping_window = self.sc.scraping.window
        self._scraping_threshold = self.sc.scraping.threshold
        self._scraping_slow = bool(self.sc.scraping.slow_threshold)
        self._scraping_on = self.sc.scraping.enabled
        self._bola_on = self.sc.bola.enabled
        self._bola_slow = bool(self.sc.bola.slow_threshold)
        self.fired: dict[str, int] = {}
        self.pressure: dict[str, EndpointPressure] = {}
        self.population: dict[str, Distinct] = {}  # template -> ids fetched by anyone (coverage)
        # The coverage rule (_bola_judge) needs a subject's ids, at most _bola_cap, to be COVERAGE of the
        # population's: a population above _bola_cap / COVERAGE never passes it, so its count is capped just
        # above that (the same decisions as an exact count, ~100 ids a template instead of thousands)
        self._population_cap = int(self._bola_cap / COVERAGE) + 2
        self._logins_by_ip: dict[str, Distinct] = {}  # ip:... -> accounts that logged in from it (a day)
        # an address is shared once `popular` accounts logged in from it: counting further changes nothing
        self._logins_cap = s.entity.popular + 1

    def _all(self) -> Iterable[Scenario]:
        return (getattr(self.sc, n) for n in ScenariosNames)

    # The body must be buffered for login accounts and lookup identifiers.
    def request_body(self, ex: Exchange) -> None:
        return None

    # --- the complete phase ----------------------------------------------------------------------

    def complete(self, ex: Exchange) -> None:
        resp = ex.response
        if resp is None or resp.from_bastion:
            return  # Bastion's own answers (blocks, bans) never count: no self-feeding bans
        now = self.clock.now()
        req = ex.request
        target = req.target
        route = self._routes.get(target)
        if route is None:
            route = self._route(target)
        method = req.method
        if method != "GET":  # (the usual method needs no upper-casing)
            method = method.upper()
        status = resp.status
        links = ex.links
        keys = ex.keys
        graph = self.core.graph
        if (links is None or not route.plain or method in self._route_methods or not 200 <= status < 400
                or req.body or links.epoch != graph.epoch or links.ip != keys.get("ip")):
            # not the short path below: a login or POST, a lookup, an error or redirect, a body, or a key
            # left the graph since request time
            ip = keys.get("ip") or ex.client.ip
            if method in self._route_methods:  # a login or a POST: is the target a login or sequence route?
                if route.login is None:
                    route.classify(self.login_re, self.seq_re, self.not_login_re)
                is_login = bool(route.login) and method in self.login_methods
                if not is_login and method == "POST" and b"mutation" in req.body[:4096]:
                    is_login = graphql_login(req.body)  # a GraphQL login mutation (POST /graphql)
                seq_post = method == "POST" and (is_login or bool(route.sequence))
            else:
                is_login = seq_post = False
            live = links is not None and links.epoch == graph.epoch and links.ip == ip
            if not (live and route.plain and 200 <= status < 400 and not (is_login or seq_post or req.body)):
                self._general(ex, now, route, method, is_login, seq_post, status, links, keys, ip, live)
                return
        else:
            ip = links.ip  # (keys["ip"]: the address the nodes were linked for)
        assert links is not None
        # The common exchange (the short path): answered 2xx/3xx, no body, no login, sequence or
        # lookup scenario concerned, its keys' nodes still live (links). Only activity, scraping,
        # BOLA and token spread apply; subjects are taken in the order of the general path (address,
        # identity, fingerprint, network), so state and findings are the same. The general path's
        # calls (_activity, Decayed.add, _scraping, _bola, Distinct.add) are inlined for the address
        # and for records that exist already: this runs for most exchanges, and a call costs more
        # than most of what it does here.
        popular = graph.limits.popular  # graph.popular(node), inlined below
        is_get = method == "GET"
        ip_node = links.ipn
        assert ip_node is not None
        ip_key = ip_node.key
        strong = links.strong
        # the address: a weak subject when it is shared (a NAT with several identities)
        shared = ip_node.shared
        ip_weak = shared >= popular and ip_node.bad < 3 * shared
        if strong is not None:
            ent = strong.entity
        else:  # graph.anonymous_at(ip_node), inlined for an address no identity was seen from
            ent = ip_node.entity
            if ent.n_strong and ip_weak:
                ent = graph.anonymous_at(ip_node)
        activity = self.activity
        # _activity(), inlined for a known subject (a lookup, not a try: a miss, a new subject, is
        # common enough that raising KeyError would cost more than the lookups save)
        act = activity.get(ip_key)
        if act is None:
            act = self._activity(ip_key, now)
        else:
            act.last = now
        ent_key = ent.id
        ent_act = None
        if ent_key != ip_key and not ent_key.startswith(("ip:", "nat:")):
            ent_act = activity.get(ent_key)
            if ent_act is None:
                ent_act = self._activity(ent_key, now)
            else:
                ent_act.last = now
        weak_nodes = links.soft
        if is_get:
            for node in weak_nodes:  # fingerprint and network: only their last GET matters (sequence)
                shared = node.shared
                if shared < popular or node.bad >= 3 * shared:  # (a popular one is not a subject)
                    node.entity.last_get = now
            act.last_get = now
        # an integration's fetches of objects by id are BOLA's to judge, not scraping's (see integration)
        scrape = self._scraping_on and not (route.obj_id and integration(ex))
        if not ip_weak:
            v = act.total_v  # Decayed.add(now, 60.0), inlined (the same arithmetic)
            if v > 0.0 and now > act.total_t:
                v *= 0.5 ** ((now - act.total_t) / 60.0)
            act.total_v = v + 1.0
            act.total_t = now
            if scrape:
                self._scrape(ex, ip_key, act, route.target, now, ent)
        if ent_act is not None:
            v = ent_act.total_v
            if v > 0.0 and now > ent_act.total_t:
                v *= 0.5 ** ((now - ent_act.total_t) / 60.0)
            ent_act.total_v = v + 1.0
            ent_act.total_t = now
            if is_get:
                ent_act.last_get = now
            if scrape:
                self._scrape(ex, ent_key, ent_act, route.target, now, ent)
        if not act.clean and weak_nodes and is_get and status < 300 and not route.ident:
            # the address's first clean GET: the client software (and network) is used normally
            # from one more address (see _general)
            act.clean = True
            for node in weak_nodes:
                node.shared += 1
                if act.failed:
                    node.bad -= 1
        ent.good += 1  # a normal answer: the entity has a history of its own (see follows_software)
        obj_id = route.obj_id
        if obj_id and (ent_act is not None or not ip_weak) and self._bola_on and (
                is_get or method in ("PUT", "PATCH", "DELETE")):
            template = route.template
            # the population's ids (_bola asks for each subject; after the first, the id is known)
            pop = self.population.get(template)
            if pop is None or (obj_id not in pop.seen if pop.seen is not None else obj_id != pop.head):
                self._population_ids(template, obj_id, now)
            if not ip_weak:
                self._bola_plain(ex, ip_key, act, template, obj_id, now)
            if ent_act is not None:
                self._bola_plain(ex, ent_key, ent_act, template, obj_id, now)
        if links.tokens and ("session" in keys or "api_key" in keys or "user" in keys):
            nodes = links.nodes
            for kind in ("session", "api_key", "user"):
                token = keys.get(kind)
                if token:
                    # the token's node name is its subject (f"{kind}:{token}": one string, not one per exchange);
                    # an unverified user has no node
                    n = nodes.get(kind)
                    self._token_spread(ex, n.key if n is not None else f"{kind}:{token}", ip, keys.get("net", ip),
                                       now)

    def _general(self, ex: Exchange, now: float, route: Route, method: str, is_login: bool, seq_post: bool,
                 status: int, links: Resolved | None, keys: dict[str, str], ip: str, live: bool) -> None:
        """complete() for every exchange the short path does not take."""
        core = self.core
        graph = core.graph
        req = ex.request
        if live:
            # No key left the graph since request time: the nodes linked then are the live ones.
            assert links is not None  # (live: linked)
            ip_node: Node | None = links.nodes["ip"]
            assert ip_node is not None
            ip_key = ip_node.key
            strong = links.strong
            ent: Entity | None = strong.entity if strong is not None else graph.anonymous_at(ip_node)
            weak_nodes = links.soft
        else:
            ip_link = links.nodes.get("ip") if links is not None else None
            # the name built at request time when there is one (no formatting, hash cached)
            ip_key = ip_link.key if ip_link is not None and ip_link.key[3:] == ip else f"ip:{ip}"
            ip_node = graph.nodes.get(ip_key)
            ent = core.entity_of(ex)
            weak_nodes = core.soft_nodes(ex)
        # (subject key, weak): a weak subject is shared by many people (client software, network, an
        # address behind which several identities log in: a NAT); it needs a bad-outcome share too
        subjects: list[tuple[str, bool]] = [(ip_key, ip_node is not None and graph.popular(ip_node))]
        if ent is not None and ent.id != ip_key and not ent.id.startswith(("ip:", "nat:")):
            subjects.append((ent.id, False))
        own = subjects[:]  # the address and the identity: the subjects with an activity record
        soft = [node for node in weak_nodes if not graph.popular(node)]  # client software, network
        for node in soft:
            subjects.append((node.key, True))
        template = route.template

        # activity: every answered request (of the address and the identity: `own`)
        acts = [self._activity(subj, now) for subj, _ in own]
        is_get = method == "GET"
        scraping = self.sc.scraping.enabled and not (route.obj_id and integration(ex))  # (as in complete)
        if seq_post and not subjects[0][1] and now - acts[0].last_get <= self.sc.sequence.window:
            # the address (not a shared one) made a GET before: so did the client, even when its
            # identity is new (a session cookie the sign-in page just set)
            seq_post = False
        for (subj, weak), act in zip(own, acts, strict=True):
            if not weak:
                v = act.total_v  # Decayed.add(now, 60.0) (the same arithmetic)
                if v > 0.0 and now > act.total_t:
                    v *= 0.5 ** ((now - act.total_t) / 60.0)
                act.total_v = v + 1.0
                act.total_t = now
            if seq_post:
                self._sequence(ex, subj, act.last_get, now)
            if is_get:
                act.last_get = now
            if not weak and scraping:
                self._scraping(ex, subj, act, route.target, now, ent)
        for node in soft:  # the client software and network keep only their last GET (on their entity)
            if seq_post:
                self._sequence(ex, node.key, node.entity.last_get, now)
            if is_get:
                node.entity.last_get = now
        if weak_nodes:
            # Popularity of the client software (and network), counted in addresses: those browsing
            # normally with it (shared) and those that only ever failed with it (bad). A browser used
            # by many people is popular even while one scanner hammers with the same headers.
            act = acts[0]  # the address's
            if is_get and 200 <= status < 300 and not is_login and not route.ident:  # a clean GET
                if not act.clean:
                    act.clean = True
                    for node in weak_nodes:
                        node.shared += 1
                        if act.failed:
                            node.bad -= 1
            elif status >= 400 and not act.clean and not act.failed:
                act.failed = True
                for node in weak_nodes:
                    node.bad += 1

        if status in SCAN_STATUSES or (status == 401 and not is_login):
            for (subj, weak), act in zip(own, acts, strict=True):
                if not weak:  # a fingerprint is never blamed for scanning: scanners are per source
                    self._scanning(ex, subj, weak, act, route.path, now)

        # nothing can carry an identifier without a query, a body or one in the path
        idents = [] if is_login else self._identifiers(ex, route) if req.body else route.idents
        if ent is not None and 200 <= status < 400 and not is_login and not idents:
            ent.good += 1  # a normal answer: the entity has a history of its own (see follows_software)
        if is_login:
            self._login(ex, subjects, status, template, now)
        else:
            if idents:
                miss = self._missed(ex)
                # misses on a lookup are rarer than mistyped passwords: a lower bar for pressure
                # Under pressure, each requester gets less benefit of the doubt (rotating enumerators
                # spend only a few requests per address), a fresh anonymous one (no normal history, no
                # key) the least. Not an address where an account signed in (a user looking up four
                # friends while an enumeration runs on the same endpoint is no enumerator), nor a
                # credential with a history: an attacker can invent a key or a token on each address,
                # not an account's password. (A session cookie alone is no credential: the site mints
                # one for every visitor.)
                credential = keys.get("api_key") or keys.get("user")
                established = ent is not None and ent.good >= ESTABLISHED
                hot = self._pressure("lookup:" + template, now, miss, min_bad=15.0) and not (
                    ip_key in self._logins_by_ip or (credential and established))
                fresh = hot and not established and not credential
                digests = [hash_key(v) for v in idents]  # once, not once per subject
                near = [_neighbours(v) for v in idents]
                for subj, weak in subjects:
                    self._enumeration(ex, subj, weak, template, digests, miss, hot, now, fresh, near)
            obj_id = route.obj_id
            if obj_id and method in ("GET", "PUT", "PATCH", "DELETE"):
                for (subj, weak), act in zip(own, acts, strict=True):
                    if not weak:
                        self._bola(ex, subj, template, obj_id, status in DENY_STATUSES, now, act)
            if (req.body or req.query) and self.sc.guessing.enabled and status not in _NOT_GUESS_STATUSES and (
                    400 <= status < 500 or self._guessing_tracks.peek(f"{ip_key}|{template}") is not None):
                # a refused code, or any answer on an endpoint where this address was refused one
                codes = self._codes(ex)
                if codes:
                    self._guessing(ex, subjects, template, codes, status, now)

        if "session" in keys or "api_key" in keys or "user" in keys:
            for kind in ("session", "api_key", "user"):
                token = keys.get(kind)
                if token:
                    self._token_spread(ex, f"{kind}:{token}", ip, keys.get("net", ip), now)

    def _scrape(self, ex: Exchange, subj: str, act: Activity, target: str, now: float, ent: Entity | None) -> None:
        """_scraping() for the short path of complete() (scraping enabled)."""
        paths = act.paths
        if paths is None:
            paths = act.paths = Distinct()
        n = paths.add(target, now, self._scraping_window, self._scraping_cap)
        baseline = self.baseline
        if n & (n - 1) == 0 and n > act.peak:  # only a power of two counts (see Baseline.crossed)
            act.peak = n
            self._cross(n, ent, now)
        if now - baseline._at >= 5.0:
            baseline.p99(now)  # (refreshes the limit: _scraping reads it the same way)
        if n >= baseline.limit or self._scraping_slow:
            self._scraped(ex, subj, act, target, now, n)

    def _bola_plain(self, ex: Exchange, subj: str, act: Activity, template: str, obj_id: str, now: float) -> None:
        """_bola(..., denied=False) for the short path of complete() (bola enabled, the population counted already): the
        subject's track key is kept on its activity record (no string built per exchange)."""
        key = act.bola_key
        if act.bola_tpl == template and key:
            t = self._bola_tracks.by_subject.get(key)
        elif act.bola_id:
            t = None  # an id waits on the activity record: _bola_track below
        else:  # _bola_track's usual cases, inlined: a template the subject has a track on, or its first id there
            act.bola_tpl = template
            key = subj + "|" + template
            t = self._bola_tracks.by_subject.get(key)
            if t is None and self._bola_threshold > 1:
                act.bola_key = ""
                act.bola_id = obj_id
                act.bola_t = now
                return
            act.bola_key = key if t is not None else ""
        if t is None:
            t = self._bola_track(subj, act, template, obj_id, now, self._bola_threshold > 1)
            if t is None:
                return  # the subject's first id there: kept on its activity record until a second request
        else:
            t.last = now  # Tracks.get, inlined
        window = self._bola_window
        share = _refused_share(t, now, window, False)
        fast = t.fast
        seen = fast.seen
        cap = self._bola_cap
        known = obj_id in seen if seen is not None else obj_id == fast.head  # (obj_id in fast, inlined)
        n = fast.add(obj_id, now, window, cap)
        if not known:  # a new id: does it walk from one seen before?
            w = _walked(obj_id, fast)
            self._walk(t, w, True, now, window)
            if w and self._bola_slow:
                self._slow_walk(ex, t, subj, template, obj_id, now)
        if n >= self._bola_threshold:
            self._bola_judge(ex, self.sc.bola, t, subj, template, obj_id, n, share, False, now)

    def _route(self, raw: str) -> Route:
        route = Route(raw, self.templates, self.clock.now())
        if len(raw) <= MEMO_TARGET:
            if len(self._routes) >= 20_000:
                self._routes.clear()
            self._routes[raw] = route
        return route

    # --- scenarios ---------------------------------------------------------------------------------

    def _fire(self, ex: Exchange, scenario: str, s: Scenario, track: Fired, subject: str, now: float,
              message: str, evidence: str, slow: bool = False, risk: float | None = None) -> None:
        if now - track.fired < s.cooldown:
            return
        track.fired = now
        rule = f"bhv-{scenario.replace('_', '-')}{'-slow' if slow else ''}"
        self.fired[rule] = self.fired.get(rule, 0) + 1
        ex.add(Finding(
            rule_id=rule,
            detector=self.name,
            message=message[:200],
            severity=Severity.CRITICAL if (risk if risk is not None else s.risk) >= 90 else Severity.WARNING,
            evidence=evidence[:200],
            tags=("behaviour", scenario, f"subject={subject}"),
            risk=s.risk if risk is None else risk,
        ))

    def _activity(self, subject: str, now: float) -> Activity:
        a = self.activity.get(subject)
        if a is None:
            cutoff = now - self._activity_idle
            stale = now - self._scraping_window

            def idle(rec: Activity) -> bool:
                if rec.last < cutoff:
                    return True
                if rec.last < stale:
                    # every resource counted was seen a scraping window ago or more: the next count
                    # would drop them all (Distinct.add's trim), so they go now (up to 601 per subject)
                    rec.paths = None
                return False

            self._activity_sweeper.step(self.activity, now, idle)
            if len(self.activity) >= self._activity_max:
                # Full (the idle sweep keeps subjects a day): drop the least recently used, a hundredth
                make_room(self.activity, max(1, self._activity_max // 100))
            a = self.activity[subject] = Activity()
        a.last = now
        return a

    def _scanning(self, ex: Exchange, subj: str, weak: bool, act: Activity, path: str, now: float) -> None:
        s = self.sc.scanning
        if not s.enabled:
            return
        t = self.tracks["scanning"].get(subj, now)
        bad = t.bad.add(now, 60.0)
        n = t.fast.add(path, now, s.window, int(s.threshold) + 1)
        share = bad / max(_decayed_value(act.total_v, act.total_t, now, 60.0), 1.0)
        need = max(s.min_share, 0.7) if weak else s.min_share
        if n >= s.threshold and share >= need:
            self._fire(ex, "scanning", s, t, subj, now, f"{n} distinct paths refused (4xx) within {s.window:g}s",
                       f"{n} paths, error share {share:.2f}")
        elif s.slow_threshold and not weak:
            if t.slow is None:
                t.slow = Distinct()
            m = t.slow.add(path, now, s.slow_window, int(s.slow_threshold) + 1)
            if m >= s.slow_threshold:
                self._fire(ex, "scanning", s, t, subj, now, f"{m} distinct paths refused within {s.slow_window:g}s",
                           f"{m} paths (low and slow)", slow=True)

    def _account(self, ex: Exchange) -> str:
        body = ex.request.body
        if body:
            ct = ex.request.content_type
            fields: dict[str, str] = {}
            try:
                if "json" in ct or body[:1] in (b"{", b"["):
                    data = orjson.loads(body)
                    if isinstance(data, dict):
                        # one level down too: {"user": {"email": ..., "password": ...}} (Rails/Devise)
                        for v in data.values():
                            if isinstance(v, dict):
                                for v2 in v.values():  # GraphQL: {"variables": {"input": {"email": ...}}}
                                    if isinstance(v2, dict):
                                        fields.update((str(k3).lower(), str(v3)) for k3, v3 in v2.items()
                                                      if isinstance(v3, str | int))
                                fields.update((str(k2).lower(), str(v2)) for k2, v2 in v.items()
                                              if isinstance(v2, str | int))
                        fields.update((str(k).lower(), str(v)) for k, v in data.items() if isinstance(v, str | int))
                else:
                    # user[email]=... (a Rails form) names the field by its innermost key
                    fields = {k.lower().rsplit("[", 1)[-1].rstrip("]"): v
                              for k, v in parse_qsl(body.decode("utf-8", "replace"))}
            except (orjson.JSONDecodeError, ValueError):
                fields = {}
            for f in self.account_fields:
                v = fields.get(f)
                if v:
                    return hash_key(v.strip().lower(), self.salt)
        user = ex.keys.get("user")
        return hash_key(user, self.salt) if user else ""

    def _redirected_back(self, location: str) -> bool:
        """A form login that fails redirects back to its own page or to `?error` (Spring Security's
        `/login?error`, OAuth's `?error=access_denied`); a success goes on to the application."""
        if not location:
            return False
        target = urlsplit(location)
        if _REDIRECT_ERROR.search(target.query) is not None:
            return True
        return self.login_re is not None and self.login_re.search(target.path) is not None

    def _pressure(self, template: str, now: float, bad: bool, min_bad: float = 25.0) -> bool:
        p = self.pressure.get(template)
        if p is None:
            if len(self.pressure) > 10_000:
                self.pressure.clear()
            p = self.pressure[template] = EndpointPressure()
        p.record(now, bad)
        return p.under_attack(now, min_bad=min_bad)

    def _login(self, ex: Exchange, subjects: list[tuple[str, bool]], status: int, template: str,
               now: float) -> None:
        sc = self.sc
        resp = ex.response
        assert resp is not None
        failed = status in self.failure_statuses
        # 200 with an error body, or 400/422 (OAuth's token endpoint answers a wrong password with
        # 400 invalid_grant, RFC 6749 5.2): a failure when the body says so
        if not failed and status in (200, 400, 422) and resp.body:
            low = resp.body[:4096].lower()
            failed = (any(m in low for m in self.markers) or _FAILED_LOGIN.search(low) is not None
                      # GraphQL answers a wrong password with 200 and an `errors` list (the field null)
                      or (low[:1] == b"{" and _GRAPHQL_ERRORS.search(low) is not None))
        elif not failed and 300 <= status < 400:
            failed = self._redirected_back(resp.headers.get("location") or "")
        success = not failed and 200 <= status < 400
        account = self._account(ex)
        tr = self.tracks
        hot = self._pressure("login:" + template, now, failed)
        keys = ex.keys
        ent = self.core.entity_of(ex)
        established = ent is not None and ent.good >= ESTABLISHED
        # a session cookie alone is no credential: the sign-in page sets one for every visitor, and an
        # attacker clearing cookies gets a new one per address (see EntityGraph.follows_software)
        fresh = not established and not (keys.get("api_key") or keys.get("user"))
        # Under a (distributed) attack on the login, each source gets less benefit of the doubt; a
        # fresh anonymous one (no normal request before, no key) the least. A user who mistypes
        # three times, or tries two spellings of their name, stays under the lowered limits.
        bf_limit = _lowered(sc.brute_force.threshold, hot, floor=3.0 if fresh else 4.0)
        st_limit = _lowered(sc.stuffing.threshold, hot, floor=2.0 if fresh else 3.0)
        bf = sc.brute_force
        st = sc.stuffing
        if success and account and subjects:
            self._shared_by_logins(ex, subjects[0][0], account, now)
        for subj, weak in subjects:
            t = tr["brute_force"].get(subj, now)
            attempts = t.total.add(now, bf.window)
            slow_share = self._slow_share(t, now, bf.slow_window, failed) if not weak and bf.slow_threshold else 0.0
            if failed:
                fails = t.bad.add(now, bf.window)
                share = fails / max(attempts, 1.0)
                need = 0.7 if weak else 0.0
                self._failed_login(t, account, now, sc.ato_success.window)
                if bf.enabled and fails >= bf_limit and share >= need:
                    self._fire(ex, "brute_force", bf, t, subj, now, f"{fails:.0f} failed logins",
                               f"{fails:.1f} failures, failure share {share:.2f}")
                elif bf.enabled and bf.slow_threshold and not weak:
                    if t.slow is None:
                        t.slow = Distinct()
                    # low and slow: failures kept one by one over hours (member: the time); only
                    # while most logins of the subject fail (a busy shared address that mostly logs
                    # in fine is not guessing passwords)
                    m = t.slow.add(f"{now:.3f}", now, bf.slow_window, int(bf.slow_threshold) + 1)
                    if m >= bf.slow_threshold and slow_share >= SLOW_FAILURE_SHARE:
                        self._fire(ex, "brute_force", bf, t, subj, now, f"{m} failed logins in {bf.slow_window:g}s",
                                   f"{m} failures, failure share {slow_share:.2f} (low and slow)", slow=True)
                if st.enabled and account:
                    u = tr["stuffing"].get(subj, now)
                    n = u.fast.add(account, now, st.window, int(st.threshold) + 1)
                    if n >= st_limit and share >= need:
                        self._fire(ex, "stuffing", st, u, subj, now, f"failed logins on {n} distinct accounts"
                                   + (" while the login is under attack" if hot else ""),
                                   f"{n} accounts, failure share {share:.2f}")
                    elif st.slow_threshold and not weak:
                        if u.slow is None:
                            u.slow = Distinct()
                        m = u.slow.add(account, now, st.slow_window, int(st.slow_threshold) + 1)
                        if m >= st.slow_threshold and slow_share >= SLOW_FAILURE_SHARE:
                            self._fire(ex, "stuffing", st, u, subj, now,
                                       f"failed logins on {m} accounts in {st.slow_window:g}s",
                                       f"{m} accounts, failure share {slow_share:.2f} (low and slow)", slow=True)
            elif success:
                ato = sc.ato_success
                # failures since the last success, not decayed: five guesses spread over minutes
                # are as many guesses as five in a row
                x = t.x
                streak = x.streak if x is not None and now - x.streak_t <= ato.window else 0
                if ato.enabled and not weak and streak >= ato.threshold:
                    self._fire(ex, "ato_success", ato, t, subj, now, f"login succeeded after {streak} failures",
                               f"{streak} failures since the last success")
                if x is not None:
                    x.streak = 0
                if account:
                    self._forgive(t, tr["stuffing"].peek(subj), account, now, bf.window, bf.slow_window)
        aa = sc.account_attack
        if failed and account and aa.enabled and not established:
            a = tr["account_attack"].get("acct:" + account, now)
            fails = a.bad.add(now, aa.window)
            sources = a.fast.add(subjects[0][0], now, aa.window, 64)
            if fails >= aa.threshold and sources >= 3:
                # the account is under attack from many places: every further failure on it adds risk
                # to whoever fails (the owner mistyping once gains less than a challenge)
                saved, a.fired = a.fired, -1e18
                self._fire(ex, "account_attack", aa, a, subjects[0][0], now,
                           f"account failing from {sources} addresses", f"{fails:.0f} failures on one account")
                a.fired = saved

    @staticmethod
    def _slow_share(t: Track, now: float, window: float, failed: bool) -> float:
        """Count one login attempt over the slow window and return the decayed share that failed."""
        x = t.extra()
        total = x.slow_total.add(now, window)
        return x.slow_bad.add(now, window, 1.0 if failed else 0.0) / max(total, 1.0)

    @staticmethod
    def _failed_login(t: Track, account: str, now: float, streak_window: float) -> None:
        """Remember a failure: the streak since the last success, and its account (for _forgive)."""
        x = t.extra()
        x.streak = x.streak + 1 if now - x.streak_t <= streak_window else 1
        x.streak_t = now
        if not account:
            return
        typos = x.typos
        times = typos.get(account)
        if times is None:
            if len(typos) >= 64:  # bounded: the oldest account is forgotten (its failures stay counted)
                del typos[next(iter(typos))]
            times = typos[account] = []
        if len(times) <= TYPOS:  # one more than forgivable is enough to know it is not a typo
            times.append(now)

    @staticmethod
    def _forgive(t: Track, u: Track | None, account: str, now: float, window: float, slow_window: float) -> None:
        """A login that succeeds after a few failures on the same account from the same subject: those
        failures were typos (a mistyped password, caps lock), not guesses. They leave the brute-force
        and stuffing counts, fast and slow, so that the everyday typos of many users behind one address
        (an office NAT) do not add up to an attack over a day. More than TYPOS failures stay counted."""
        x = t.x
        times = x.typos.pop(account, None) if x is not None else None
        if not times or len(times) > TYPOS:
            return
        assert x is not None
        bad = t.bad
        v = bad.value(now, window) - sum(0.5 ** ((now - ft) / window) for ft in times)
        bad.v, bad.t = max(0.0, v), now
        sb = x.slow_bad
        v = sb.value(now, slow_window) - sum(0.5 ** ((now - ft) / slow_window) for ft in times)
        sb.v, sb.t = max(0.0, v), now
        if t.slow is not None:
            for ft in times:
                t.slow.discard(f"{ft:.3f}")
        if u is not None:
            u.fast.discard(account)
            if u.slow is not None:
                u.slow.discard(account)

    def _shared_by_logins(self, ex: Exchange, ip_key: str, account: str, now: float) -> None:
        """Count distinct accounts logging in successfully from an address: an address where many
        people log in is shared (an office NAT), even when its users carry no identity the entity
        graph knows (an unknown session cookie, unverified bearer tokens)."""
        node = self.core.graph.nodes.get(ip_key)
        if node is None or not ip_key.startswith("ip:"):
            return
        d = self._logins_by_ip.get(ip_key)
        if d is None:
            if len(self._logins_by_ip) >= 100_000:
                self._logins_by_ip.clear()
            d = self._logins_by_ip[ip_key] = Distinct()
        cap = self._logins_cap
        if account in d:
            d.add(account, now, 86400.0, cap)
            return
        n = d.add(account, now, 86400.0, cap)
        if n >= 2 and node.shared < 1_000_000:
            # a second (third...) account: one more identity seen at the address (as _saw_identity)
            node.shared += 2 if n == 2 else 1

    def _sequence(self, ex: Exchange, subj: str, last_get: float, now: float) -> None:
        """`last_get`: when the subject last made a GET."""
        s = self.sc.sequence
        if not s.enabled or now - last_get <= s.window:
            return
        t = self.tracks["sequence"].get(subj, now)
        self._fire(ex, "sequence", s, t, subj, now, "POST to a login/checkout route with no request before it",
                   f"no GET within {s.window:g}s")

    def _identifiers(self, ex: Exchange, route: Route) -> Sequence[str]:
        """The identifiers an exchange looks up: those of its target (route.idents), then those of a
        small JSON or form body (a "forgot password" or "check availability" form). At most four."""
        req = ex.request
        out = list(route.idents)
        if req.body and req.method.upper() in ("POST", "PUT"):
            for k, v in body_fields(req, 8):
                if v != "" and isinstance(v, str | int) and (str(k).lower() in IDENT_PARAMS
                                                             or looks_identifier(str(v))):
                    out.append(str(v).strip().lower()[:128])
        return out[:4]

    def _missed(self, ex: Exchange) -> bool:
        resp = ex.response
        assert resp is not None
        if resp.status in (404, 204, 410):
            return True
        if resp.status != 200:
            return False
        body = resp.body.strip()
        if body in _EMPTY:
            return bool(body) or resp.body_size == 0
        if len(body) < 200:
            low = body.lower()
            # or a GraphQL answer whose one field is null: {"data": {"userByEmail": null}}
            return (any(m in low for m in _NEGATIVE) or _GRAPHQL_NULL.match(body) is not None
                    # {"user": null}, {"results": []}: the one thing asked for is empty. (Not a search's
                    # `"total": 0`: a support agent's searches miss as often as they find)
                    or _EMPTY_ONE.match(body) is not None)
        return False

    def _codes(self, ex: Exchange) -> list[str]:
        """The codes a request submits (`name=value`, at most four): the values of fields named like a code
        (_CODE_FIELD) in its query and in a small JSON or form body (one level down too: `{"input":
        {"code": ...}}`), 3 to 64 characters long."""
        req = ex.request
        pairs: list[tuple[Any, Any]] = list(req.query_args()) if req.query else []
        if req.body:
            pairs += body_fields(req, 16)
        out: list[str] = []
        for k, v in pairs:
            if not isinstance(v, str | int) or isinstance(v, bool):
                continue
            name = str(k).lower().rsplit("[", 1)[-1].rstrip("]")
            value = str(v).strip()
            if 3 <= len(value) <= 64 and _CODE_FIELD.search(name) and not _NOT_CODE_FIELD.search(name):
                out.append(f"{name}={value}")
                if len(out) == 4:
                    break
        return out

    def _guessing(self, ex: Exchange, subjects: list[tuple[str, bool]], template: str, codes: list[str],
                  status: int, now: float) -> None:
        """Codes refused on one endpoint: distinct codes per subject (address, identity, and the client
        software with a refused share), like brute force is distinct passwords. A user mistypes a one-time
        code or a gift card two or three times; a guesser sends hundreds, from one address or a few."""
        s = self.sc.guessing
        resp = ex.response
        assert resp is not None
        failed = 400 <= status < 500 or (
            status == 200 and len(resp.body) < 1024 and _FAILED_CODE.search(resp.body.lower()) is not None)
        hot = self._pressure("guess:" + template, now, failed)
        limit = _lowered(s.threshold, hot, factor=2.0, floor=5.0)
        digests = [hash_key(c) for c in codes]
        tracks = self._guessing_tracks
        for subj, weak in subjects:
            key = f"{subj}|{template}"
            t = tracks.get(key, now) if failed else tracks.peek(key)
            if t is None:
                continue  # (a success where this subject was never refused: nothing to count)
            share = _refused_share(t, now, s.window, failed)
            slow_share = self._slow_share(t, now, s.slow_window, failed) if s.slow_threshold and not weak else 0.0
            if not failed:
                continue
            n = 0
            for d in digests:
                n = t.fast.add(d, now, s.window, int(s.threshold) + 1)
            need = max(s.min_share, 0.8) if weak else s.min_share
            if n >= limit and share >= need:
                self._fire(ex, "guessing", s, t, subj, now, f"{n} distinct codes refused on {template}"[:200],
                           f"{n} codes, refused share {share:.2f}")
            elif s.slow_threshold and not weak:
                if t.slow is None:
                    t.slow = Distinct()
                m = 0
                for d in digests:
                    m = t.slow.add(d, now, s.slow_window, int(s.slow_threshold) + 1)
                if m >= s.slow_threshold and slow_share >= s.min_share:
                    self._fire(ex, "guessing", s, t, subj, now, f"{m} distinct codes refused in {s.slow_window:g}s",
                               f"{m} codes, refused share {slow_share:.2f} (low and slow)", slow=True)

    def _enumeration(self, ex: Exchange, subj: str, weak: bool, template: str, digests: list[str], miss: bool,
                     hot: bool, now: float, fresh: bool = False,
                     near: Sequence[tuple[str, ...]] = ()) -> None:
        """`digests`: hash_key() of each identifier looked up; `near`: those of its neighbours (see
        _neighbours), for each identifier."""
        s = self.sc.enumeration
        if not s.enabled:
            return
        t = self.tracks["enumeration"].get(f"{subj}|{template}", now)
        share = _refused_share(t, now, s.window, miss)
        n = 0
        fast = t.fast
        for i, d in enumerate(digests):
            if d not in fast and i < len(near):
                # a new identifier, and whether it is the neighbour of one looked up already
                # (a walked range of phone numbers or account numbers)
                self._walk(t, int(any(x in fast for x in near[i])), True, now, s.window)
            n = fast.add(d, now, s.window, int(s.threshold * 3) + 1)
        need = max(s.min_share, 0.6) if weak else s.min_share
        limit = 2.0 if fresh and not weak else _lowered(s.threshold, hot, factor=4.0, floor=3.0)
        if (n >= limit and share >= need) or (
                # volume: many identifiers with some misses, or walked in order; an integration
                # resolving its own records (a CRM looking up callers) mostly finds them
                n >= 3 * s.threshold and not weak
                and (share >= VOLUME_MISS_SHARE or (t.new is not None and self._walked_share(t, now, s.window)
                                                    >= 0.5))):
            self._fire(ex, "enumeration", s, t, subj, now, f"{n} distinct identifiers looked up on {template}"[:200],
                       f"{n} identifiers, miss share {share:.2f}")
        elif s.slow_threshold and not weak:
            slow_share = self._slow_share(t, now, s.slow_window, miss)
            if not miss:
                return
            if t.slow is None:
                t.slow = Distinct()
            m = 0
            for d in digests:  # low and slow: distinct identifiers that missed, over hours
                m = t.slow.add(d, now, s.slow_window, int(s.slow_threshold) + 1)
            if m >= s.slow_threshold and slow_share >= s.min_share:
                self._fire(ex, "enumeration", s, t, subj, now, f"{m} distinct identifiers in {s.slow_window:g}s",
                           f"{m} identifiers, miss share {slow_share:.2f} (low and slow)", slow=True)

    def _bola_track(self, subj: str, act: Activity, template: str, obj_id: str, now: float,
                    defer: bool) -> Track | None:
        """The BOLA track of a subject (whose activity record is `act`) on a template, found or made.
        The first id a subject fetches on a template, when it cannot fire (`defer`: not refused, a
        threshold above 1), waits on the activity record (bola_id, bola_t) and None is returned: the
        track is made by the subject's next request there, or when it moves to another template, and
        that first fetch is counted into it as it would have been (_bola_replay)."""
        if act.bola_tpl != template:
            if act.bola_id:
                self._bola_flush(subj, act)  # the waiting id of the previous template gets its track
            act.bola_tpl = template
            act.bola_key = ""
        key = act.bola_key or subj + "|" + template
        tracks = self._bola_tracks
        t = tracks.by_subject.get(key)
        if t is not None:
            act.bola_key = key
            t.last = now
            return t
        if defer and not act.bola_id:
            act.bola_id = obj_id
            act.bola_t = now
            return None
        t = tracks.add(key, now)
        t.new, t.walked = Decayed(), Decayed()  # new ids, and new ids next to a seen one (see _walk)
        act.bola_key = key
        if act.bola_id:
            self._bola_replay(t, act)
        return t

    def _bola_flush(self, subj: str, act: Activity) -> None:
        """Make the track of the id waiting on an activity record (see _bola_track)."""
        key = act.bola_key or subj + "|" + act.bola_tpl
        tracks = self._bola_tracks
        t = tracks.by_subject.get(key)
        if t is None:
            t = tracks.add(key, act.bola_t)
            t.new, t.walked = Decayed(), Decayed()
        self._bola_replay(t, act)

    def _bola_replay(self, t: Track, act: Activity) -> None:
        """Count the id waiting on an activity record into its (new) track, as _bola_plain counted a
        first fetch: one request not refused, one distinct id, a new id that walks from none."""
        t0 = act.bola_t
        window = self._bola_window
        _refused_share(t, t0, window, False)
        t.fast.add(act.bola_id, t0, window, self._bola_cap)
        self._walk(t, 0, True, t0, window)
        act.bola_id = ""

    def _bola(self, ex: Exchange, subj: str, template: str, obj_id: str, denied: bool, now: float,
              act: Activity) -> None:
        s = self.sc.bola
        if not s.enabled:
            return
        window = s.window
        t = self._bola_track(subj, act, template, obj_id, now, not denied and s.threshold > 1)
        if t is None:  # a first id, waiting on the activity record: only the population counts it now
            pop = self.population.get(template)
            if pop is None or (obj_id not in pop.seen if pop.seen is not None else obj_id != pop.head):
                self._population_ids(template, obj_id, now)
            return
        tot, bad = t.total, t.bad
        last = tot.t
        if last == bad.t:  # _refused_share(), inlined for its usual case (the same arithmetic)
            f = 0.5 ** ((now - last) / window) if now > last else 1.0
            total = tot.v * f + 1.0
            b = bad.v * f + (1.0 if denied else 0.0)
            tot.v = total
            tot.t = now
            bad.v = b
            bad.t = now
            share = b / total  # (total >= 1: the max(total, 1.0) of _refused_share is total)
        else:
            share = _refused_share(t, now, window, denied)
        fast = t.fast
        seen = fast.seen
        fresh = obj_id not in seen if seen is not None else obj_id != fast.head  # (obj_id not in fast)
        n = fast.add(obj_id, now, window, self._bola_cap)
        pop = self.population.get(template)
        if pop is None or (obj_id not in pop.seen if pop.seen is not None else obj_id != pop.head):
            self._population_ids(template, obj_id, now)
        if fresh:
            w = _walked(obj_id, fast)
            self._walk(t, w, fresh, now, window)
            if w and self._bola_slow:
                self._slow_walk(ex, t, subj, template, obj_id, now)
        if n >= s.threshold or (s.slow_threshold and denied):
            self._bola_judge(ex, s, t, subj, template, obj_id, n, share, denied, now)

    def _bola_judge(self, ex: Exchange, s: Scenario, t: Track, subj: str, template: str, obj_id: str, n: int,
                    share: float, denied: bool, now: float) -> None:
        """_bola's verdict once its counts are taken (n: distinct ids, share: refused share)."""
        if n < s.threshold:  # (every firing below needs n >= threshold)
            pass
        elif share >= s.min_share:
            self._fire(ex, "bola", s, t, subj, now, f"{n} distinct objects of {template}, {share:.0%} refused"[:200],
                       f"{n} ids, refused share {share:.2f}")
            return
        elif integration(ex):
            pass  # a machine client syncing the objects its key owns walks them, and is answered (see integration)
        elif n >= 2.5 * s.threshold and (seq := self._walked_share(t, now, s.window)) >= 0.8:
            self._fire(ex, "bola", s, t, subj, now, f"{n} objects of {template} walked in sequence"[:200],
                       f"{n} ids, sequential share {seq:.2f}")
            return
        elif (n >= 4 * s.threshold and (known := len(self.population[template])) >= 5 * s.threshold
              and n >= COVERAGE * known):
            # harvesting a small collection: one subject fetched most of the ids anyone ever fetched
            # (`known`: the template's population after this id, see _population_ids)
            sc = self.sc.scraping
            if sc.enabled:
                self._fire(ex, "scraping", sc, t, subj, now, f"{n} of the {known} known objects of {template}"[:200],
                           f"coverage {n / known:.0%} within {s.window:g}s")
            return
        if s.slow_threshold and denied:
            # low and slow: distinct *refused* ids over hours (a decayed share is noise at 1 req/10 min)
            if t.slow is None:
                t.slow = Distinct()
            m = t.slow.add(obj_id, now, s.slow_window, int(s.slow_threshold) + 1)
            if m >= s.slow_threshold:
                self._fire(ex, "bola", s, t, subj, now, f"{m} distinct objects of {template} in {s.slow_window:g}s",
                           f"{m} ids (low and slow)", slow=True)

    def _population_ids(self, template: str, obj_id: str, now: float) -> int:
        """Distinct ids the whole population fetched on a template over a day (capped: see _population_cap)."""
        d = self.population.get(template)
        if d is None:
            if len(self.population) > 5000:
                self.population.clear()
            d = self.population[template] = Distinct()
        if obj_id in d:
            return len(d)
        return d.add(obj_id, now, 86400.0, self._population_cap)

    def _slow_walk(self, ex: Exchange, t: Track, subj: str, template: str, obj_id: str, now: float) -> None:
        """Low-and-slow BOLA by walking: a new id that is the neighbour of one seen, counted over the
        slow window; fires once `slow_threshold` of them are counted while most of the subject's
        recent new ids are walked (the decayed share of _walk). A walk one id every few minutes never
        fills the fast window, and an API that answers other people's objects with 200 (the flaw
        itself) refuses none of them. Only walked ids come here: nothing is added for other fetches."""
        s = self.sc.bola
        if integration(ex):
            return
        x = t.extra()
        if x.slow_walked is None:
            x.slow_walked = Distinct()
        m = x.slow_walked.add(obj_id, now, s.slow_window, int(s.slow_threshold) + 1)
        if m >= s.slow_threshold and (seq := self._walked_share(t, now, s.window)) >= SLOW_WALK_SHARE:
            self._fire(ex, "bola", s, t, subj, now,
                       f"{m} objects of {template} walked in sequence in {s.slow_window:g}s"[:200],
                       f"{m} ids, sequential share {seq:.2f} (low and slow)", slow=True)

    @staticmethod
    def _walk(t: Track, walked: int, fresh: bool, now: float, window: float) -> None:
        """Count a new id, and whether it was the neighbour (id +/- 1) of one already seen."""
        if t.new is None or t.walked is None:
            t.new, t.walked = Decayed(), Decayed()
        if fresh:
            t.new.add(now, window)
            t.walked.add(now, window, float(walked))

    @staticmethod
    def _walked_share(t: Track, now: float, window: float) -> float:
        """Decayed share of new ids that were the neighbour of one already seen (after _walk)."""
        assert t.new is not None and t.walked is not None
        return t.walked.value(now, window) / max(t.new.value(now, window), 1.0)

    def _scraping(self, ex: Exchange, subj: str, act: Activity, target: str, now: float,
                  ent: Entity | None = None) -> None:
        s = self.sc.scraping
        if not s.enabled:
            return
        paths = act.paths
        if paths is None:
            paths = act.paths = Distinct()
        n = paths.add(target, now, s.window, self._scraping_cap)
        baseline = self.baseline
        if n & (n - 1) == 0 and n > act.peak:  # only a power of two counts (see Baseline.crossed)
            act.peak = n
            self._cross(n, ent, now)
        if now - baseline._at >= 5.0:
            baseline.p99(now)  # (refreshed at most every 5 s)
        self._scraped(ex, subj, act, target, now, n)

    def _cross(self, n: int, ent: Entity | None, now: float) -> None:
        """Baseline.crossed(n), unless the subject's entity has a record (risk points ever, or risk
        above watch now): attackers must not make the baseline they are judged against."""
        if ent is not None and (ent.history or ent.risk > 0.0):
            return
        self.baseline.crossed(n)

    def _scraped(self, ex: Exchange, subj: str, act: Activity, target: str, now: float, n: int) -> None:
        """_scraping's verdict once the subject's distinct resources (n) are counted."""
        s = self.sc.scraping
        if n >= self.baseline.limit:  # max(threshold, 4 x the population's p99), at most 2 x threshold
            t = self.tracks["scraping"].get(subj, now)
            if now - t.fired < s.cooldown:
                return  # (_fire would not fire: the concentration below is not worked out for nothing)
            if n < SPREAD_SCRAPING * s.threshold:
                top = self._concentration(act, n)
                if top < CONCENTRATION:
                    return
                where = f"{top:.0%} on two routes"
            else:
                where = "many routes"
            self._fire(ex, "scraping", s, t, subj, now, f"{n} distinct resources in {s.window:g}s",
                       f"{n} resources, {where}, population p99 {self.baseline.p99(now):g}")
        elif s.slow_threshold:
            if act.slow_paths is None:
                act.slow_paths = Distinct()
            m = act.slow_paths.add(target, now, s.slow_window, int(s.slow_threshold) + 1)
            if m >= s.slow_threshold:
                t = self.tracks["scraping"].get(subj, now)
                self._fire(ex, "scraping", s, t, subj, now, f"{m} distinct resources in {s.slow_window:g}s",
                           f"{m} resources (low and slow)", slow=True)

    def _concentration(self, act: Activity, n: int) -> float:
        """The share of a subject's distinct resources on its two most used route templates. A scraper
        harvests one or two collections (`/products?page=N`, `/products/{id}`); a client using the API
        (an app, a test harness, a busy office behind one address) spreads over many routes. Worked out
        again only after 16 more resources once found spread (a few hundred template lookups)."""
        if act.spread_n and n < act.spread_n + 16:
            return 0.0
        paths = act.paths
        if paths is None or paths.seen is None:
            return 1.0
        templates = self.templates
        counts = Counter(templates(target.partition("?")[0])[0] for target in paths.seen)
        top = sum(c for _, c in counts.most_common(2)) / max(len(paths.seen), 1)
        act.spread_n = n if top < CONCENTRATION else 0
        return top

    def _token_spread(self, ex: Exchange, token: str, ip: str, net: str, now: float) -> None:
        s = self.sc.token_spread
        if not s.enabled:
            return
        tracks = self._spread
        t = tracks.by_subject.get(token)
        if t is None:
            t = tracks.add(token, now)
            prev = now
        else:
            prev = t.last  # the token's previous use: the last sight of its one address and network
            t.last = now
        ips, nets = t.count(ip, net, prev, now, s.window, int(s.threshold * 2) + 1, int(s.threshold) + 1)
        if nets >= s.threshold or ips >= 2 * s.threshold:
            self._fire(ex, "token_spread", s, t, token, now,
                       f"one {token.partition(':')[0]} used from {ips} addresses / {nets} networks",
                       f"{ips} addresses, {nets} networks within {s.window:g}s")


ScenariosNames = ("scanning", "brute_force", "stuffing", "account_attack", "ato_success", "token_spread",
                  "enumeration", "bola", "scraping", "sequence", "guessing")


def make(config: BastionConfig, ctx: BuildContext) -> BehaviourDetector | None:
    if not config.behaviour.enabled:
        return None
    from bastion.detect.behaviour.core import get_core

    return BehaviourDetector(get_core(config, ctx))
