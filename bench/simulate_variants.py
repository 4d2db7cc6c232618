"""Independent behaviour simulation: another API, other traffic shapes, the default configuration.

`bastion simulate` (bastion.detect.behaviour.simulate) was written together with the detectors; this
one is written as a held-out test would be: a different in-process API ("Acme": JSON token login,
OAuth password grant, a Rails/Devise form login with redirects, a GraphQL login mutation, UUID and
numeric object routes, a phone lookup, a forgot-password endpoint, customer search, pagination) and
attackers/benign users with other rhythms and rotation habits. Only the exchange-driving machinery is
the same as the real proxy's (connection/request_headers/request_body -> API -> response phases ->
complete), on a ManualClock.

Usage: python bench/simulate_variants.py [--seed S] [--hours H] [--benign N] [--attackers N]
                                         [--kinds a,b] [--verbose] [--json] [--trace NAME,..]
                                         [--config-json '{"behaviour": {...}}']  (experiments only)

Reported per attack scenario: recall (attackers ever challenged or blocked), median requests that
got through before the first block, and the share of the attacker's requests refused. Per benign
habit: users ever blocked (challenge or block) and ever throttled (throttle or worse).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import heapq
import logging
import math
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import orjson

from bastion.clock import ManualClock
from bastion.config import parse_config
from bastion.detect.behaviour.simulate import request_phases
from bastion.engine import build_pipeline
from bastion.engine.pipeline import Pipeline
from bastion.exchange import Client, Headers, Response
from bastion.verdict import Action

HOST = "acme.example"
Profile = list[tuple[str, str]]

# --- client software: header names in the order each one sends them --------------------------------

CHROME_WIN: Profile = [
    ("Host", HOST), ("Connection", "keep-alive"),
    ("sec-ch-ua", '"Not/A)Brand";v="8", "Chromium";v="126", "Google Chrome";v="126"'),
    ("sec-ch-ua-mobile", "?0"), ("sec-ch-ua-platform", '"Windows"'),
    ("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "Chrome/126.0.0.0 Safari/537.36"),
    ("Accept", "application/json, text/plain, */*"), ("Sec-Fetch-Site", "same-origin"),
    ("Sec-Fetch-Mode", "cors"), ("Sec-Fetch-Dest", "empty"), ("Accept-Encoding", "gzip, deflate, br, zstd"),
    ("Accept-Language", "en-GB,en-US;q=0.9,en;q=0.8"),
]
EDGE_WIN: Profile = [
    ("Host", HOST), ("Connection", "keep-alive"),
    ("sec-ch-ua", '"Microsoft Edge";v="125", "Chromium";v="125", "Not.A/Brand";v="24"'),
    ("sec-ch-ua-mobile", "?0"), ("sec-ch-ua-platform", '"Windows"'),
    ("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "Chrome/125.0.0.0 Safari/537.36 Edg/125.0.0.0"),
    ("Accept", "application/json, text/plain, */*"), ("Sec-Fetch-Site", "same-origin"),
    ("Accept-Encoding", "gzip, deflate, br"), ("Accept-Language", "de-DE,de;q=0.9,en;q=0.8"),
]
FIREFOX_MAC: Profile = [
    ("Host", HOST),
    ("User-Agent", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:127.0) Gecko/20100101 Firefox/127.0"),
    ("Accept", "application/json, text/plain, */*"), ("Accept-Language", "en-US,en;q=0.5"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"), ("Connection", "keep-alive"), ("Sec-Fetch-Dest", "empty"),
    ("Sec-Fetch-Mode", "cors"), ("Sec-Fetch-Site", "same-origin"),
]
SAFARI_IOS: Profile = [
    ("Host", HOST), ("Accept", "application/json, text/plain, */*"), ("Sec-Fetch-Site", "same-origin"),
    ("Accept-Language", "en-US,en;q=0.9"), ("Sec-Fetch-Mode", "cors"), ("Accept-Encoding", "gzip, deflate, br"),
    ("User-Agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                   "Version/17.5 Mobile/15E148 Safari/604.1"),
    ("Connection", "keep-alive"),
]
BROWSERS: list[Profile] = [CHROME_WIN, EDGE_WIN, FIREFOX_MAC, SAFARI_IOS]
ANDROID_APP: Profile = [
    ("Host", HOST), ("User-Agent", "AcmeApp/5.2.1 (Android 14; Pixel 8) okhttp/4.12.0"),
    ("Accept", "application/json"), ("X-App-Version", "5.2.1"), ("Accept-Encoding", "gzip"),
    ("Connection", "Keep-Alive"),
]
IOS_APP: Profile = [
    ("Host", HOST), ("Accept", "application/json"), ("X-App-Version", "5.2.0"),
    ("User-Agent", "Acme/5.2.0 (com.acme.app; build:812; iOS 17.5.1) Alamofire/5.9.1"),
    ("Accept-Language", "en-US;q=1.0"), ("Accept-Encoding", "br;q=1.0, gzip;q=0.9, deflate;q=0.8"),
]
INTEGRATIONS: list[Profile] = [
    [("Host", HOST), ("User-Agent", "acme-erp-sync/2.3.1 (+https://partner.example/bot)"),
     ("Accept", "application/json"), ("Accept-Encoding", "gzip")],
    [("Host", HOST), ("Accept", "application/json"), ("User-Agent", "Java/17.0.11"), ("Connection", "keep-alive")],
    [("Host", HOST), ("Accept", "application/json, text/plain, */*"), ("User-Agent", "axios/1.7.2"),
     ("Accept-Encoding", "gzip, compress, deflate, br"), ("Connection", "close")],
]
TOOLS: list[Profile] = [
    [("Host", HOST), ("Accept", "*/*"), ("Accept-Encoding", "gzip, deflate"), ("Connection", "keep-alive"),
     ("User-Agent", "python-httpx/0.27.0")],
    [("Host", HOST), ("User-Agent", "Go-http-client/2.0"), ("Accept-Encoding", "gzip")],
    [("Host", HOST), ("User-Agent", "Python/3.11 aiohttp/3.9.5"), ("Accept", "*/*"),
     ("Accept-Encoding", "gzip, deflate")],
    [("Host", HOST), ("User-Agent", "curl/8.7.1"), ("Accept", "*/*")],
]
# User-Agent strings a rotating tool draws from (a fake-useragent style list: several families)
UA_POOL = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/12{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/12{v}.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:12{v}.0) Gecko/20100101 Firefox/12{v}.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:12{v}.0) Gecko/20100101 Firefox/12{v}.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_{v}) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{v} "
    "Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/12{v}.0.0.0 "
    "Safari/537.36 Edg/12{v}.0.0.0",
]
PUBLIC_FIRST = [23, 24, 31, 37, 45, 46, 62, 66, 67, 68, 69, 71, 73, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87,
                88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 104, 107, 108, 109, 151, 173, 174, 176, 178, 185,
                188, 193, 194, 212, 213, 217]


# --- the API -----------------------------------------------------------------------------------------


@dataclass
class Account:
    uid: int
    email: str
    phone: str
    password: str
    uuid: str
    invoices: list[int] = field(default_factory=list)
    orders: list[int] = field(default_factory=list)


@dataclass
class Answer:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


FIRST = ["anna", "ben", "carla", "dev", "elif", "femi", "gus", "hana", "ivan", "jo", "kim", "lea", "mo", "nia",
         "omar", "pia", "raj", "sara", "tom", "uma", "vic", "wen", "xu", "yara", "zoe"]
LAST = ["smith", "garcia", "muller", "rossi", "kowalski", "nguyen", "okafor", "silva", "tanaka", "dubois", "khan",
        "jones", "larsen", "novak", "ivanova", "cohen"]
DOMAINS = ["gmail.test", "outlook.test", "yahoo.test", "proton.test", "corp.test", "web.test"]


class Acme:
    """A SaaS billing API, answered in process."""

    def __init__(self, rng: random.Random, n_accounts: int = 3000) -> None:
        self.rng = rng
        self.accounts: list[Account] = []
        self.by_email: dict[str, Account] = {}
        self.by_phone: dict[str, Account] = {}
        self.by_uuid: dict[str, Account] = {}
        for uid in range(1, n_accounts + 1):
            email = f"{rng.choice(FIRST)}.{rng.choice(LAST)}{uid}@{rng.choice(DOMAINS)}"
            phone = f"+1{rng.randint(201, 989)}{rng.randint(2000000, 9999999)}"
            a = Account(uid, email, phone, f"Pw!{rng.getrandbits(40):x}", str(uuid.UUID(int=rng.getrandbits(128),
                                                                                         version=4)))
            self.accounts.append(a)
            self.by_email[email] = a
            self.by_phone[phone] = a
            self.by_uuid[a.uuid] = a
        self.invoices: dict[int, Account] = {}
        for iid in range(1, 30001):
            owner = rng.choice(self.accounts)
            self.invoices[iid] = owner
            owner.invoices.append(iid)
        self.orders: dict[int, Account] = {}
        for oid in range(100_000, 160_000, 3):  # ids with gaps: not every neighbour exists
            owner = rng.choice(self.accounts)
            self.orders[oid] = owner
            owner.orders.append(oid)
        self.tokens: dict[str, tuple[Account, float]] = {}  # bearer -> (account, expires)
        self.refresh: dict[str, Account] = {}
        self.sessions: dict[str, Account | None] = {}  # Rails cookie -> account (None: anonymous)
        self.api_keys: dict[str, str] = {}  # key -> plan ("erp", "crm", "dev")

    # tokens ------------------------------------------------------------------------------------------

    def jwt(self, a: Account, now: float, ttl: float = 3600.0) -> str:
        head = _b64(b'{"alg":"RS256","typ":"JWT","kid":"k1"}')
        body = _b64(orjson.dumps({"sub": str(a.uid), "iat": int(now), "exp": int(now + ttl), "scope": "user"}))
        tok = f"{head}.{body}.{_b64(self.rng.randbytes(64))}"
        self.tokens[tok] = (a, now + ttl)
        return tok

    def opaque(self, a: Account, now: float, ttl: float = 3600.0) -> tuple[str, str]:
        tok = f"at_{self.rng.getrandbits(128):032x}"
        ref = f"rt_{self.rng.getrandbits(128):032x}"
        self.tokens[tok] = (a, now + ttl)
        self.refresh[ref] = a
        return tok, ref

    def new_key(self, plan: str) -> str:
        key = f"ak_live_{self.rng.getrandbits(96):024x}"
        self.api_keys[key] = plan
        return key

    def _who(self, headers: Headers, now: float) -> tuple[Account | None, bool]:
        """(account, expired token)."""
        auth = headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            hit = self.tokens.get(auth[7:].strip())
            if hit is None:
                return None, False
            if hit[1] < now:
                return None, True
            return hit[0], False
        for line in headers.get_all("cookie"):
            for part in line.split(";"):
                k, _, v = part.strip().partition("=")
                if k == "_acme_session":
                    return self.sessions.get(v), False
        return None, False

    # routes ------------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, headers: Headers, body: bytes, now: float) -> Answer:
        q = dict(parse_qsl(query))
        me, expired = self._who(headers, now)
        j = orjson.dumps
        if method == "GET" and path in ("/", "/login", "/dashboard", "/billing", "/settings", "/favicon.ico",
                                        "/assets/app-3f9a1c.js", "/assets/app-3f9a1c.css", "/robots.txt"):
            return Answer(200, b"<!doctype html><html>" + b"x" * 300)
        if path == "/users/sign_in" and method == "GET":
            sid = f"{self.rng.getrandbits(96):024x}"
            self.sessions[sid] = None
            return Answer(200, b'<form><input name="authenticity_token" value="t"></form>',
                          [("Set-Cookie", f"_acme_session={sid}; path=/; HttpOnly; SameSite=Lax")])
        if path == "/users/sign_in" and method == "POST":
            form = {k.rsplit("[", 1)[-1].rstrip("]"): v for k, v in parse_qsl(body.decode())}
            a = self.by_email.get(form.get("email", ""))
            if a is not None and a.password == form.get("password"):
                sid = f"{self.rng.getrandbits(96):024x}"
                self.sessions[sid] = a
                return Answer(302, b"", [("Location", f"https://{HOST}/dashboard"),
                                         ("Set-Cookie", f"_acme_session={sid}; path=/; HttpOnly; SameSite=Lax")])
            return Answer(302, b"", [("Location", f"https://{HOST}/users/sign_in?error=1")])
        if path == "/v2/auth/token" and method == "POST":
            try:
                data = orjson.loads(body)
                a = self.by_email.get(str(data["email"]).lower())
                pw = str(data["password"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return Answer(400, b'{"error":"malformed_request"}')
            if a is not None and a.password == pw:
                return Answer(200, j({"access_token": self.jwt(a, now), "token_type": "Bearer", "expires_in": 3600}))
            return Answer(401, b'{"error":"unauthorized","message":"Email or password is incorrect"}')
        if path == "/oauth/token" and method == "POST":
            form = dict(parse_qsl(body.decode()))
            if form.get("grant_type") == "refresh_token":
                a = self.refresh.get(form.get("refresh_token", ""))
                if a is None:
                    return Answer(400, b'{"error":"invalid_grant","error_description":"refresh token expired"}')
            else:
                a = self.by_email.get(form.get("username", ""))
                if a is None or a.password != form.get("password"):
                    return Answer(400, b'{"error":"invalid_grant","error_description":"The provided authorization '
                                       b'grant is invalid, expired or revoked"}')
            tok, ref = self.opaque(a, now)
            return Answer(200, j({"access_token": tok, "refresh_token": ref, "token_type": "bearer",
                                  "expires_in": 3600}))
        if path == "/graphql" and method == "POST":
            try:
                data = orjson.loads(body)
                v = data.get("variables") or {}
            except (orjson.JSONDecodeError, AttributeError):
                return Answer(400, b'{"errors":[{"message":"bad request"}]}')
            if "mutation Login" in str(data.get("query", "")):
                a = self.by_email.get(str(v.get("email", "")).lower())
                if a is not None and a.password == v.get("password"):
                    return Answer(200, j({"data": {"login": {"token": self.jwt(a, now), "user": {"id": a.uid}}}}))
                return Answer(200, b'{"errors":[{"message":"Invalid email or password","path":["login"],'
                                   b'"extensions":{"code":"UNAUTHENTICATED"}}],"data":{"login":null}}')
            return Answer(200, b'{"data":{"viewer":{"plan":"pro"}}}' if me else b'{"data":{"viewer":null}}')
        if path == "/api/v1/config":
            return Answer(200, b'{"features":["billing","export"],"version":"2024.6"}')
        if path == "/api/v1/products":
            page = int(q.get("page", "1")) if q.get("page", "1").isdigit() else 1
            per = min(100, int(q.get("per_page", "24")) if q.get("per_page", "24").isdigit() else 24)
            if page * per > 12_000:
                return Answer(200, b'{"items":[],"next":null}')
            return Answer(200, b'{"items":[' + b'{"id":1,"name":"plan"},' * min(per, 30) + b'],"next":2}')
        if path.startswith("/api/v1/products/"):
            pid = path.rsplit("/", 1)[1]
            if pid.isdigit() and 1 <= int(pid) <= 12_000:
                return Answer(200, b'{"id":%s,"name":"widget","price":19}' % pid.encode())
            return Answer(404, b'{"error":"not_found"}')
        if path == "/api/users/lookup":  # "find friends by phone": public, answers null for strangers
            a = self.by_phone.get(q.get("phone", ""))
            return Answer(200, j({"user": {"id": a.uid, "handle": a.email.split("@")[0]}} if a else {"user": None}))
        if path == "/api/password/forgot" and method == "POST":
            try:
                email = str(orjson.loads(body).get("email", "")).lower()
            except (orjson.JSONDecodeError, AttributeError):
                return Answer(400, b'{"error":"malformed_request"}')
            if email in self.by_email:
                return Answer(200, b'{"message":"Password reset instructions sent"}')
            return Answer(404, b'{"message":"We could not find an account with that email address"}')
        key = headers.get("x-api-key")
        if path == "/api/v1/orders" and method == "GET":
            if key in self.api_keys or me:
                return Answer(200, b'{"orders":[{"id":1}],"cursor":"abc"}')
            return Answer(401, b'{"error":"unauthorized"}')
        if path.startswith("/api/v1/customers/search"):
            if not (me or key in self.api_keys):
                return Answer(401, b'{"error":"token_expired"}' if expired else b'{"error":"unauthorized"}')
            term = q.get("q", "").lower()
            if len(term) < 2:
                return Answer(422, b'{"error":"query too short"}')
            hit = self.rng.random() < (0.7 if "@" not in term else (0.8 if term in self.by_email else 0.0))
            return Answer(200, b'{"results":[{"id":12,"name":"A. Customer"}],"total":1}' if hit
                          else b'{"results":[],"total":0}')
        if path == "/api/v1/notifications":
            if not me:
                return Answer(401, b'{"error":"token_expired"}' if expired else b'{"error":"unauthorized"}')
            return Answer(200, b'{"items":[],"unread":0}')
        if path == "/api/v1/me":
            if not me:
                return Answer(401, b'{"error":"token_expired"}' if expired else b'{"error":"unauthorized"}')
            return Answer(200, j({"id": me.uid, "email": me.email}))
        if path.startswith("/api/accounts/"):
            aid = path.split("/")[3]
            if not me:
                return Answer(401, b'{"error":"token_expired"}' if expired else b'{"error":"unauthorized"}')
            other = self.by_uuid.get(aid)
            if other is None:
                return Answer(404, b'{"error":"not_found"}')
            if other is not me:
                return Answer(403, b'{"error":"forbidden"}')
            return Answer(200, j({"id": aid, "email": me.email, "plan": "pro"}))
        if path.startswith("/api/invoices/") and path.endswith("/pdf"):
            iid = path.split("/")[3]
            if not me:
                return Answer(401, b'{"error":"token_expired"}' if expired else b'{"error":"unauthorized"}')
            if not iid.isdigit() or int(iid) not in self.invoices:
                return Answer(404, b'{"error":"not_found"}')
            # the vulnerability: any signed-in user gets any invoice (no owner check)
            return Answer(200, b"%PDF-1.4\n" + b"x" * 400, [("Content-Type", "application/pdf")])
        if path.startswith("/api/v1/orders/"):
            oid = path.rsplit("/", 1)[1]
            if not me:
                return Answer(401, b'{"error":"token_expired"}' if expired else b'{"error":"unauthorized"}')
            if not oid.isdigit() or int(oid) not in self.orders:
                return Answer(404, b'{"error":"not_found"}')
            if self.orders[int(oid)] is not me:
                return Answer(403, b'{"error":"forbidden"}')
            return Answer(200, b'{"id":%s,"total":"42.00"}' % oid.encode())
        if path.startswith(("/admin", "/wp-admin", "/.git", "/server-status")):
            return Answer(403, b"Forbidden")
        return Answer(404, b'{"error":"not_found"}')


# --- clients -----------------------------------------------------------------------------------------


@dataclass
class Req:
    method: str
    target: str
    body: bytes = b""
    ctype: str = ""
    ip: str | None = None  # this request's address (rotating clients)
    profile: Profile | None = None  # this request's headers (rotating User-Agents)
    auth: bool = True  # send the actor's bearer token / API key


def form(**kw: str) -> tuple[bytes, str]:
    return urlencode(kw).encode(), "application/x-www-form-urlencoded"


@dataclass
class Actor:
    name: str
    kind: str  # the attack scenario, or "benign:<habit>"
    ip: str
    profile: Profile
    script: Iterator[tuple[float, Req]] = field(default_factory=lambda: iter(()))
    cookies: dict[str, str] = field(default_factory=dict)
    bearer: str = ""
    refresh: str = ""
    api_key: str = ""
    sent: int = 0
    refused: int = 0
    passed_before_block: int | None = None
    throttled: int = 0
    blocked: int = 0
    why: str = ""  # findings of the first throttle or block
    rules: Counter[str] = field(default_factory=Counter)  # every finding on its requests

    @property
    def benign(self) -> bool:
        return self.kind.startswith("benign:")


class Net:
    """Addresses: home broadband (one random /24 each), datacenter proxy pools (a few /24s), mobile
    carrier NAT pools, and residential proxies (anywhere)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def home(self) -> str:
        r = self.rng
        while True:
            ip = f"{r.choice(PUBLIC_FIRST)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(2, 254)}"
            if ip not in self.used:
                self.used.add(ip)
                return ip

    def pool(self, nets: int, size: int) -> list[str]:
        bases = [self.home().rpartition(".")[0] for _ in range(nets)]
        return [f"{self.rng.choice(bases)}.{self.rng.randint(2, 254)}" for _ in range(size)]


def _gap(r: random.Random, median: float, sigma: float = 0.8) -> float:
    """A jittered inter-request time (log-normal around `median`)."""
    return median * math.exp(r.gauss(0.0, sigma))


class Population:
    def __init__(self, api: Acme, rng: random.Random, start: float, duration: float) -> None:
        self.api = api
        self.rng = rng
        self.start = start
        self.duration = duration
        self.net = Net(rng)
        self.office_ip = self.net.home()
        self.carrier = self.net.pool(3, 40)  # a mobile carrier's NAT pool: many phones per address
        self.leak = [f"{r}{n}@{d}" for n, (r, d) in enumerate(
            (rng.choice(FIRST) + "." + rng.choice(LAST), rng.choice(DOMAINS)) for _ in range(40_000))]

    def t0(self, early: float = 0.05, late: float = 0.8) -> float:
        return self.start + self.rng.uniform(early, late) * self.duration

    def account(self) -> Account:
        return self.rng.choice(self.api.accounts)

    def combos(self, n: int, hit: float) -> list[tuple[str, str]]:
        """Leaked email/password pairs: a few are real accounts with their password."""
        out = []
        for _ in range(n):
            if self.rng.random() < hit:
                a = self.account()
                out.append((a.email, a.password))
            else:
                out.append((self.rng.choice(self.leak), self.rng.choice(["123456", "Summer2024!", "qwerty123",
                                                                        "P@ssw0rd", "iloveyou1"])))
        return out

    def tool(self) -> Profile:
        """An attack tool's headers, varied per attacker (languages, an extra header) so that unrelated
        attackers share a fingerprint only now and then, not by the generator's accident."""
        r = self.rng
        prof = list(r.choice(TOOLS))
        if r.random() < 0.7:
            prof.append(("Accept-Language", r.choice(["en-US,en;q=0.9", "en", "ru-RU,ru;q=0.9", "pt-BR", "zh-CN,zh;q=0.9",
                                                      "de", "fr-FR", "es-ES,es;q=0.8", "tr-TR", "vi-VN", "id-ID",
                                                      "en-GB,en;q=0.7"])))
        if r.random() < 0.4:
            prof.insert(r.randint(1, len(prof)), (r.choice(["DNT", "Upgrade-Insecure-Requests", "Sec-GPC"]), "1"))
        return prof

    def rotated_ua(self, base: Profile) -> Profile:
        ua = self.rng.choice(UA_POOL).format(v=self.rng.randint(0, 6))
        return [(k, ua if k == "User-Agent" else v) for k, v in base]

    # benign ----------------------------------------------------------------------------------------

    def _login_spa(self, a: Actor, acct: Account, t: float, typos: int) -> Iterator[tuple[float, Req]]:
        for _ in range(typos):
            t += _gap(self.rng, 6.0, 0.5)
            yield t, Req("POST", "/v2/auth/token", orjson.dumps({"email": acct.email, "password": acct.password[:-1]}),
                         "application/json", auth=False)
        t += _gap(self.rng, 5.0, 0.5)
        yield t, Req("POST", "/v2/auth/token", orjson.dumps({"email": acct.email, "password": acct.password}),
                     "application/json", auth=False)

    def _login_rails(self, a: Actor, acct: Account, t: float, typos: int) -> Iterator[tuple[float, Req]]:
        yield t, Req("GET", "/users/sign_in")
        for i in range(typos + 1):
            t += _gap(self.rng, 7.0, 0.5)
            pw = acct.password if i == typos else acct.password + "1"
            body, ct = form(**{"authenticity_token": "t", "user[email]": acct.email, "user[password]": pw,
                               "user[remember_me]": "0", "commit": "Log in"})
            yield t, Req("POST", "/users/sign_in", body, ct)
            t += 0.3
            yield t, Req("GET", "/dashboard" if i == typos else "/users/sign_in?error=1")

    def _typos(self) -> int:
        x = self.rng.random()
        return 0 if x < 0.78 else 1 if x < 0.9 else 2 if x < 0.96 else 3

    def _browse_account(self, acct: Account, t: float) -> Iterator[tuple[float, Req]]:
        r = self.rng
        yield t + 0.4, Req("GET", "/api/v1/me")
        yield t + 0.6, Req("GET", f"/api/accounts/{acct.uuid}")
        for _ in range(r.randint(1, 10)):
            t += _gap(r, 12.0)
            x = r.random()
            if x < 0.35 and acct.invoices:
                yield t, Req("GET", f"/api/invoices/{r.choice(acct.invoices)}/pdf")
            elif x < 0.6 and acct.orders:
                yield t, Req("GET", f"/api/v1/orders/{r.choice(acct.orders)}")
            elif x < 0.8:
                yield t, Req("GET", f"/api/v1/products?page={r.randint(1, 5)}&per_page=24")
            elif x < 0.97:
                yield t, Req("GET", f"/api/v1/products/{r.randint(1, 12_000)}")
            else:
                yield t, Req("GET", f"/api/v1/orders/{r.choice(acct.orders or [1]) + 1}")  # a stale bookmark

    def web_user(self, a: Actor, rails: bool, manager: bool = False) -> Iterator[tuple[float, Req]]:
        r = self.rng
        acct = self.account()
        t = self.t0(0.0, 0.95)
        for _visit in range(r.choice([1, 1, 1, 2, 2, 3])):
            yield t, Req("GET", "/")
            yield t + 0.1, Req("GET", "/assets/app-3f9a1c.js")
            yield t + 0.1, Req("GET", "/assets/app-3f9a1c.css")
            yield t + 0.3, Req("GET", "/api/v1/config")
            t += _gap(r, 3.0)
            if manager:
                # a password manager fills and submits at once; its saved password is sometimes stale
                stale = r.random() < 0.3
                if stale:
                    t += 0.4
                    yield t, Req("POST", "/v2/auth/token", orjson.dumps({"email": acct.email, "password": "old-" +
                                                                         acct.password}), "application/json",
                                 auth=False)
                    t += _gap(r, 20.0, 0.4)
                yield from self._login_spa(a, acct, t, 0)
                t += 6
            elif rails:
                yield from self._login_rails(a, acct, t, self._typos())
                t += 40
            else:
                yield t, Req("GET", "/login")
                yield from self._login_spa(a, acct, t, self._typos())
                t += 40
            yield from self._browse_account(acct, t)
            t += r.uniform(1800, 6 * 3600)

    def forgetful(self, a: Actor) -> Iterator[tuple[float, Req]]:
        """Fails to log in, asks for a reset (sometimes for a mistyped address first), logs in later."""
        r = self.rng
        acct = self.account()
        t = self.t0(0.0, 0.9)
        yield t, Req("GET", "/")
        yield t + 0.3, Req("GET", "/api/v1/config")
        t += 5
        for _ in range(r.randint(2, 4)):
            t += _gap(r, 8.0, 0.5)
            yield t, Req("POST", "/v2/auth/token", orjson.dumps({"email": acct.email, "password": "Guess" +
                                                                 str(r.randint(1, 99))}), "application/json")
        if r.random() < 0.4:
            t += 15
            yield t, Req("POST", "/api/password/forgot", orjson.dumps({"email": acct.email.replace(".", "", 1)}),
                         "application/json")
        t += 15
        yield t, Req("POST", "/api/password/forgot", orjson.dumps({"email": acct.email}), "application/json")
        t += r.uniform(120, 900)
        yield t, Req("GET", "/login")
        yield from self._login_spa(a, acct, t, 0)
        yield from self._browse_account(acct, t + 5)

    def graphql_user(self, a: Actor) -> Iterator[tuple[float, Req]]:
        r = self.rng
        acct = self.account()
        t = self.t0(0.0, 0.95)
        yield t, Req("GET", "/")
        yield t + 0.2, Req("POST", "/graphql", b'{"query":"{ viewer { plan } }"}', "application/json")
        for i in range(self._typos() + 1):
            t += _gap(r, 7.0, 0.5)
            pw = acct.password if i else acct.password + "x"
            if i == 0 and r.random() < 0.8:
                pw = acct.password
            body = orjson.dumps({"operationName": "Login", "query": "mutation Login($email: String!, $password: "
                                 "String!) { login(email: $email, password: $password) { token user { id } } }",
                                 "variables": {"email": acct.email, "password": pw}})
            yield t, Req("POST", "/graphql", body, "application/json", auth=False)
            if pw == acct.password:
                break
        yield from self._browse_account(acct, t + 2)

    def mobile(self, a: Actor) -> Iterator[tuple[float, Req]]:
        """Cold start: a password grant (no page before it), then polling every 30 s; the phone hops
        between the carrier's NAT pool and home Wi-Fi; the token is refreshed hourly."""
        r = self.rng
        acct = self.account()
        wifi = self.net.home()
        t = self.t0(0.0, 0.9)
        for _session in range(r.randint(1, 3)):
            a.ip = r.choice(self.carrier)
            if a.refresh:  # the app starts with its refresh token
                body, ct = form(grant_type="refresh_token", refresh_token=a.refresh, client_id="acme-ios")
            else:
                body, ct = form(grant_type="password", username=acct.email, password=acct.password,
                                client_id="acme-ios")
            yield t, Req("POST", "/oauth/token", body, ct, auth=False)
            yield t + 0.5, Req("GET", "/api/v1/me")
            end = t + r.uniform(600, 3 * 3600)
            last_refresh = t
            while t < end:
                t += r.uniform(28, 32)
                if r.random() < 0.01:  # leaving/entering Wi-Fi: a new address, same token
                    a.ip = wifi if a.ip != wifi else r.choice(self.carrier)
                if t - last_refresh > 3500 and a.refresh:
                    last_refresh = t
                    body, ct = form(grant_type="refresh_token", refresh_token=a.refresh, client_id="acme-ios")
                    yield t, Req("POST", "/oauth/token", body, ct, auth=False)
                yield t, Req("GET", "/api/v1/notifications")
                if r.random() < 0.03 and acct.orders:
                    yield t + 1, Req("GET", f"/api/v1/orders/{r.choice(acct.orders)}")
            t += r.uniform(3600, 5 * 3600)

    def expired(self, a: Actor) -> Iterator[tuple[float, Req]]:
        """An app reopened after days: its token and refresh token are dead; a few 401s, a refused
        refresh (invalid_grant), then a password login."""
        r = self.rng
        acct = self.account()
        t = self.t0(0.0, 0.9)
        a.bearer, _ = self.api.opaque(acct, self.start - 86400)
        a.refresh = "rt_stale"
        for p in ("/api/v1/me", "/api/v1/notifications", f"/api/accounts/{acct.uuid}",
                  f"/api/v1/orders/{acct.orders[0] if acct.orders else 100_000}")[: r.randint(2, 4)]:
            t += r.uniform(0.1, 1.5)
            yield t, Req("GET", p)
        body, ct = form(grant_type="refresh_token", refresh_token="rt_stale", client_id="acme-android")
        t += 0.5
        yield t, Req("POST", "/oauth/token", body, ct, auth=False)
        t += r.uniform(5, 30)
        body, ct = form(grant_type="password", username=acct.email, password=acct.password, client_id="acme-android")
        yield t, Req("POST", "/oauth/token", body, ct, auth=False)
        for _ in range(r.randint(5, 40)):
            t += r.uniform(28, 32)
            yield t, Req("GET", "/api/v1/notifications")

    def support_agent(self, a: Actor) -> Iterator[tuple[float, Req]]:
        """Search-heavy: dozens of customer searches in a shift, names and sometimes full emails/phones."""
        r = self.rng
        acct = self.account()
        t = self.t0(0.0, 0.7)
        yield t, Req("GET", "/")
        yield from self._login_rails(a, acct, t + 2, self._typos())
        t += 30
        for _ in range(r.randint(40, 150)):
            t += _gap(r, 15.0, 1.0)
            x = r.random()
            if x < 0.6:
                term = r.choice(FIRST + LAST)[: r.randint(2, 6)]
            elif x < 0.85:
                term = r.choice(self.api.accounts).email if r.random() < 0.8 else r.choice(self.leak)
            else:
                term = r.choice(self.api.accounts).phone
            yield t, Req("GET", f"/api/v1/customers/search?q={quote(term)}")

    def qa_script(self, a: Actor) -> Iterator[tuple[float, Req]]:
        """A CI smoke test every 30 min: health checks, some on a staging path that 404s here."""
        t = self.start + self.rng.uniform(0, 1800)
        while t < self.start + self.duration:
            for p in ("/api/v1/config", "/staging/api/health", "/staging/api/v2/ping", "/api/v1/products?page=1",
                      "/staging/login", "/api/v1/healthz"):
                t += self.rng.uniform(0.05, 0.4)
                yield t, Req("GET", p)
            t += 1800

    def integration(self, a: Actor, crm: bool) -> Iterator[tuple[float, Req]]:
        """A partner with one API key: about 10k calls a day to one endpoint. The ERP sync pages
        orders; the CRM checks whether its contacts have an Acme account (most do)."""
        r = self.rng
        a.api_key = self.api.new_key("crm" if crm else "erp")
        t = self.start + r.uniform(0, 600)
        per_day = 10_000
        while t < self.start + self.duration:
            t += r.expovariate(per_day / 86400.0)
            if crm:
                phone = r.choice(self.api.accounts).phone if r.random() < 0.85 else \
                    f"+1{r.randint(201, 989)}{r.randint(2000000, 9999999)}"
                yield t, Req("GET", f"/api/users/lookup?phone={quote(phone)}")
            else:
                yield t, Req("GET", f"/api/v1/orders?updated_since={int(t) - 900}&limit=100")

    # attackers -------------------------------------------------------------------------------------

    def _login_req(self, route: str, email: str, pw: str, ip: str | None = None,
                   profile: Profile | None = None) -> Req:
        if route == "oauth":
            body, ct = form(grant_type="password", username=email, password=pw, client_id="acme-android")
            return Req("POST", "/oauth/token", body, ct, ip=ip, profile=profile, auth=False)
        if route == "rails":
            body, ct = form(**{"authenticity_token": "t", "user[email]": email, "user[password]": pw,
                               "commit": "Log in"})
            return Req("POST", "/users/sign_in", body, ct, ip=ip, profile=profile, auth=False)
        if route == "graphql":
            body = orjson.dumps({"query": "mutation Login($email: String!, $password: String!) { login(email: $email, "
                                 "password: $password) { token } }", "variables": {"email": email, "password": pw}})
            return Req("POST", "/graphql", body, "application/json", ip=ip, profile=profile, auth=False)
        return Req("POST", "/v2/auth/token", orjson.dumps({"email": email, "password": pw}), "application/json",
                   ip=ip, profile=profile, auth=False)

    def stuffing_jitter(self, a: Actor) -> Iterator[tuple[float, Req]]:
        t = self.t0()
        for email, pw in self.combos(150, 0.02):
            t += _gap(self.rng, 2.0)
            yield t, self._login_req("json", email, pw)

    def stuffing_rotating_ip(self, a: Actor) -> Iterator[tuple[float, Req]]:
        t = self.t0()
        pool = self.net.pool(4, 250)
        for n, (email, pw) in enumerate(self.combos(200, 0.02)):
            t += self.rng.uniform(0.2, 1.5)
            yield t, self._login_req("oauth", email, pw, ip=pool[n % len(pool)])

    def stuffing_residential(self, a: Actor) -> Iterator[tuple[float, Req]]:
        """Residential proxies with real browser headers: each address fetches the sign-in page and
        tries 1-3 combos; a new browser profile per address."""
        r = self.rng
        t = self.t0()
        combos = self.combos(200, 0.02)
        while combos:
            ip = self.net.home()
            prof = list(r.choice(BROWSERS))
            a.cookies.clear()
            t += _gap(r, 4.0)
            yield t, Req("GET", "/users/sign_in", ip=ip, profile=prof)
            for _ in range(r.randint(1, 3)):
                if not combos:
                    break
                email, pw = combos.pop()
                t += _gap(r, 2.0, 0.5)
                yield t, self._login_req("rails", email, pw, ip=ip, profile=prof)

    def distributed_stuffing(self, a: Actor) -> Iterator[tuple[float, Req]]:
        """One campaign over 100-250 bot addresses, 1-2 tries each, over 20-60 minutes."""
        r = self.rng
        t = self.t0()
        bots = [self.net.home() for _ in range(r.randint(100, 250))]
        uas = [self.rotated_ua(self.tool()) for _ in range(3)]
        combos = self.combos(int(len(bots) * 1.5), 0.01)
        span = r.uniform(1200, 3600)
        times = sorted(t + r.uniform(0, span) for _ in combos)
        for n, ((email, pw), tt) in enumerate(zip(combos, times, strict=True)):
            ip = bots[n % len(bots)] if n < len(bots) else bots[r.randrange(len(bots))]
            yield tt, self._login_req("json", email, pw, ip=ip, profile=uas[n % 3])

    def stuffing_graphql(self, a: Actor) -> Iterator[tuple[float, Req]]:
        r = self.rng
        t = self.t0()
        combos = self.combos(200, 0.02)
        while combos:
            for _ in range(20):
                if not combos:
                    break
                email, pw = combos.pop()
                t += r.uniform(0.2, 0.8)
                yield t, self._login_req("graphql", email, pw)
            t += r.uniform(120, 300)

    def brute_force_bursty(self, a: Actor) -> Iterator[tuple[float, Req]]:
        """One account, bursts of 5-10 guesses, 5-15 minute pauses, a new User-Agent per burst; the
        Rails session cookie from the sign-in page is kept throughout."""
        r = self.rng
        victim = self.account()
        t = self.t0()
        yield t, Req("GET", "/users/sign_in")
        for n in range(12):
            prof = self.rotated_ua(a.profile)
            for k in range(r.randint(5, 10)):
                t += r.uniform(0.5, 3)
                yield t, self._login_req("rails", victim.email, f"{victim.email.split('.')[0]}{n}{k}!", profile=prof)
            t += r.uniform(300, 900)

    def brute_force_slow(self, a: Actor) -> Iterator[tuple[float, Req]]:
        r = self.rng
        victim = self.account()
        t = self.t0(0.0, 0.2)
        n = 0
        while t < self.start + self.duration:
            t += r.uniform(60, 300)
            n += 1
            yield t, self._login_req("json", victim.email, f"Spring{n}!")

    def password_spray_slow(self, a: Actor) -> Iterator[tuple[float, Req]]:
        """Low and slow: one try per 1-5 minutes for hours, each from a new residential address,
        one tool's headers throughout, many accounts with one common password."""
        r = self.rng
        t = self.t0(0.0, 0.2)
        while t < self.start + self.duration:
            t += r.uniform(60, 300)
            yield t, self._login_req("json", self.account().email, "Winter2024!", ip=self.net.home())

    def token_replay(self, a: Actor) -> Iterator[tuple[float, Req]]:
        """A stolen mobile token used through residential proxies: a new address and User-Agent per
        request; the token is the only constant."""
        r = self.rng
        victim = self.account()
        a.bearer, _ = self.api.opaque(victim, self.start + self.duration, ttl=self.duration)
        a.profile = list(ANDROID_APP)
        t = self.t0()
        paths = ["/api/v1/me", f"/api/accounts/{victim.uuid}", "/api/v1/notifications"] + \
            [f"/api/v1/orders/{o}" for o in victim.orders] + [f"/api/invoices/{i}/pdf" for i in victim.invoices]
        for _ in range(60):
            t += _gap(r, 8.0)
            yield t, Req("GET", r.choice(paths), ip=self.net.home(), profile=self.rotated_ua(list(CHROME_WIN)))

    def ato_success(self, a: Actor) -> Iterator[tuple[float, Req]]:
        """A targeted takeover: a handful of guesses at one account, then the right password (from a
        phishing list), then the account's data and the export."""
        r = self.rng
        victim = self.account()
        t = self.t0()
        yield t, Req("GET", "/login")
        for k in range(r.randint(5, 7)):
            t += _gap(r, 4.0, 0.4)
            yield t, self._login_req("json", victim.email, f"{victim.email[:4]}{k}2024")
        t += _gap(r, 4.0, 0.4)
        yield t, Req("POST", "/v2/auth/token", orjson.dumps({"email": victim.email, "password": victim.password}),
                     "application/json", auth=False)
        for p in ["/api/v1/me", f"/api/accounts/{victim.uuid}"] + [f"/api/invoices/{i}/pdf" for i in victim.invoices]:
            t += r.uniform(0.5, 3)
            yield t, Req("GET", p)

    def _phones(self, n: int, hit: float) -> list[str]:
        """Phone numbers an enumerator tries: a carrier block walked in order, real ones mixed in."""
        r = self.rng
        base = r.randint(201, 989) * 10_000_000 + r.randint(2_000_000, 9_000_000)
        return [r.choice(self.api.accounts).phone if r.random() < hit else f"+1{base + i}" for i in range(n)]

    def enum_phone(self, a: Actor) -> Iterator[tuple[float, Req]]:
        a.api_key = self.api.new_key("dev")
        t = self.t0()
        for phone in self._phones(300, 0.08):
            t += self.rng.uniform(0.3, 2)
            yield t, Req("GET", f"/api/users/lookup?phone={quote(phone)}")

    def enum_phone_rotating(self, a: Actor) -> Iterator[tuple[float, Req]]:
        a.api_key = self.api.new_key("dev")
        t = self.t0()
        for phone in self._phones(300, 0.08):
            t += self.rng.uniform(0.3, 2)
            yield t, Req("GET", f"/api/users/lookup?phone={quote(phone)}", ip=self.net.home(),
                         profile=self.rotated_ua(a.profile))

    def enum_forgot(self, a: Actor) -> Iterator[tuple[float, Req]]:
        """Which emails have an account: the forgot-password answer (404 or 200), through residential
        proxies (1-3 tries per address) with real browser headers."""
        r = self.rng
        t = self.t0()
        emails = [e for e, _ in self.combos(250, 0.15)]
        while emails:
            ip, prof = self.net.home(), list(r.choice(BROWSERS))
            for _ in range(r.randint(1, 3)):
                if not emails:
                    break
                t += _gap(r, 3.0)
                yield t, Req("POST", "/api/password/forgot", orjson.dumps({"email": emails.pop()}), "application/json",
                             ip=ip, profile=prof)

    def _sign_in(self, a: Actor, acct: Account, t: float) -> Iterator[tuple[float, Req]]:
        yield t, Req("GET", "/login")
        yield t + 3, Req("POST", "/v2/auth/token", orjson.dumps({"email": acct.email, "password": acct.password}),
                         "application/json", auth=False)

    def enum_uuid(self, a: Actor) -> Iterator[tuple[float, Req]]:
        """A signed-in user probing account UUIDs (random ones, and some leaked real ones)."""
        r = self.rng
        t = self.t0()
        yield from self._sign_in(a, self.account(), t)
        t += 5
        for _ in range(200):
            t += _gap(r, 1.5)
            u = r.choice(self.api.accounts).uuid if r.random() < 0.2 else str(uuid.UUID(int=r.getrandbits(128),
                                                                                       version=4))
            yield t, Req("GET", f"/api/accounts/{u}")

    def bola_near_own(self, a: Actor) -> Iterator[tuple[float, Req]]:
        """Orders near the attacker's own ids, in random order (not a walk); most are refused."""
        r = self.rng
        acct = self.account()
        while not acct.orders:
            acct = self.account()
        t = self.t0()
        yield t, Req("GET", "/users/sign_in")
        body, ct = form(**{"authenticity_token": "t", "user[email]": acct.email, "user[password]": acct.password})
        yield t + 4, Req("POST", "/users/sign_in", body, ct)
        t += 6
        own = acct.orders[0]
        ids = r.sample(range(own - 300, own + 300), 80)
        for oid in ids:
            t += _gap(r, 3.0)
            yield t, Req("GET", f"/api/v1/orders/{oid}")

    def bola_invoice_walk(self, a: Actor) -> Iterator[tuple[float, Req]]:
        """The invoice PDFs, walked id by id: the API serves them all (the BOLA is real)."""
        r = self.rng
        t = self.t0()
        yield from self._sign_in(a, self.account(), t)
        t += 5
        start = r.randint(1, 20_000)
        for n in range(400):
            t += r.uniform(0.5, 3)
            yield t, Req("GET", f"/api/invoices/{start + n}/pdf")

    def bola_slow(self, a: Actor) -> Iterator[tuple[float, Req]]:
        r = self.rng
        t = self.t0(0.0, 0.2)
        acct = self.account()
        yield from self._sign_in(a, acct, t)
        start = r.randint(1, 20_000)
        n = 0
        while t < self.start + self.duration:
            t += r.uniform(60, 300)
            n += 1
            if n % 15 == 0:  # the JWT lasts an hour: sign in again now and then
                yield from self._sign_in(a, acct, t)
                t += 4
            yield t, Req("GET", f"/api/invoices/{start + n}/pdf")

    def scraper_pagination(self, a: Actor) -> Iterator[tuple[float, Req]]:
        t = self.t0()
        for page in range(1, 301):
            t += _gap(self.rng, 1.5)
            yield t, Req("GET", f"/api/v1/products?page={page}&per_page=100")

    def scraper_rotating(self, a: Actor) -> Iterator[tuple[float, Req]]:
        r = self.rng
        t = self.t0()
        pool = self.net.pool(6, 120)
        ip = r.choice(pool)
        for page in range(1, 301):
            if r.random() < 0.3:
                ip = r.choice(pool)
            t += _gap(r, 1.5)
            yield t, Req("GET", f"/api/v1/products?page={page}&per_page=100", ip=ip)

    def search_harvest(self, a: Actor) -> Iterator[tuple[float, Req]]:
        """A trial account's API key dumping the customer directory, two letters at a time."""
        r = self.rng
        a.api_key = self.api.new_key("trial")
        t = self.t0()
        letters = "abcdefghijklmnopqrstuvwxyz"
        for x in letters:
            for y in letters:
                t += r.uniform(1, 4)
                yield t, Req("GET", f"/api/v1/customers/search?q={x}{y}&limit=100")

    def scanner_jittered(self, a: Actor) -> Iterator[tuple[float, Req]]:
        r = self.rng
        t = self.t0()
        words = [".env", ".git/HEAD", "wp-admin/", "admin/login", "api/swagger.json", "api/v1/debug/vars",
                 "actuator/health", "server-status", "backup.sql", ".aws/credentials", "config.yml", "phpinfo.php",
                 "api/v1/users", "graphql/console", "v1/admin", "_next/static/../../.env", ".DS_Store", "old/",
                 "test.php", "api/internal/metrics"]
        for n in range(200):
            t += _gap(r, 2.0)
            if r.random() < 0.1:
                yield t, Req("GET", r.choice(["/", "/login", "/api/v1/config"]))
            else:
                w = r.choice(words)
                yield t, Req("GET", f"/{w}" if n < len(words) else f"/{r.choice(['api', 'v2', 'app', 'static'])}/{w}")

    def scanner_slow(self, a: Actor) -> Iterator[tuple[float, Req]]:
        r = self.rng
        t = self.t0(0.0, 0.2)
        n = 0
        while t < self.start + self.duration:
            t += r.uniform(60, 300)
            n += 1
            yield t, Req("GET", f"/{r.choice(['backup', 'old', 'dev', 'tmp'])}{n}/{r.choice(['.env', 'db.sql'])}")


ATTACKS = ("stuffing_jitter", "stuffing_rotating_ip", "stuffing_residential", "distributed_stuffing",
           "stuffing_graphql", "brute_force_bursty", "brute_force_slow", "password_spray_slow", "token_replay",
           "ato_success", "enum_phone", "enum_phone_rotating", "enum_forgot", "enum_uuid", "bola_near_own",
           "bola_invoice_walk", "bola_slow", "scraper_pagination", "scraper_rotating", "search_harvest",
           "scanner_jittered", "scanner_slow")
# habit -> share of the benign population (office users and integrations are added on top)
HABITS = {"spa": 0.28, "rails": 0.16, "password_manager": 0.1, "graphql": 0.05, "mobile": 0.2, "expired_token": 0.06,
          "forgetful": 0.06, "support_agent": 0.04}


def build(pop: Population, benign: int, attackers: int, kinds: tuple[str, ...]) -> list[Actor]:
    r = pop.rng
    actors: list[Actor] = []
    habits = list(HABITS)
    weights = [HABITS[h] for h in habits]
    n_office = min(50, benign // 8)
    office_prof = list(CHROME_WIN)  # one managed browser build for the whole office
    for i in range(benign):
        if i < n_office:
            a = Actor(f"office-{i}", "benign:office_nat", pop.office_ip, office_prof)
            a.script = pop.web_user(a, rails=r.random() < 0.5)
            actors.append(a)
            continue
        habit = r.choices(habits, weights)[0]
        prof = list(r.choice(BROWSERS))
        a = Actor(f"{habit}-{i}", f"benign:{habit}", pop.net.home(), prof)
        if habit == "spa":
            a.script = pop.web_user(a, rails=False)
        elif habit == "rails":
            a.script = pop.web_user(a, rails=True)
        elif habit == "password_manager":
            a.script = pop.web_user(a, rails=False, manager=True)
        elif habit == "graphql":
            a.script = pop.graphql_user(a)
        elif habit == "mobile":
            a.profile = list(r.choice([ANDROID_APP, IOS_APP]))
            a.script = pop.mobile(a)
        elif habit == "expired_token":
            a.profile = list(r.choice([ANDROID_APP, IOS_APP]))
            a.script = pop.expired(a)
        elif habit == "forgetful":
            a.script = pop.forgetful(a)
        else:
            a.script = pop.support_agent(a)
        actors.append(a)
    for i, crm in enumerate((False, True)):
        a = Actor(f"integration-{i}", "benign:integration_" + ("crm" if crm else "erp"), pop.net.home(),
                  list(INTEGRATIONS[i]))
        a.script = pop.integration(a, crm)
        actors.append(a)
    ci = pop.net.home()
    for i in range(2):
        a = Actor(f"qa-{i}", "benign:qa_script", ci, list(TOOLS[3 - i]))
        a.script = pop.qa_script(a)
        actors.append(a)
    for kind in kinds:
        for i in range(attackers):
            a = Actor(f"{kind}-{i}", kind, pop.net.home(), pop.tool())
            a.script = getattr(pop, kind)(a)
            actors.append(a)
    return actors


# --- driving -----------------------------------------------------------------------------------------


TRACE: set[str] = set()  # actor names whose every request is printed (--trace)


async def drive(pipeline: Pipeline, api: Acme, actor: Actor, req: Req, now: float) -> Action:
    """One request through every phase, as the proxy drives it; returns the strongest action."""
    headers = Headers(list(req.profile or actor.profile))
    if req.auth and actor.bearer:
        headers.add("Authorization", f"Bearer {actor.bearer}")
    if req.auth and actor.api_key:
        headers.add("X-Api-Key", actor.api_key)
    if actor.cookies:
        headers.add("Cookie", "; ".join(f"{k}={v}" for k, v in actor.cookies.items()))
    if req.body:
        headers.add("Content-Type", req.ctype)
        headers.add("Content-Length", str(len(req.body)))
    ex = pipeline.new_exchange(Client(peer_ip=req.ip or actor.ip), req.method, req.target, headers)
    action, v = await request_phases(pipeline, ex, req.body)
    if v is not None and v.action >= Action.CHALLENGE:
        ex.response = Response(v.status, Headers([("Content-Type", "application/problem+json")]), from_bastion=True)
        pipeline.complete(ex)
        _note(actor, ex.findings, action, now, ex.client.ip, req, v.status)
        return action
    path, _, query = req.target.partition("?")
    ans = api.handle(req.method, path, query, headers, req.body, now)
    rh = Headers([("Content-Type", "application/json"), *ans.headers])
    for k, val in ans.headers:
        if k == "Set-Cookie":
            name, _, rest = val.partition("=")
            actor.cookies[name] = rest.split(";", 1)[0]
    if ans.status == 200 and ans.body[:1] == b"{" and req.method == "POST":
        try:
            data = orjson.loads(ans.body)
        except orjson.JSONDecodeError:
            data = {}
        tok = data.get("access_token") or ((data.get("data") or {}).get("login") or {}).get("token")
        if tok:
            actor.bearer = str(tok)
        if data.get("refresh_token"):
            actor.refresh = str(data["refresh_token"])
    ex.response = Response(ans.status, rh, body=ans.body, body_size=len(ans.body))
    v2 = await pipeline.response_headers(ex)
    if v2 is None:
        v2 = await pipeline.response_body(ex)
    if v2 is not None and v2.action > action:
        action = v2.action
    if ex.verdict is not None and ex.verdict.action > action:
        action = ex.verdict.action
    pipeline.complete(ex)
    _note(actor, ex.findings, action, now, ex.client.ip, req, ans.status)
    return action


def _note(actor: Actor, findings: list[Any], action: Action, now: float, ip: str, req: Req, status: int) -> None:
    if actor.name in TRACE:
        print(f"TRACE {actor.name} {now:.1f} {ip} {req.method} {req.target[:80]} -> {status} {action.name} "
              + ", ".join(f"{f.rule_id}[{f.evidence[:60]}]" for f in findings))
    for f in findings:
        actor.rules[f.rule_id] += 1
    if action >= Action.THROTTLE and not actor.why:
        actor.why = "; ".join(f"{f.rule_id}: {f.message} [{f.evidence}]" for f in findings)[:600]


@dataclass
class Result:
    seed: int
    rows: list[dict[str, Any]]
    benign_rows: list[dict[str, Any]]
    benign: int
    benign_blocked: int
    benign_throttled: int
    requests: int
    seconds: float
    actors: list[Actor] = field(default_factory=list, repr=False)

    def text(self) -> str:
        out = [f"seed {self.seed}",
               f"{'scenario':22} {'n':>3} {'recall':>7} {'median':>7} {'refused':>8}"]
        for r in self.rows:
            med = "-" if r["median"] is None else str(r["median"])
            out.append(f"{r['kind']:22} {r['n']:>3} {r['recall']:>7.0%} {med:>7} {r['refused']:>8.0%}")
        out.append(f"{'benign habit':22} {'n':>5} {'blocked':>8} {'throttled':>10}")
        for b in self.benign_rows:
            out.append(f"{b['habit']:22} {b['n']:>5} {b['blocked']:>8} {b['throttled']:>10}")
        out.append(f"benign users: {self.benign}, ever blocked {self.benign_blocked} "
                   f"({self.benign_blocked / max(self.benign, 1):.2%}), ever throttled or worse "
                   f"{self.benign_throttled} ({self.benign_throttled / max(self.benign, 1):.2%})")
        out.append(f"{self.requests} requests, {self.seconds:.1f} s wall")
        return "\n".join(out)

    def details(self) -> str:
        out = []
        for a in self.actors:
            rules = ", ".join(f"{k}={v}" for k, v in a.rules.most_common(8))
            if not a.benign and a.passed_before_block is None:
                out.append(f"MISSED {a.name}: sent {a.sent}, throttled {a.throttled}; findings: {rules}")
            elif not a.benign:
                out.append(f"CAUGHT {a.name} after {a.passed_before_block}: {a.why[:300]}; findings: {rules}")
            elif a.benign and (a.blocked or a.throttled):
                out.append(f"BENIGN HIT {a.name} ({a.kind}): blocked {a.blocked} throttled {a.throttled} of "
                           f"{a.sent}; first: {a.why}; findings: {rules}")
        return "\n".join(out)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


async def run(seed: int = 1, hours: float = 24.0, benign: int = 400, attackers: int = 5,
              kinds: tuple[str, ...] = ATTACKS, overrides: dict[str, Any] | None = None) -> Result:
    """`overrides`: config sections merged over the deployment's (experiments only; the report's
    figures are the defaults')."""
    rng = random.Random(seed)
    clock = ManualClock(1_718_000_000.0)
    with tempfile.TemporaryDirectory() as tmp:
        # what a deployment sets: where the API is and where Bastion keeps its files; all else default
        cfg = parse_config(_merge({"upstream": {"url": "http://127.0.0.1:9000"}, "data_dir": tmp}, overrides or {}))
        pipeline = build_pipeline(cfg, clock=clock)
        await pipeline.startup()
        # the API draws from its own generator: the traffic stays the same whatever the detectors do
        # (tokens issued, search hits), so two configurations see the same clients (paired runs)
        api = Acme(random.Random(seed * 7919 + 1))
        pop = Population(api, rng, clock.now(), hours * 3600.0)
        actors = build(pop, benign, attackers, kinds)
        heap: list[tuple[float, int, int, Req]] = []
        seq = 0
        for idx, a in enumerate(actors):
            nxt = next(a.script, None)
            if nxt is not None:
                heapq.heappush(heap, (nxt[0], seq, idx, nxt[1]))
                seq += 1
        wall = time.perf_counter()
        end = clock.now() + hours * 3600.0
        n = 0
        while heap:
            t, _, idx, req = heapq.heappop(heap)
            if t > end:
                continue  # past the simulated span: the client's script ends here
            if t > clock.now():
                clock.set(t)
            a = actors[idx]
            action = await drive(pipeline, api, a, req, clock.now())
            n += 1
            a.sent += 1
            if action >= Action.CHALLENGE:
                a.blocked += 1
                a.refused += 1
                if a.passed_before_block is None:
                    a.passed_before_block = a.sent - 1
            elif action == Action.THROTTLE:
                a.throttled += 1
            nxt = next(a.script, None)
            if nxt is not None:
                heapq.heappush(heap, (max(nxt[0], t), seq, idx, nxt[1]))
                seq += 1
        elapsed = time.perf_counter() - wall
        await pipeline.shutdown()
    rows = []
    for kind in kinds:
        group = [a for a in actors if a.kind == kind]
        got = [a.passed_before_block for a in group if a.passed_before_block is not None]
        rows.append({"kind": kind, "n": len(group), "recall": len(got) / max(len(group), 1),
                     "median": int(statistics.median(got)) if got else None,
                     "refused": sum(a.refused for a in group) / max(sum(a.sent for a in group), 1)})
    ben = [a for a in actors if a.benign]
    benign_rows = []
    for habit in sorted({a.kind for a in ben}):
        g = [a for a in ben if a.kind == habit]
        benign_rows.append({"habit": habit[7:], "n": len(g), "blocked": sum(1 for a in g if a.blocked),
                            "throttled": sum(1 for a in g if a.blocked or a.throttled)})
    return Result(seed=seed, rows=rows, benign_rows=benign_rows, benign=len(ben),
                  benign_blocked=sum(1 for a in ben if a.blocked),
                  benign_throttled=sum(1 for a in ben if a.blocked or a.throttled),
                  requests=n, seconds=elapsed, actors=actors)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--benign", type=int, default=400)
    ap.add_argument("--attackers", type=int, default=5, help="attackers (campaigns) of each kind")
    ap.add_argument("--kinds", default="", help="comma-separated attack kinds (default: all)")
    ap.add_argument("--verbose", "-v", action="store_true", help="list misses and benign users hit")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--config-json", default="", help="config overrides as JSON (experiments, not the defaults)")
    ap.add_argument("--trace", default="", help="comma-separated actor names whose requests are printed")
    args = ap.parse_args()
    logging.getLogger("bastion").setLevel(logging.ERROR)  # the alerts' surge notices are not the report
    TRACE.update(n for n in args.trace.split(",") if n)
    kinds = tuple(k for k in args.kinds.split(",") if k) or ATTACKS
    unknown = [k for k in kinds if k not in ATTACKS]
    if unknown:
        ap.error(f"unknown kinds {unknown}; choose from {list(ATTACKS)}")
    res = asyncio.run(run(seed=args.seed, hours=args.hours, benign=args.benign, attackers=args.attackers,
                          kinds=kinds, overrides=orjson.loads(args.config_json) if args.config_json else None))
    if args.json:
        print(orjson.dumps({"seed": res.seed, "rows": res.rows, "benign": res.benign_rows,
                            "benign_blocked": res.benign_blocked, "benign_throttled": res.benign_throttled,
                            "requests": res.requests}).decode())
    else:
        print(res.text())
        if args.verbose:
            print(res.details())
    return 0


if __name__ == "__main__":
    sys.exit(main())
