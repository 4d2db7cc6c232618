"""`bastion simulate`: generated benign users and attackers through the real engine, on a manual clock.

A small shop API (login, products, search, orders, a lookup by email, checkout) answers in
process; each client is a generator of timed requests; a heap interleaves them and a ManualClock
jumps from one request to the next, so a simulated day runs in seconds. Every request goes through
`pipeline.connection/request_headers/request_body`, the API (unless blocked), the response phases
and `pipeline.complete`, exactly as the proxy drives it.

Reported per scenario: attackers stopped (recall), requests each attacker got through before its
first block (median, p90), and benign users ever throttled or blocked.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from bastion.clock import ManualClock
from bastion.config import BastionConfig
from bastion.engine import build_pipeline
from bastion.engine.pipeline import Pipeline
from bastion.engine.registry import DETECTORS
from bastion.exchange import Client, Exchange, Headers, Response
from bastion.verdict import Action, Verdict

# --- client software profiles: header names in the order each one sends them ----------------------

BROWSERS: list[list[tuple[str, str]]] = [
    [("Host", "shop.test"), ("Connection", "keep-alive"), ("sec-ch-ua", '"Chromium";v="124"'),
     ("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                    "Chrome/124.0 Safari/537.36"),
     ("Accept", "application/json, text/plain, */*"), ("Sec-Fetch-Site", "same-origin"),
     ("Accept-Encoding", "gzip, deflate, br"), ("Accept-Language", "en-US,en;q=0.9")],
    [("Host", "shop.test"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"),
     ("Accept", "application/json, text/plain, */*"), ("Accept-Language", "en-US,en;q=0.5"),
     ("Accept-Encoding", "gzip, deflate, br"), ("Connection", "keep-alive")],
    [("Host", "shop.test"), ("Accept", "application/json"), ("Accept-Language", "fr-FR,fr;q=0.9"),
     ("Connection", "keep-alive"), ("Accept-Encoding", "gzip, deflate, br"),
     ("User-Agent", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                    "Version/17.4 Safari/605.1.15")],
    [("Host", "shop.test"), ("User-Agent", "okhttp/4.12.0"), ("Accept", "application/json"),
     ("Accept-Encoding", "gzip"), ("Connection", "Keep-Alive")],
]
TOOLS: list[list[tuple[str, str]]] = [
    [("Host", "shop.test"), ("User-Agent", "python-requests/2.31.0"), ("Accept-Encoding", "gzip, deflate"),
     ("Accept", "*/*"), ("Connection", "keep-alive")],
    [("Host", "shop.test"), ("User-Agent", "curl/8.5.0"), ("Accept", "*/*")],
    [("Host", "shop.test"), ("User-Agent", "Go-http-client/1.1"), ("Accept-Encoding", "gzip")],
    # a tool that copies a real browser's User-Agent, with its own header order
    [("Host", "shop.test"), ("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                                           "(KHTML, like Gecko) Chrome/124.0 Safari/537.36"),
     ("Accept", "*/*"), ("Connection", "close")],
]

# --- the API ---------------------------------------------------------------------------------------


@dataclass
class Shop:
    rng: random.Random
    n_users: int = 2000
    n_products: int = 300
    users: dict[str, str] = field(default_factory=dict)  # email -> password
    sessions: dict[str, str] = field(default_factory=dict)  # token -> email
    orders: dict[int, str] = field(default_factory=dict)  # order id -> owner email
    api_keys: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i in range(self.n_users):
            self.users[f"user{i}@mail.test"] = f"pw-{i}"
        emails = list(self.users)
        for oid in range(1, 6001):
            self.orders[oid] = self.rng.choice(emails)

    def handle(self, method: str, path: str, query: str, headers: Headers, body: bytes) -> tuple[int, bytes, str]:
        """(status, body, set-cookie token or '')."""
        me = self._who(headers)
        if path == "/api/login" and method == "POST":
            try:
                data = orjson.loads(body)
                email, pw = str(data["username"]), str(data["password"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return 400, b'{"error":"bad request"}', ""
            if self.users.get(email) == pw:
                tok = f"s{self.rng.getrandbits(64):x}"
                self.sessions[tok] = email
                return 200, b'{"ok":true}', tok
            return 401, b'{"error":"invalid credentials"}', ""
        if path in ("/", "/login", "/cart", "/static/app.js", "/static/app.css", "/favicon.ico"):
            return 200, b"<html>" + b"x" * 200, ""
        if path == "/api/products":
            return 200, b'{"items":[' + b'{"id":1},' * 20 + b"]}", ""
        if path.startswith("/api/products/"):
            pid = path.rsplit("/", 1)[1]
            if pid.isdigit() and 1 <= int(pid) <= self.n_products:
                return 200, b'{"id":%s,"name":"thing","price":12}' % pid.encode(), ""
            return 404, b'{"error":"not found"}', ""
        if path.startswith("/api/stores/"):
            sid = path.rsplit("/", 1)[1]
            if sid.isdigit() and 1 <= int(sid) <= 60:
                return 200, b'{"store":%s,"address":"1 Main St"}' % sid.encode(), ""
            return 404, b'{"error":"not found"}', ""
        if path == "/api/search":
            return 200, b'{"items":[{"id":3},{"id":7}]}', ""
        if path == "/api/users/lookup":
            email = query.partition("email=")[2].replace("%40", "@")
            if email in self.users:
                return 200, b'{"found":true,"name":"Someone"}', ""
            return 404, b'{"found":false}', ""
        if path.startswith("/api/orders/"):
            oid = path.rsplit("/", 1)[1]
            if not me:
                return 401, b'{"error":"login required"}', ""
            if not oid.isdigit() or int(oid) not in self.orders:
                return 404, b'{"error":"not found"}', ""
            if self.orders[int(oid)] != me:
                return 403, b'{"error":"forbidden"}', ""
            return 200, b'{"id":%s,"total":42}' % oid.encode(), ""
        if path == "/api/orders" and method == "GET":
            return (200, b'{"orders":[]}', "") if me else (401, b'{"error":"login required"}', "")
        if path == "/api/checkout" and method == "POST":
            return (201, b'{"order":1}', "") if me else (401, b'{"error":"login required"}', "")
        if path == "/api/profile":
            return (200, b'{"email":"hidden"}', "") if me else (401, b'{"error":"login required"}', "")
        return 404, b'{"error":"not found"}', ""

    def _who(self, headers: Headers) -> str:
        for line in headers.get_all("cookie"):
            for part in line.split(";"):
                k, _, v = part.strip().partition("=")
                if k == "session" and v in self.sessions:
                    return self.sessions[v]
        key = headers.get("x-api-key")
        if key and key in self.api_keys:
            return self.api_keys[key]
        return ""

    def own_orders(self, email: str) -> list[int]:
        return [o for o, e in self.orders.items() if e == email][:5]


# --- clients ---------------------------------------------------------------------------------------


@dataclass
class Req:
    method: str
    target: str
    body: bytes = b""
    ip: str | None = None  # override the client's address for this request (rotating attackers)


@dataclass
class Actor:
    name: str
    kind: str  # "benign" or the scenario name
    ip: str
    profile: list[tuple[str, str]]
    script: Iterator[tuple[float, Req]] = field(default_factory=lambda: iter(()))
    cookies: dict[str, str] = field(default_factory=dict)
    extra: list[tuple[str, str]] = field(default_factory=list)
    sent: int = 0
    passed_before_block: int | None = None  # requests that got through before the first block
    throttled: int = 0
    blocked: int = 0
    last_status: int = 0
    why: str = ""  # the findings behind the first block


class Generator:
    """Builds the population: benign users of several habits and attackers of each kind."""

    def __init__(self, shop: Shop, rng: random.Random, start: float, duration: float,
                 same_software: bool = False) -> None:
        self.same_software = same_software  # every client sends the same headers: no fingerprint helps
        self.shop = shop
        self.rng = rng
        self.start = start
        self.duration = duration
        self._ip = 0

    def ip(self) -> str:
        self._ip += 1
        n = self._ip
        return f"127.{(n >> 16) & 255 or 1}.{(n >> 8) & 255}.{n & 255 or 1}"

    # benign --------------------------------------------------------------------------------------

    def benign(self, i: int, ip: str | None = None) -> Actor:
        r = self.rng
        if r.random() < 0.08:
            # an API integration: a plain HTTP library with an API key, the same tools attackers use
            a = Actor(f"benign-{i}", "benign", ip or self.ip(),
                      list(BROWSERS[0] if self.same_software else r.choice(TOOLS)))
            key = f"k{r.getrandbits(48):x}"
            self.shop.api_keys[key] = r.choice(list(self.shop.users))
            a.extra.append(("X-API-Key", key))
            a.script = self._integration_script(a)
            return a
        a = Actor(f"benign-{i}", "benign", ip or self.ip(), r.choice(BROWSERS[:3] if r.random() < 0.85 else BROWSERS))
        if self.same_software:
            a.profile = list(BROWSERS[0])
        a.script = self._benign_script(a)
        return a

    def _integration_script(self, a: Actor) -> Iterator[tuple[float, Req]]:
        r, shop = self.rng, self.shop
        t = self.start + r.uniform(0, self.duration * 0.5)
        owner = shop.api_keys[a.extra[-1][1]]
        mine = shop.own_orders(owner)
        for _ in range(r.randint(20, 120)):
            t += r.uniform(30, 600)
            x = r.random()
            if x < 0.5:
                yield t, Req("GET", f"/api/products?page={r.randint(1, 8)}")
            elif x < 0.8:
                yield t, Req("GET", f"/api/products/{r.randint(1, shop.n_products + 3)}")
            elif x < 0.95 and mine:
                yield t, Req("GET", f"/api/orders/{r.choice(mine)}")
            else:
                yield t, Req("GET", f"/api/users/lookup?email={r.choice(list(shop.users))}")

    def _benign_script(self, a: Actor) -> Iterator[tuple[float, Req]]:
        r, shop = self.rng, self.shop
        email = r.choice(list(shop.users))
        t = self.start + r.uniform(0, self.duration * 0.9)
        for _visit in range(r.choice([1, 1, 1, 2, 3])):
            yield t, Req("GET", "/")
            for p in ("/static/app.js", "/static/app.css"):
                yield t + 0.05, Req("GET", p)
            t += r.uniform(1, 5)
            for _ in range(r.randint(2, 12)):
                t += r.uniform(2, 40)
                if r.random() < 0.2:
                    yield t, Req("GET", f"/api/products?page={r.randint(1, 8)}")
                elif r.random() < 0.15:
                    yield t, Req("GET", f"/api/search?q={r.choice(['lamp', 'chair', 'red mug', 'desk'])}")
                elif r.random() < 0.03:
                    yield t, Req("GET", r.choice(["/api/products/9999", "/old-page", "/api/produts/3"]))  # stale links
                elif r.random() < 0.08:
                    yield t, Req("GET", f"/api/stores/{r.randint(1, 60)}")
                else:
                    yield t, Req("GET", f"/api/products/{r.randint(1, shop.n_products)}")
            if r.random() < 0.7:
                t += r.uniform(2, 20)
                yield t, Req("GET", "/login")
                for _ in range(r.choice([0] * 12 + [1] * 4 + [2])):  # sometimes mistype the password
                    t += r.uniform(3, 12)
                    yield t, Req("POST", "/api/login", orjson.dumps({"username": email, "password": "oops"}))
                t += r.uniform(3, 12)
                yield t, Req("POST", "/api/login", orjson.dumps({"username": email, "password": shop.users[email]}))
                t += r.uniform(1, 5)
                yield t, Req("GET", "/api/profile")
                for oid in shop.own_orders(email)[: r.randint(0, 3)]:
                    t += r.uniform(2, 15)
                    yield t, Req("GET", f"/api/orders/{oid}")
                if r.random() < 0.4:
                    t += r.uniform(5, 60)
                    yield t, Req("GET", "/cart")
                    t += r.uniform(2, 20)
                    yield t, Req("POST", "/api/checkout", b'{"items":[3]}')
                if r.random() < 0.2:  # look up a friend
                    t += r.uniform(2, 20)
                    yield t, Req("GET", f"/api/users/lookup?email={r.choice(list(shop.users))}")
            t += r.uniform(600, 7200)

    # attackers -------------------------------------------------------------------------------------

    def tool_profile(self) -> list[tuple[str, str]]:
        """A tool's headers with per-attacker variations (versions, languages, an extra header), so
        that different attackers do not share one fingerprint by accident of the generator."""
        r = self.rng
        if self.same_software:
            return list(BROWSERS[0])
        if r.random() < 0.2:
            return list(r.choice(BROWSERS))  # a perfect copy of a real browser's headers
        prof = list(r.choice(TOOLS))
        if r.random() < 0.5:
            prof.append(("Accept-Language", r.choice(["en", "en-US", "de-DE", "ru", "zh-CN", "pt-BR"])))
        if r.random() < 0.5:
            prof.insert(1, (r.choice(["DNT", "Upgrade-Insecure-Requests", "Sec-GPC"]), "1"))
        if r.random() < 0.3:
            prof.append(("Accept-Encoding", r.choice(["br", "identity", "gzip, br"])))
        return prof

    def _t0(self) -> float:
        return self.start + self.rng.uniform(0.05, 0.8) * self.duration

    def attacker(self, kind: str, i: int) -> Actor:
        a = Actor(f"{kind}-{i}", kind, self.ip(), self.tool_profile())
        a.script = getattr(self, "_" + kind)(a)
        return a

    def _scanning(self, a: Actor) -> Iterator[tuple[float, Req]]:
        t = self._t0()
        words = ["admin", ".env", "wp-login.php", "phpmyadmin", ".git/config", "backup.zip", "config.json",
                 "server-status", "api/v1/debug", "actuator/env", "console", "login.asp", "cgi-bin/test"]
        for n in range(150):
            t += self.rng.uniform(0.05, 1.0)
            yield t, Req("GET", f"/{self.rng.choice(words)}{n if n > 12 else ''}")

    def _brute_force(self, a: Actor) -> Iterator[tuple[float, Req]]:
        t = self._t0()
        email = self.rng.choice(list(self.shop.users))
        for n in range(100):
            t += self.rng.uniform(0.3, 3)
            yield t, Req("POST", "/api/login", orjson.dumps({"username": email, "password": f"guess{n}"}))

    def _stuffing(self, a: Actor) -> Iterator[tuple[float, Req]]:
        t = self._t0()
        for n in range(150):
            t += self.rng.uniform(0.3, 3)
            yield t, Req("POST", "/api/login", orjson.dumps({"username": f"leak{n}@mail.test", "password": "123456"}))

    def _distributed_stuffing(self, a: Actor) -> Iterator[tuple[float, Req]]:
        t = self._t0()
        ips = [self.ip() for _ in range(60)]
        for n in range(240):
            t += self.rng.uniform(0.05, 0.5)
            email = f"dump{a.name}{n}@mail.test" if self.rng.random() > 0.02 else self.rng.choice(list(self.shop.users))
            yield t, Req("POST", "/api/login", orjson.dumps({"username": email, "password": "Summer2024!"}),
                         ip=ips[n % len(ips)])

    def _token_theft(self, a: Actor) -> Iterator[tuple[float, Req]]:
        # a stolen session (created for a real user) replayed from many addresses at once
        t = self._t0()
        email = self.rng.choice(list(self.shop.users))
        tok = f"s{self.rng.getrandbits(64):x}"
        self.shop.sessions[tok] = email
        a.cookies["session"] = tok
        ips = [self.ip() for _ in range(12)]
        for n in range(80):
            t += self.rng.uniform(0.2, 2)
            yield t, Req("GET", self.rng.choice(["/api/profile", "/api/orders"]), ip=ips[n % len(ips)])

    def _enumeration(self, a: Actor) -> Iterator[tuple[float, Req]]:
        t = self._t0()
        users = list(self.shop.users)
        for n in range(200):
            t += self.rng.uniform(0.1, 2)
            e = self.rng.choice(users) if self.rng.random() < 0.2 else f"guess{n}.{a.name}@mail.test"
            yield t, Req("GET", f"/api/users/lookup?email={e}")

    def _distributed_enumeration(self, a: Actor) -> Iterator[tuple[float, Req]]:
        # rotating addresses every few requests, keeping one client fingerprint (and half the time one key)
        t = self._t0()
        users = list(self.shop.users)
        if self.rng.random() < 0.5:
            a.extra.append(("X-API-Key", f"k{self.rng.getrandbits(48):x}"))
        ip = self.ip()
        for n in range(200):
            if n % 4 == 0:
                ip = self.ip()
            t += self.rng.uniform(0.1, 2)
            e = self.rng.choice(users) if self.rng.random() < 0.25 else f"probe{n}.{a.name}@mail.test"
            yield t, Req("GET", f"/api/users/lookup?email={e}", ip=ip)

    def _bola(self, a: Actor) -> Iterator[tuple[float, Req]]:
        t = self._t0()
        email = self.rng.choice(list(self.shop.users))
        yield t, Req("GET", "/login")
        t += 2
        yield t, Req("POST", "/api/login", orjson.dumps({"username": email, "password": self.shop.users[email]}))
        start = self.rng.randint(1, 3000)
        for n in range(200):
            t += self.rng.uniform(0.2, 2)
            yield t, Req("GET", f"/api/orders/{start + n}")

    def _scraping(self, a: Actor) -> Iterator[tuple[float, Req]]:
        t = self._t0()
        for page in range(1, 30):
            t += self.rng.uniform(0.1, 1)
            yield t, Req("GET", f"/api/products?page={page}")
        for pid in range(1, self.shop.n_products + 1):
            t += self.rng.uniform(0.1, 1)
            yield t, Req("GET", f"/api/products/{pid}")

    def _harvesting(self, a: Actor) -> Iterator[tuple[float, Req]]:
        # a small collection (60 stores) fetched whole, in random order: no walk, few requests
        t = self._t0()
        ids = list(range(1, 61))
        self.rng.shuffle(ids)
        for sid in ids * 3:
            t += self.rng.uniform(1, 6)
            yield t, Req("GET", f"/api/stores/{sid}")

    def _slow_enumeration(self, a: Actor) -> Iterator[tuple[float, Req]]:
        t = self.start + self.rng.uniform(0, 0.1) * self.duration
        users = list(self.shop.users)
        for n in range(int(self.duration / 900)):
            t += self.rng.uniform(600, 1200)
            e = self.rng.choice(users) if self.rng.random() < 0.2 else f"slow{n}.{a.name}@mail.test"
            yield t, Req("GET", f"/api/users/lookup?email={e}")

    def _slow_bola(self, a: Actor) -> Iterator[tuple[float, Req]]:
        t = self.start + self.rng.uniform(0, 0.1) * self.duration
        email = self.rng.choice(list(self.shop.users))
        yield t, Req("GET", "/login")
        t += 3
        yield t, Req("POST", "/api/login", orjson.dumps({"username": email, "password": self.shop.users[email]}))
        start = self.rng.randint(1, 3000)
        for n in range(int(self.duration / 900)):
            t += self.rng.uniform(600, 1200)
            yield t, Req("GET", f"/api/orders/{start + n * self.rng.randint(1, 3)}")

    def _slow_stuffing(self, a: Actor) -> Iterator[tuple[float, Req]]:
        t = self.start + self.rng.uniform(0, 0.1) * self.duration
        for n in range(int(self.duration / 600)):
            t += self.rng.uniform(300, 900)
            body = {"username": f"slow{n}.{a.name}@mail.test", "password": "x"}
            yield t, Req("POST", "/api/login", orjson.dumps(body))

    def _slow_scanning(self, a: Actor) -> Iterator[tuple[float, Req]]:
        t = self.start + self.rng.uniform(0, 0.1) * self.duration
        for n in range(int(self.duration / 400)):
            t += self.rng.uniform(200, 600)
            yield t, Req("GET", f"/probe/{n}/{self.rng.choice(['.env', 'admin', 'debug', 'config'])}")


FAST = ("scanning", "brute_force", "stuffing", "distributed_stuffing", "token_theft", "enumeration",
        "distributed_enumeration", "bola")
SLOW = ("scraping", "harvesting", "slow_stuffing", "slow_scanning", "slow_enumeration", "slow_bola")
ATTACKS = FAST + SLOW


@dataclass
class Report:
    rows: list[dict[str, Any]]
    benign: int
    benign_blocked: int
    benign_throttled: int
    requests: int
    seconds: float
    simulated: float
    actors: list[Actor] = field(default_factory=list, repr=False)
    fired: dict[str, int] = field(default_factory=dict)

    def ok(self) -> bool:
        return all(r["recall"] >= 0.95 and (r["kind"] not in FAST or (r["median"] or 0) <= 20) for r in self.rows) \
            and self.benign_blocked <= max(0.001 * self.benign, 0)

    def text(self) -> str:
        lines = [f"{'scenario':26} {'attackers':>9} {'recall':>7} {'median':>7} {'p90':>6}"]
        for r in self.rows:
            lines.append(f"{r['kind']:26} {r['n']:>9} {r['recall']:>7.0%} {r['median']!s:>7} {r['p90']!s:>6}")
        lines.append(f"benign users: {self.benign}, ever blocked: {self.benign_blocked} "
                     f"({self.benign_blocked / max(self.benign, 1):.2%}), ever throttled or challenged: "
                     f"{self.benign_throttled} ({self.benign_throttled / max(self.benign, 1):.2%})")
        lines.append(f"{self.requests} requests, {self.simulated / 3600:.1f} simulated hours, "
                     f"{self.seconds:.1f} s wall ({self.requests / max(self.seconds, 1e-9):.0f} req/s)")
        return "\n".join(lines)


async def request_phases(pipeline: Pipeline, ex: Exchange, body: bytes) -> tuple[Action, Verdict | None]:
    """The request phases in the proxy's order (the body attached before its phase); stops at a
    challenge or stronger. Returns the strongest action and the last phase's verdict."""
    action = Action.ALLOW
    v = None
    for phase in (pipeline.connection, pipeline.request_headers, pipeline.request_body):
        if phase == pipeline.request_body and body:
            ex.request.body = body
            ex.request.body_size = len(body)
        v = await phase(ex)
        if v is not None:
            action = max(action, v.action)
            if v.action >= Action.CHALLENGE:
                break
    return action, v


async def drive(pipeline: Pipeline, shop: Shop, actor: Actor, req: Req) -> tuple[Action, int]:
    """One request through every phase; returns the strongest action taken and the status served."""
    headers = Headers(list(actor.profile) + list(actor.extra))
    if actor.cookies:
        headers.add("Cookie", "; ".join(f"{k}={v}" for k, v in actor.cookies.items()))
    if req.body:
        headers.add("Content-Type", "application/json")
        headers.add("Content-Length", str(len(req.body)))
    ip = req.ip or actor.ip
    ex = pipeline.new_exchange(Client(peer_ip=ip), req.method, req.target, headers)
    action, v = await request_phases(pipeline, ex, req.body)
    if v is not None and v.action >= Action.CHALLENGE:
        if not actor.why:
            actor.why = "; ".join(f"{f.rule_id}: {f.message} [{f.evidence}]" for f in ex.findings)[:400]
        ex.response = Response(v.status, Headers([("Content-Type", "application/problem+json")]), from_bastion=True)
        pipeline.complete(ex)
        return action, v.status
    path, _, query = req.target.partition("?")
    status, body, token = shop.handle(req.method, path, query, headers, req.body)
    rh = Headers([("Content-Type", "application/json")])
    if token:
        rh.add("Set-Cookie", f"session={token}; HttpOnly")
        actor.cookies["session"] = token
    ex.response = Response(status, rh, body=body, body_size=len(body))
    v2 = await pipeline.response_headers(ex)
    if v2 is None:
        v2 = await pipeline.response_body(ex)
    if v2 is not None and v2.action > action:
        action = v2.action
    if ex.verdict is not None and ex.verdict.action > action:
        action = ex.verdict.action
    pipeline.complete(ex)
    return action, status


def build_population(gen: Generator, benign: int, attackers: int, nat_share: float) -> list[Actor]:
    actors: list[Actor] = []
    nat_ips = [gen.ip() for _ in range(max(1, benign // 100))]
    for i in range(benign):
        ip = gen.rng.choice(nat_ips) if gen.rng.random() < nat_share else None
        actors.append(gen.benign(i, ip))
    for kind in ATTACKS:
        for i in range(attackers):
            actors.append(gen.attacker(kind, i))
    return actors


async def run_simulation(benign: int = 400, attackers: int = 6, hours: float = 24.0, seed: int = 7,
                         config: BastionConfig | None = None, only: set[str] | None = None,
                         nat_share: float = 0.1, same_software: bool = False) -> Report:
    rng = random.Random(seed)
    clock = ManualClock(1_700_000_000.0)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config or BastionConfig.model_validate({"data_dir": tmp})
        if config is None:
            cfg.behaviour.decisions.persist = False
        if only is None:  # every detector that acts on requests; symptoms only report on the API
            only = {name for name, _ in DETECTORS} - {"symptoms"}
        pipeline = build_pipeline(cfg, clock=clock, only=only)
        await pipeline.startup()
        shop = Shop(rng)
        gen = Generator(shop, rng, clock.now(), hours * 3600.0, same_software=same_software)
        actors = build_population(gen, benign, attackers, nat_share)
        heap: list[tuple[float, int, int, Req]] = []
        seq = 0
        for idx, a in enumerate(actors):
            nxt = next(a.script, None)
            if nxt is not None:
                heapq.heappush(heap, (nxt[0], seq, idx, nxt[1]))
                seq += 1
        wall = time.perf_counter()
        n = 0
        while heap:
            t, _, idx, req = heapq.heappop(heap)
            if t > clock.now():
                clock.set(t)
            a = actors[idx]
            action, _status = await drive(pipeline, shop, a, req)
            n += 1
            a.sent += 1
            if action >= Action.CHALLENGE:
                a.blocked += 1
                if a.passed_before_block is None:
                    a.passed_before_block = a.sent - 1
            elif action == Action.THROTTLE:
                a.throttled += 1
            nxt = next(a.script, None)
            if nxt is not None:
                heapq.heappush(heap, (max(nxt[0], t), seq, idx, nxt[1]))
                seq += 1
        elapsed = time.perf_counter() - wall
        fired: dict[str, int] = {}
        for det in pipeline.detectors:
            fired.update(getattr(det, "fired", {}))
        await pipeline.shutdown()
    rows = []
    for kind in ATTACKS:
        group = [a for a in actors if a.kind == kind]
        got = [a.passed_before_block for a in group if a.passed_before_block is not None]
        rows.append({
            "kind": kind, "n": len(group), "recall": len(got) / max(len(group), 1),
            "median": int(statistics.median(got)) if got else None,
            "p90": int(sorted(got)[min(len(got) - 1, int(len(got) * 0.9))]) if got else None,
        })
    ben = [a for a in actors if a.kind == "benign"]
    return Report(rows=rows, benign=len(ben), benign_blocked=sum(1 for a in ben if a.blocked),
                  benign_throttled=sum(1 for a in ben if a.throttled or a.blocked), requests=n,
                  seconds=elapsed, simulated=hours * 3600.0, actors=actors, fired=fired)


def main(benign: int = 400, attackers: int = 6, hours: float = 24.0, seed: int = 7,
         only: set[str] | None = None, out: Callable[[str], None] = print, verbose: bool = False) -> Report:
    report = asyncio.run(run_simulation(benign=benign, attackers=attackers, hours=hours, seed=seed, only=only))
    out(report.text())
    if verbose:
        for a in report.actors:
            if a.kind != "benign" and a.passed_before_block is None:
                out(f"missed: {a.name} sent {a.sent} ({a.throttled} throttled)")
            if a.kind == "benign" and (a.blocked or a.throttled):
                out(f"benign hit: {a.name} blocked {a.blocked} throttled {a.throttled} of {a.sent}: {a.why}")
        out("fired: " + ", ".join(f"{k}={v}" for k, v in sorted(report.fired.items())))
    return report


if __name__ == "__main__":  # pragma: no cover
    main()
