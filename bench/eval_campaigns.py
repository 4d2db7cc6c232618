"""Blind probe of behavioural protection: abuse campaigns that no single request reveals, in real time.

A sample shop API (login, password reset, user lookup, orders, catalog, gift cards, one-time codes)
runs behind a real `bastion proxy` with the default configuration. Attack campaigns (brute force,
spraying, credential stuffing from 1, 5 and 30 addresses, account takeover, enumeration, BOLA,
scraping, a 404 scanner, hammering, gift-card and OTP brute force) run concurrently with legitimate
users for about four minutes, paced as real tools and real people are. Written without reading the
behaviour detectors, their docs or the simulators, as a held-out evaluator would.

    .venv/bin/python bench/eval_campaigns.py [--keep]

Realism the numbers depend on:
- every address is in its own /24 (rotating proxies and unrelated users are), except the office NAT;
- each client sends the headers of what it is (Chrome, Firefox, Safari, the iOS and Android apps,
  python-requests, httpx, aiohttp, Go, curl, axios, Scrapy) in that client's order, and each attack
  campaign is a different attacker whose tool has its own locale, so one campaign does not give another
  away. Three overlaps are deliberate: the brute force uses python-requests' defaults like the merchant
  integration, the 1-address stuffing sends exactly the Chrome headers of the office and of 40 one-off
  visitors, and the slow phone enumeration copies the Android app that 5 real users run.

The upstream marks every answer with `X-Upstream: sample-api`; an answer without it came from Bastion.
For each campaign: whether and when Bastion first refused it, the share of its requests that reached
the API, and what the attacker gained; for each legitimate actor, every request refused. Why Bastion
refused is read back from its event store (`bastion events list --json`, by request id). Exits 0.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import secrets
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gateway_load import free_port

UPSTREAM_MARK = "sample-api"
SECRET = b"sample-api-signing-key"
SEED = 20260
HOST = "api.shop.example"
N_PRODUCTS, PER_PAGE = 10000, 20

# ---------------------------------------------------------------- the sample API's data (shared, deterministic)

FIRST = ["ana", "ben", "carla", "dev", "emma", "felix", "gina", "hugo", "iris", "jon", "kate", "liam", "maya", "nico",
         "olga", "paul", "quinn", "rosa", "sam", "tara", "uma", "victor", "wendy", "xavier", "yara", "zane", "amir",
         "bea", "chen", "dora"]
LAST = ["silva", "meyer", "rossi", "khan", "novak", "garcia", "smith", "jones", "kim", "lopez", "muller", "dubois",
        "sato", "park", "costa", "ivanova", "brown", "wilson", "nakamura", "haddad"]
DOMAINS = ["gmail.com", "outlook.com", "yahoo.com", "icloud.com", "proton.me", "hotmail.com", "gmx.de"]
WORDS = ["sunshine", "dragon", "monkey", "football", "shadow", "princess", "summer", "winter", "coffee", "tigers",
         "maple", "rocket", "ginger", "falcon", "harbor", "pepper", "violet", "bailey", "charlie", "hunter"]

REGULAR = range(0, 12)      # ordinary users, each on their own address
OFFICE = range(20, 50)      # 30 colleagues behind one NAT address
MOBILE, FORGOT = 60, 61
CROWD = range(220, 260)     # one-off visitors on their own connections, all on the same Chrome build
BRUTE, SPRAY_HIT, ATO_VICTIM, OTP_VICTIM = 100, 137, 200, 210
ATTACKER_ACCOUNTS = range(280, 290)  # accounts the attackers registered themselves
MFA = {0, 3, 6, OTP_VICTIM}
SPRAY_PASSWORD = "Spring2025!"


@dataclass(frozen=True)
class Account:
    uid: int
    email: str
    password: str
    phone: str
    name: str
    mfa: bool = False
    role: str = "customer"


@dataclass
class World:
    accounts: list[Account]
    by_email: dict[str, Account]
    by_phone: dict[str, Account]
    orders: dict[int, int]  # order id -> owner uid
    merchant_key: str
    merchant_uid: int
    gift_codes: list[str]
    staff: Account


def gift_code(rng: random.Random) -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "-".join("".join(rng.choice(alphabet) for _ in range(4)) for _ in range(4))


def build_world() -> World:
    rng = random.Random(SEED)
    names = [(f, last) for f in FIRST for last in LAST]
    rng.shuffle(names)
    accounts: list[Account] = []
    phones: set[str] = set()
    for i, (f, last) in enumerate(names[:300]):
        sep = rng.choice([".", "_", ""])
        email = f"{f}{sep}{last}{rng.choice(['', str(rng.randint(1, 99))])}@{rng.choice(DOMAINS)}"
        pw = f"{rng.choice(WORDS).capitalize()}{rng.randint(10, 9999)}{rng.choice('!?#$.')}"
        if i == SPRAY_HIT:
            pw = SPRAY_PASSWORD
        phone = f"+1555010{rng.randint(0, 9999):04d}"
        while phone in phones:
            phone = f"+1555010{rng.randint(0, 9999):04d}"
        phones.add(phone)
        accounts.append(Account(1000 + i, email, pw, phone, f"{f.capitalize()} {last.capitalize()}", i in MFA))
    orders: dict[int, int] = {}
    owners = [a.uid for a in accounts for _ in range(rng.randint(2, 6))]
    rng.shuffle(owners)  # one auto-increment sequence shared by every customer, as in a real shop
    for k, uid in enumerate(owners):
        orders[100000 + k] = uid
    merchant_uid = 9000
    for k in range(500):
        orders[300000 + k] = merchant_uid
    staff = Account(500, "support.desk@shop.example", "Kb7#support-desk-2026", "+15559990000", "Support Desk",
                    role="support")
    return World(accounts, {a.email: a for a in [*accounts, staff]}, {a.phone: a for a in accounts}, orders,
                 "sk_live_" + "".join(rng.choice("0123456789abcdef") for _ in range(32)), merchant_uid,
                 [gift_code(rng) for _ in range(5)], staff)


W = build_world()


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_jwt(uid: int, role: str) -> str:
    now = int(time.time())
    head = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64u(json.dumps({"sub": str(uid), "role": role, "iat": now, "exp": now + 3600, "iss": HOST}).encode())
    sig = b64u(hmac.new(SECRET, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def check_jwt(token: str) -> dict[str, Any] | None:
    try:
        head, body, sig = token.split(".")
        if not hmac.compare_digest(sig, b64u(hmac.new(SECRET, f"{head}.{body}".encode(), hashlib.sha256).digest())):
            return None
        claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return claims if claims.get("exp", 0) > time.time() else None
    except (ValueError, TypeError):
        return None


def otp_code(challenge_id: str) -> str:
    """The 6-digit code 'sent by SMS' for a challenge (the legitimate user reads it from their phone)."""
    n = int.from_bytes(hmac.new(SECRET, challenge_id.encode(), hashlib.sha256).digest()[:4], "big")
    return f"{n % 1_000_000:06d}"


# ---------------------------------------------------------------- the sample API (runs as its own process)

class SampleApi(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sample-api/1.0"
    disable_nagle_algorithm = True  # one segment per answer: no 40 ms delayed-ACK stalls
    challenges: dict[str, int] = {}
    next_order = [500000]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def answer(self, status: int, obj: Any, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Upstream", UPSTREAM_MARK)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.route("GET")

    def do_POST(self) -> None:
        self.route("POST")

    def do_PATCH(self) -> None:
        self.route("PATCH")

    def do_DELETE(self) -> None:
        self.route("DELETE")

    def caller(self) -> tuple[int, str] | None:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            claims = check_jwt(auth[7:])
            if claims:
                return int(claims["sub"]), str(claims.get("role", "customer"))
        if self.headers.get("X-API-Key") == W.merchant_key:
            return W.merchant_uid, "merchant"
        return None

    def route(self, method: str) -> None:
        u = urllib.parse.urlsplit(self.path)
        path, qs = u.path, dict(urllib.parse.parse_qsl(u.query))
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        try:
            self.dispatch(method, path, qs, body)
        except Exception as e:  # a sample API answers 500 rather than dropping the connection
            self.answer(500, {"error": "internal", "detail": type(e).__name__})

    def dispatch(self, method: str, path: str, qs: dict[str, str], body: dict[str, Any]) -> None:
        if path == "/api/v1/health":
            return self.answer(200, {"status": "ok"})
        if path == "/api/v1/auth/login" and method == "POST":
            acc = W.by_email.get(str(body.get("email", "")).strip().lower())
            if acc is None or body.get("password") != acc.password:
                return self.answer(401, {"error": "invalid_credentials", "message": "Invalid email or password."})
            if acc.mfa:
                cid = "ch_" + secrets.token_hex(8)
                self.challenges[cid] = acc.uid
                return self.answer(200, {"mfa_required": True, "challenge_id": cid, "channel": "sms"})
            return self.answer(200, {"token": make_jwt(acc.uid, acc.role), "user": {"id": acc.uid, "name": acc.name}})
        if path == "/api/v1/otp/verify" and method == "POST":
            cid = str(body.get("challenge_id", ""))
            if cid not in self.challenges:
                return self.answer(400, {"error": "unknown_challenge"})
            if str(body.get("code", "")) != otp_code(cid):  # no attempt limit: the weakness being probed
                return self.answer(401, {"error": "invalid_code", "message": "The code is not valid."})
            return self.answer(200, {"token": make_jwt(self.challenges.pop(cid), "customer")})
        if path == "/api/v1/auth/password-reset" and method == "POST":
            if str(body.get("email", "")).strip().lower() in W.by_email:  # the enumeration oracle
                return self.answer(200, {"message": "We sent a password reset link to your email."})
            return self.answer(404, {"error": "unknown_email", "message": "No account uses this email address."})
        if path == "/api/v1/auth/logout":
            return self.answer(200, {"ok": True})
        if path == "/api/v1/users/lookup" and method == "GET":  # 'find friends by contact' (Twitter 2022)
            acc = W.by_phone.get(qs.get("phone", "")) or W.by_email.get(qs.get("email", "").lower())
            if acc is None:
                return self.answer(404, {"error": "not_found"})
            return self.answer(200, {"id": acc.uid, "name": acc.name, "handle": acc.email.split("@")[0]})
        if path == "/api/v1/products" and method == "GET":
            page = int(qs.get("page", "1") or 1) if qs.get("page", "1").isdigit() else 1
            first = (page - 1) * PER_PAGE + 1
            items = [{"id": i, "name": f"Product {i}", "price": round(5 + (i * 37 % 500) / 3, 2)}
                     for i in range(first, min(first + PER_PAGE, N_PRODUCTS + 1))]
            return self.answer(200, {"page": page, "per_page": PER_PAGE, "total": N_PRODUCTS, "items": items})
        m = re.fullmatch(r"/api/v1/products/(\d+)", path)
        if m and method == "GET":
            pid = int(m[1])
            if not 1 <= pid <= N_PRODUCTS:
                return self.answer(404, {"error": "not_found"})
            return self.answer(200, {"id": pid, "name": f"Product {pid}", "stock": pid % 17, "reviews": pid % 40})
        if path == "/api/v1/categories":
            return self.answer(200, {"items": ["shoes", "outdoor", "kitchen", "books", "toys", "garden"]})
        if path == "/api/v1/search":
            q = qs.get("q", "")
            return self.answer(200, {"q": q, "items": [{"id": (len(q) * 31 + i) % N_PRODUCTS + 1} for i in range(10)]})
        who = self.caller()
        if who is None:
            if path.startswith(("/api/v1/users/me", "/api/v1/orders", "/api/v1/cart", "/api/v1/notifications",
                                "/api/v1/gift-cards")):
                return self.answer(401, {"error": "unauthorized"}, {"WWW-Authenticate": 'Bearer realm="shop"'})
            return self.answer(404, {"error": "not_found"})
        uid, role = who
        if path == "/api/v1/users/me":
            acc = next((a for a in W.accounts if a.uid == uid), None)
            return self.answer(200, {"id": uid, "name": acc.name if acc else "merchant", "updated": method == "PATCH"})
        if path == "/api/v1/users/me/payment-methods":
            return self.answer(200, {"items": [{"id": "pm_saved_1", "brand": "visa", "last4": f"{uid % 10000:04d}"}]})
        if path == "/api/v1/orders" and method == "GET":
            mine = sorted((o for o, owner in W.orders.items() if owner == uid), reverse=True)
            per = min(int(qs.get("per_page", "20")), 100)
            page = int(qs.get("page", "1"))
            return self.answer(200, {"page": page, "total": len(mine),
                                     "items": [{"id": o} for o in mine[(page - 1) * per: page * per]]})
        if path == "/api/v1/orders" and method == "POST":
            self.next_order[0] += 1
            return self.answer(201, {"id": self.next_order[0], "status": "placed"})
        m = re.fullmatch(r"/api/v1/orders/(\d+)", path)
        if m and method == "GET":
            oid = int(m[1])
            if oid not in W.orders:
                return self.answer(404, {"error": "not_found"})
            if W.orders[oid] != uid and role != "support":
                return self.answer(403, {"error": "forbidden", "message": "This order belongs to another customer."})
            return self.answer(200, {"id": oid, "customer": W.orders[oid], "total": oid % 300 + 9.99, "status": "shipped"})
        if path == "/api/v1/cart":
            return self.answer(200, {"items": [], "total": 0})
        if path == "/api/v1/cart/items" and method == "POST":
            return self.answer(201, {"ok": True})
        if path == "/api/v1/notifications":
            return self.answer(200, {"items": [], "unread": 0})
        if path == "/api/v1/gift-cards/redeem" and method == "POST":
            code = str(body.get("code", ""))
            if not re.fullmatch(r"[A-Z0-9]{4}(-[A-Z0-9]{4}){3}", code):
                return self.answer(400, {"error": "invalid_format"})
            if code in W.gift_codes:
                return self.answer(200, {"credited": 50.0, "currency": "USD"})
            return self.answer(404, {"error": "unknown_code"})
        return self.answer(404, {"error": "not_found"})


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # the default (5) drops connections when the gateway opens its pool at once


def serve_upstream(port: int) -> None:
    ApiServer(("127.0.0.1", port), SampleApi).serve_forever()


# ---------------------------------------------------------------- the client side

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
BROWSER_UAS = [
    CHROME,
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 OPR/109.0.0.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:125.0) Gecko/20100101 Firefox/125.0",
]
APP_UA = "ShopApp/5.2.1 (iPhone15,2; iOS 17.4.1; Scale/3.00)"
ANDROID_APP_UA = "ShopApp/5.2.0 (Android 14; SM-G991B) okhttp/4.12.0"
SLOW_ENUM_UA = "ShopApp/5.1.9 (Android 13; Pixel 7) okhttp/4.11.0"
LOGIN = "/api/v1/auth/login"


@dataclass
class Resp:
    status: int
    bastion: bool  # answered by Bastion (or the connection refused/cut), not by the API
    latency: float
    data: dict[str, Any] = field(default_factory=dict)
    problem: str = ""
    request_id: str = ""


@dataclass
class Rec:
    t: float
    actor: str
    method: str
    path: str
    resp: Resp


# The header names, order and fixed values each kind of client sends (what a fingerprint of the request sees).
# "$UA" is the User-Agent, "$X" the client's own headers (credentials, app version), "$CT"/"$CL" the body's
# Content-Type/Length and "$ORIGIN" a browser's Origin, sent only with a body.
PROFILES: dict[str, list[str]] = {
    "chrome": ["Host", "Connection: keep-alive", "$CL", 'sec-ch-ua: "Chromium";v="124", "Google Chrome";v="124", '
               '"Not-A.Brand";v="99"', "sec-ch-ua-mobile: ?0", "$X", "$UA", "$CT", "Accept: application/json, text/plain, */*",
               'sec-ch-ua-platform: "Windows"', "$ORIGIN", "Sec-Fetch-Site: same-site", "Sec-Fetch-Mode: cors",
               "Sec-Fetch-Dest: empty", "Referer: https://shop.example/", "Accept-Encoding: gzip, deflate, br, zstd",
               "Accept-Language: en-US,en;q=0.9"],
    "firefox": ["Host", "$UA", "Accept: application/json, text/plain, */*", "Accept-Language: en-US,en;q=0.5",
                "Accept-Encoding: gzip, deflate, br", "$X", "$CT", "$CL", "$ORIGIN", "Connection: keep-alive",
                "Referer: https://shop.example/", "Sec-Fetch-Dest: empty", "Sec-Fetch-Mode: cors", "Sec-Fetch-Site: same-site"],
    "safari": ["Host", "$CT", "$ORIGIN", "Accept: application/json, text/plain, */*", "$X", "Sec-Fetch-Site: same-site",
               "Accept-Language: en-GB,en;q=0.9", "Accept-Encoding: gzip, deflate, br", "Sec-Fetch-Mode: cors", "$UA",
               "Referer: https://shop.example/", "$CL", "Sec-Fetch-Dest: empty", "Connection: keep-alive"],
    "ios_app": ["Host", "$CT", "Accept: application/json", "$X", "Accept-Language: en-US;q=1.0", "$CL",
                "Accept-Encoding: br;q=1.0, gzip;q=0.9, deflate;q=0.8", "$UA", "Connection: keep-alive"],
    "okhttp": ["$X", "$CT", "$CL", "Host", "Connection: Keep-Alive", "Accept-Encoding: gzip", "$UA"],
    "requests": ["Host", "$UA", "Accept-Encoding: gzip, deflate", "Accept: */*", "Connection: keep-alive", "$X", "$CL", "$CT"],
    "httpx": ["Host", "Accept: */*", "Accept-Encoding: gzip, deflate", "Connection: keep-alive", "$UA", "$X", "$CL", "$CT"],
    "aiohttp": ["Host", "$X", "Accept: */*", "Accept-Encoding: gzip, deflate", "$UA", "$CL", "$CT"],
    "go": ["Host", "$UA", "$CL", "$X", "$CT", "Accept-Encoding: gzip"],
    "curl": ["Host", "$UA", "Accept: */*", "$X", "$CT", "$CL"],
    "node": ["Accept: application/json, text/plain, */*", "$CT", "$X", "$UA", "$CL",
             "Accept-Encoding: gzip, compress, deflate, br", "Host", "Connection: keep-alive"],
    "scrapy": ["Host", "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "Accept-Language: en",
               "$UA", "Accept-Encoding: gzip, deflate", "$X"],
    "bare": ["Host", "$UA", "$X", "$CT", "$CL"],
}


def browser_profile(ua: str) -> str:
    if "Firefox" in ua:
        return "firefox"
    return "safari" if "Safari" in ua and "Chrome" not in ua else "chrome"


class Client:
    """One HTTP/1.1 keep-alive client bound to a loopback source address, as one browser/app/tool instance."""

    def __init__(self, port: int, source: str, ua: str, headers: dict[str, str] | None = None,
                 profile: str | None = None, lang: str | None = None) -> None:
        self.port, self.source, self.ua = port, source, ua
        self.headers = headers or {}
        self.profile = PROFILES[profile or browser_profile(ua)]
        if lang:  # this instance's locale: replaces the profile's Accept-Language, or is sent with its own headers
            if any(h.startswith("Accept-Language:") for h in self.profile):
                self.profile = [f"Accept-Language: {lang}" if h.startswith("Accept-Language:") else h
                                for h in self.profile]
            else:
                self.headers = {**self.headers, "Accept-Language": lang}
        self.conn: http.client.HTTPConnection | None = None

    def header_lines(self, method: str, data: bytes | None, headers: dict[str, str]) -> list[tuple[str, str]]:
        extra = self.headers | headers
        ua = extra.pop("User-Agent", self.ua)
        out: list[tuple[str, str]] = []
        for item in self.profile:
            if item == "Host":
                out.append(("Host", HOST))
            elif item == "$UA":
                out.append(("User-Agent", ua))
            elif item == "$X":
                out += extra.items()
            elif item == "$CT":
                out += [("Content-Type", "application/json")] if data is not None else []
            elif item == "$CL":
                out += [("Content-Length", str(len(data)))] if data is not None else []
            elif item == "$ORIGIN":
                out += [("Origin", "https://shop.example")] if data is not None else []
            else:
                k, v = item.split(": ", 1)
                out.append((k, v))
        return out

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Resp:
        data = json.dumps(body).encode() if body is not None else None
        lines = self.header_lines(method, data, headers or {})
        for attempt in (0, 1):
            fresh = self.conn is None
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20,
                                                       source_address=(self.source, 0))
            t = time.monotonic()
            try:
                self.conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                for k, v in lines:
                    self.conn.putheader(k, v)
                self.conn.endheaders(data)
                r = self.conn.getresponse()
                raw = r.read()
            except (http.client.HTTPException, OSError) as e:
                self.close()
                # a keep-alive connection the server closed while idle is retried once, as browsers do
                if not fresh and attempt == 0 and isinstance(e, http.client.RemoteDisconnected | BrokenPipeError
                                                                  | ConnectionResetError):
                    continue
                return Resp(-1, True, time.monotonic() - t, problem=f"connection: {type(e).__name__}")
            lat = time.monotonic() - t
            if r.will_close:
                self.close()
            try:
                parsed = json.loads(raw) if raw else {}
            except ValueError:
                parsed = {}
            parsed = parsed if isinstance(parsed, dict) else {}
            if r.getheader("X-Upstream") == UPSTREAM_MARK:
                return Resp(r.status, False, lat, parsed)
            typ = str(parsed.get("type", "")).rsplit("/", 1)[-1]
            extra = " ".join(f"{k}={parsed[k]}" for k in ("detail", "reason") if parsed.get(k))
            retry = r.getheader("Retry-After")
            title = parsed.get("title") or repr(raw[:80])
            problem = f"{title} [{typ}]" + (f" {extra}" if extra else "") + (f" Retry-After={retry}" if retry else "")
            return Resp(r.status, True, lat, parsed, problem, r.getheader("X-Request-Id") or "")
        return Resp(-1, True, 0.0, problem="connection: retry failed")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Campaign:
    name: str
    kind: str  # "attack" | "legit"
    base: int  # second octet of its loopback addresses
    start: float  # seconds after the run starts
    n_addr: int = 1
    recs: list[Rec] = field(default_factory=list)
    gain: int = 0
    gain_max: int = 0
    gain_what: str = ""
    t0: float = 0.0
    notes: list[str] = field(default_factory=list)
    lang: str | None = None  # the Accept-Language of an attack tool (None: the tool's default)

    def addr(self, k: int) -> str:
        """The k-th address: each in its own /24, as unrelated users and rotating proxies are (never 127.x.0.0/24
        for all, which would make a rotation look like one small network)."""
        return f"127.{self.base}.{k}.{(k * 37) % 250 + 1}"

    def call(self, c: Client, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             actor: str = "") -> Resp:
        r = c.call(method, path, body, headers)
        self.recs.append(Rec(time.monotonic() - self.t0 - r.latency, actor or c.source, method, path, r))
        return r


class RunOver(Exception):
    """The legitimate traffic's time is up: the actor stops where it is."""


def guarded(fn: Callable[..., None], *args: Any, **kw: Any) -> None:
    try:
        fn(*args, **kw)
    except RunOver:
        pass


@dataclass
class Ctx:
    port: int
    t0: float  # run start (monotonic)
    legit_end: float  # seconds after t0: legitimate actors stop
    hard_end: float  # seconds after t0: everything stops

    def now(self) -> float:
        return time.monotonic() - self.t0

    def nap(self, seconds: float) -> None:
        """A legitimate actor's pause; raises RunOver once the legitimate traffic's time is up."""
        left = self.legit_end - self.now()
        if left <= 0:
            raise RunOver
        time.sleep(min(seconds, left))

    def sleep_until(self, t: float) -> None:
        d = self.t0 + t - time.monotonic()
        if d > 0:
            time.sleep(d)


def paced(ctx: Ctx, camp: Campaign, n: int, rate: float | None, cap: float) -> Iterator[int]:
    """Indices 0..n-1, the i-th at camp.t0 + i/rate (as fast as answers come when rate is None); stops at cap s."""
    for i in range(n):
        if rate:
            d = camp.t0 + i / rate - time.monotonic()
            if d > 0:
                time.sleep(d)
        if time.monotonic() - camp.t0 > cap or ctx.now() > ctx.hard_end:
            camp.notes.append(f"stopped by the time cap after {i}/{n} requests")
            return
        yield i


# ---------------------------------------------------------------- request lists

def common_passwords(n: int, rng: random.Random) -> list[str]:
    top = ["123456", "password", "123456789", "12345678", "12345", "qwerty", "abc123", "password1", "111111",
           "1234567", "iloveyou", "admin", "welcome", "monkey", "dragon", "letmein", "football", "baseball",
           "sunshine", "princess", "qwerty123", "1q2w3e4r", "zaq12wsx", "trustno1", "000000", "Password1",
           "Password123", "Welcome1", "Summer2024!", "Winter2024!", "Spring2024!", "P@ssw0rd", "Qwerty1!",
           "master", "shadow", "superman", "michael", "ashley", "jessica", "charlie", "hunter2", "starwars"]
    out = list(top)
    while len(out) < n:
        w = rng.choice(WORDS)
        out.append(rng.choice([w, w.capitalize()]) + rng.choice(["", "1", "12", "123", "2023", "2024", "!", "1!"]))
    return list(dict.fromkeys(out))[:n]


def stranger_emails(n: int, rng: random.Random) -> list[str]:
    extra = ["john", "mike", "sarah", "laura", "peter", "anna", "tom", "lisa", "mark", "julia", "alex", "nina"]
    out = []
    for _ in range(n):
        f, last = rng.choice(FIRST + extra), rng.choice([*LAST, "taylor", "white", "martin", "clark", "lewis"])
        out.append(f"{f}{rng.choice(['.', '_', ''])}{last}{rng.randint(1, 9999)}@{rng.choice(DOMAINS)}")
    return out


def combo_list(n: int, rng: random.Random, valid_share: float) -> tuple[list[tuple[str, str]], int]:
    """A breached email:password list: 65 % of the emails have an account here, a few with a reused password."""
    pool = [W.accounts[i] for i in range(100, 280) if i not in (SPRAY_HIT, ATO_VICTIM, OTP_VICTIM)]
    pws = common_passwords(400, rng)
    strangers = stranger_emails(n, rng)
    combos, valid = [], 0
    for k in range(n):
        if rng.random() < 0.65:
            a = rng.choice(pool)
            if rng.random() < valid_share / 0.65:
                combos.append((a.email, a.password))
                valid += 1
            else:
                combos.append((a.email, rng.choice(pws)))
        else:
            combos.append((strangers[k], rng.choice(pws)))
    return combos, valid


def mixed_emails(n: int, rng: random.Random, known_share: float) -> tuple[list[str], int]:
    known = [a.email for a in W.accounts]
    out = [rng.choice(known) if rng.random() < known_share else e for e in stranger_emails(n, rng)]
    out = list(dict.fromkeys(out))
    return out, sum(e in W.by_email for e in out)


SCAN_WORDS = [
    "admin", "administrator", "login", "backup", "backups", "old", "test", "dev", "staging", "config", "debug",
    "console", "internal", "private", "secret", "uploads", "files", "download", "db", "database", "dump", "logs",
    "tmp", "cgi-bin", "server-status", "phpinfo", "phpmyadmin", "wp-admin", "wp-login.php", "wordpress", "actuator",
    "actuator/env", "actuator/health", "swagger", "swagger-ui", "swagger.json", "openapi.json", "api-docs",
    "graphql", "graphiql", ".git/HEAD", ".git/config", ".env", ".svn/entries", ".DS_Store", ".htaccess",
    "web.config", "sitemap.xml", "metrics", "status", "info", "v2", "v3", "beta", "portal", "dashboard", "manage",
    "manager", "management", "jenkins", "solr", "kibana", "elmah.axd", "shell", "upload", "account", "accounts",
    "auth", "oauth", "token", "keys", "credentials", "export", "import", "report", "reports", "billing", "invoices",
    "payments", "customers", "employees", "staff", "support", "help", "docs", "documentation", "system", "setup",
    "install", "update", "cron", "jobs", "queue", "cache", "redis", "mysql", "sql", "data", "assets", "static",
]
SCAN_EXTS = ["", "/", ".php", ".bak", ".zip", ".json", ".old"]


def scan_paths(n: int, rng: random.Random) -> list[str]:
    paths = [f"/{w}{e}" for e in SCAN_EXTS for w in SCAN_WORDS if not (e and "/" in w)]
    paths += [f"/api/v1/{w}" for w in SCAN_WORDS if "." not in w]
    rng.shuffle(paths)
    return paths[:n]


# ---------------------------------------------------------------- legitimate actors

def login(camp: Campaign, c: Client, acc: Account, ctx: Ctx, rng: random.Random, wrong_code: bool = False,
          typo: bool = False, think: tuple[float, float] = (3, 6)) -> str | None:
    if typo:
        camp.call(c, "POST", LOGIN, {"email": acc.email, "password": acc.password[:-1]})  # missed the last key
        time.sleep(rng.uniform(*think))
    r = camp.call(c, "POST", LOGIN, {"email": acc.email, "password": acc.password})
    if r.data.get("mfa_required"):
        cid = str(r.data["challenge_id"])
        time.sleep(rng.uniform(4, 9))  # reading the SMS
        if wrong_code:
            code = otp_code(cid)
            camp.call(c, "POST", "/api/v1/otp/verify", {"challenge_id": cid, "code": code[:5] + str((int(code[5]) + 1) % 10)})
            time.sleep(rng.uniform(3, 6))
        r = camp.call(c, "POST", "/api/v1/otp/verify", {"challenge_id": cid, "code": otp_code(cid)})
    tok = r.data.get("token")
    return str(tok) if tok else None


def shopper(ctx: Ctx, camp: Campaign, c: Client, acc: Account, rng: random.Random, *, typo: bool, first_delay: float,
            think: tuple[float, float], idle: tuple[float, float], wrong_code: bool = False) -> None:
    """A person on the shop's web app: browses, logs in (maybe one typo), reads their orders, shops, comes back."""
    ctx.nap(first_delay)
    token: str | None = None
    session = 0

    def pause() -> None:
        ctx.nap(rng.uniform(*think))

    while True:
        camp.call(c, "GET", "/api/v1/products?page=1")
        camp.call(c, "GET", "/api/v1/categories")
        pause()
        if token is None:
            token = login(camp, c, acc, ctx, rng, wrong_code=wrong_code and session == 0, typo=typo and session == 0)
            pause()
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        if token:  # (not logged in, e.g. refused: they browse anonymously and try again next visit)
            camp.call(c, "GET", "/api/v1/users/me", headers=auth)
            r = camp.call(c, "GET", "/api/v1/orders?page=1", headers=auth)
            pause()
            for o in [it["id"] for it in r.data.get("items", [])][: rng.randint(1, 2)]:
                camp.call(c, "GET", f"/api/v1/orders/{o}", headers=auth)
                pause()
        for _ in range(rng.randint(1, 3)):
            camp.call(c, "GET", f"/api/v1/products?page={rng.randint(2, 60)}")
            pause()
            camp.call(c, "GET", f"/api/v1/products/{rng.randint(1, N_PRODUCTS)}")
            pause()
        camp.call(c, "GET", "/api/v1/search?q=" + urllib.parse.quote(rng.choice(["running shoes", "tent", "kettle",
                                                                                  "lego", "garden hose"])))
        pause()
        if token:
            camp.call(c, "POST", "/api/v1/cart/items", {"product_id": rng.randint(1, N_PRODUCTS), "qty": 1}, auth)
            camp.call(c, "GET", "/api/v1/cart", headers=auth)
        session += 1
        if rng.random() < 0.25:
            token = None  # came back on another device, or the app logged them out
        ctx.nap(rng.uniform(*idle))


def regular_users(ctx: Ctx, camp: Campaign) -> None:
    threads = []
    for k, i in enumerate(REGULAR):
        rng = random.Random(SEED + i)
        c = Client(ctx.port, camp.addr(k), BROWSER_UAS[k % len(BROWSER_UAS)])
        th = threading.Thread(target=guarded, args=(shopper, ctx, camp, c, W.accounts[i], rng), daemon=True,
                              kwargs={"typo": k % 3 == 0, "first_delay": rng.uniform(0, 20), "think": (1, 4),
                                      "idle": (10, 30), "wrong_code": i == 3})
        th.start()
        threads.append(th)
    for th in threads:
        th.join()


def office(ctx: Ctx, camp: Campaign) -> None:
    """30 colleagues behind one NAT address, same corporate browser build, each with their own account."""
    threads = []
    for k, i in enumerate(OFFICE):
        rng = random.Random(SEED + 1000 + i)
        c = Client(ctx.port, camp.addr(0), BROWSER_UAS[k % 2])
        th = threading.Thread(target=guarded, args=(shopper, ctx, camp, c, W.accounts[i], rng), daemon=True,
                              kwargs={"typo": k % 6 == 0, "first_delay": rng.uniform(0, 60), "think": (2, 8),
                                      "idle": (20, 60)})
        th.start()
        threads.append(th)
    for th in threads:
        th.join()


def mobile_poller(ctx: Ctx, camp: Campaign) -> None:
    rng = random.Random(SEED + 60)
    c = Client(ctx.port, camp.addr(0), APP_UA, {"X-App-Version": "5.2.1"}, "ios_app")
    token = None
    k = 0
    while True:
        if token is None:  # logged out or refused: the app asks again every 30 s
            token = login(camp, c, W.accounts[MOBILE], ctx, rng) if k % 30 == 0 else None
        if token:
            auth = {"Authorization": f"Bearer {token}"}
            camp.call(c, "GET", "/api/v1/notifications?since=" + str(int(time.time()) - 1), headers=auth)
            if k % 30 == 0:
                camp.call(c, "GET", "/api/v1/orders?page=1", headers=auth)
        k += 1
        ctx.nap(1.0)


def integration(ctx: Ctx, camp: Campaign) -> None:
    """A merchant's ERP sync with an API key: lists its 500 orders, fetches each one, then polls for new ones."""
    c = Client(ctx.port, camp.addr(0), "acme-erp-sync/2.3 python-requests/2.31.0", {"X-API-Key": W.merchant_key},
               "requests")
    ids: list[int] = []
    for page in range(1, 11):
        r = camp.call(c, "GET", f"/api/v1/orders?page={page}&per_page=50")
        ids += [it["id"] for it in r.data.get("items", [])]
    ids = sorted(ids) or list(range(300000, 300500))
    start = time.monotonic()
    for k, oid in enumerate(ids):
        d = start + k / 20 - time.monotonic()  # 20 requests/s, a polite client
        if d > 0:
            time.sleep(d)
        camp.call(c, "GET", f"/api/v1/orders/{oid}")
    while ctx.now() < ctx.legit_end - 30:
        time.sleep(30)
        camp.call(c, "GET", "/api/v1/orders?page=1&per_page=50&updated_since=2026-01-01T00:00:00Z")


def forgot_password(ctx: Ctx, camp: Campaign) -> None:
    rng = random.Random(SEED + 61)
    acc = W.accounts[FORGOT]
    c = Client(ctx.port, camp.addr(0), BROWSER_UAS[4])
    camp.call(c, "GET", "/api/v1/products?page=1")
    for guess in (acc.password.lower(), acc.password[:-1] + "1"):
        camp.call(c, "POST", LOGIN, {"email": acc.email, "password": guess})
        time.sleep(rng.uniform(4, 8))
    camp.call(c, "POST", "/api/v1/auth/password-reset", {"email": acc.email})
    time.sleep(45)  # the mail did not arrive: ask again
    camp.call(c, "POST", "/api/v1/auth/password-reset", {"email": acc.email})
    time.sleep(25)
    token = login(camp, c, acc, ctx, rng)  # the upstream keeps the password; 'the new one' is the same string
    if token:
        auth = {"Authorization": f"Bearer {token}"}
        camp.call(c, "GET", "/api/v1/users/me", headers=auth)
        camp.call(c, "GET", "/api/v1/orders?page=1", headers=auth)


def support_agent(ctx: Ctx, camp: Campaign) -> None:
    """A support agent looks up 20 customers by email over the run (2 mistyped by the caller) and their orders."""
    rng = random.Random(SEED + 500)
    c = Client(ctx.port, camp.addr(0), BROWSER_UAS[0])
    token = login(camp, c, W.staff, ctx, rng)
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    customers = rng.sample([a for a in W.accounts[:280]], 20)
    owned: dict[int, list[int]] = defaultdict(list)
    for o, uid in W.orders.items():
        owned[uid].append(o)
    for k, a in enumerate(customers):
        ctx.sleep_until(5 + k * 10.5)
        email = a.email.split("@")[0] + "@gmial.com" if k in (7, 15) else a.email  # the caller misspelt it
        r = camp.call(c, "GET", "/api/v1/users/lookup?email=" + urllib.parse.quote(email), headers=auth)
        if r.status == 200:
            time.sleep(rng.uniform(2, 5))
            camp.call(c, "GET", f"/api/v1/orders/{rng.choice(owned[a.uid])}", headers=auth)


def chrome_crowd(ctx: Ctx, camp: Campaign) -> None:
    """40 people at home, each on their own connection but all on the same Chrome build (the most common
    header fingerprint there is), visiting once over the run: browse, log in (1 in 4 mistypes once), read
    their orders, browse a little more, leave. Their emails are in the attackers' lists too, as real ones are."""

    def visit(k: int) -> None:
        rng = random.Random(SEED + 3000 + k)
        acc = W.accounts[CROWD[k]]
        c = Client(ctx.port, camp.addr(k), CHROME)
        ctx.nap(rng.uniform(0, 200))
        camp.call(c, "GET", "/api/v1/products?page=1")
        camp.call(c, "GET", "/api/v1/categories")
        ctx.nap(rng.uniform(2, 6))
        token = login(camp, c, acc, ctx, rng, typo=k % 4 == 0)
        ctx.nap(rng.uniform(1, 3))
        if token:
            auth = {"Authorization": f"Bearer {token}"}
            camp.call(c, "GET", "/api/v1/users/me", headers=auth)
            r = camp.call(c, "GET", "/api/v1/orders?page=1", headers=auth)
            for o in [it["id"] for it in r.data.get("items", [])][:1]:
                ctx.nap(rng.uniform(2, 5))
                camp.call(c, "GET", f"/api/v1/orders/{o}", headers=auth)
        for _ in range(2):
            ctx.nap(rng.uniform(2, 6))
            camp.call(c, "GET", f"/api/v1/products/{rng.randint(1, N_PRODUCTS)}")

    threads = [threading.Thread(target=guarded, args=(visit, k), daemon=True) for k in range(len(CROWD))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def android_users(ctx: Ctx, camp: Campaign) -> None:
    """Five users of the Android app (the same client build the enumeration tools imitate): log in, find a few
    friends by phone number (half are not customers), then poll notifications and browse."""

    def life(k: int) -> None:
        rng = random.Random(SEED + 62 + k)
        acc = W.accounts[62 + k]
        c = Client(ctx.port, camp.addr(k), ANDROID_APP_UA, {"X-App-Version": "5.2.0"}, "okhttp")
        ctx.nap(10 + k * 40 + rng.uniform(0, 10))  # they open the app at different times of the run
        token = login(camp, c, acc, ctx, rng)
        while token is None:  # refused: the app shows an error, the user tries again a bit later
            ctx.nap(30)
            token = login(camp, c, acc, ctx, rng)
        auth = {"Authorization": f"Bearer {token}"}
        camp.call(c, "GET", "/api/v1/users/me", headers=auth)
        contacts = [a.phone for a in rng.sample(W.accounts, 4)] + [f"+1555020{rng.randint(0, 9999):04d}" for _ in range(4)]
        rng.shuffle(contacts)
        for ph in contacts:
            camp.call(c, "GET", "/api/v1/users/lookup?phone=" + urllib.parse.quote(ph), headers=auth)
            time.sleep(rng.uniform(0.5, 1.5))
        while True:
            camp.call(c, "GET", "/api/v1/notifications", headers=auth)
            camp.call(c, "GET", f"/api/v1/products?page={rng.randint(1, 30)}", headers=auth)
            ctx.nap(rng.uniform(10, 20))

    threads = [threading.Thread(target=guarded, args=(life, k), daemon=True) for k in range(5)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


# ---------------------------------------------------------------- attack campaigns

def run_list(ctx: Ctx, camp: Campaign, clients: list[Client], items: list[tuple[str, str, Any]], rate: float | None,
             cap: float, gain: Callable[[int, Resp], bool] | None = None, vary_ua: random.Random | None = None,
             headers: dict[str, str] | None = None, per_client: int = 1) -> None:
    """Sends the items in order, rotating over the clients (addresses) every per_client items; counts what the
    attacker gained."""
    for i in paced(ctx, camp, len(items), rate, cap):
        method, path, body = items[i]
        h = dict(headers or {})
        if vary_ua is not None:
            h["User-Agent"] = vary_ua.choice(BROWSER_UAS)
        r = camp.call(clients[(i // per_client) % len(clients)], method, path, body, h)
        if gain is not None and not r.bastion and gain(i, r):
            camp.gain += 1


def clients_for(ctx: Ctx, camp: Campaign, n: int, profile: str, ua: str = CHROME) -> list[Client]:
    """n instances of one attack tool, one per address. Each campaign is a different attacker whose tool sends
    its own locale (camp.lang), so that one campaign's headers do not give away another's."""
    camp.n_addr = max(camp.n_addr, n)
    return [Client(ctx.port, camp.addr(k), ua, profile=profile, lang=camp.lang) for k in range(n)]


def brute_force(ctx: Ctx, camp: Campaign) -> None:
    acc = W.accounts[BRUTE]
    pws = [p for p in common_passwords(300, random.Random(1)) if p != acc.password]
    pws.insert(250, acc.password)
    camp.gain_what, camp.gain_max = "password found", 1
    run_list(ctx, camp, clients_for(ctx, camp, 1, "requests"),
             [("POST", LOGIN, {"email": acc.email, "password": p}) for p in pws],
             10, 90, lambda i, r: r.status == 200)


def spraying(ctx: Ctx, camp: Campaign) -> None:
    rng = random.Random(2)
    emails = [a.email for a in W.accounts[:250]] + stranger_emails(50, rng)
    rng.shuffle(emails)
    camp.gain_what, camp.gain_max = "valid logins", 1
    run_list(ctx, camp, clients_for(ctx, camp, 1, "httpx"),
             [("POST", LOGIN, {"email": e, "password": SPRAY_PASSWORD}) for e in emails], 5, 100,
             lambda i, r: r.status == 200)


def stuffing(n_addr: int, vary: bool, seed: int) -> Callable[[Ctx, Campaign], None]:
    def run(ctx: Ctx, camp: Campaign) -> None:
        rng = random.Random(seed)
        combos, valid = combo_list(300, rng, 0.02)
        camp.gain_what, camp.gain_max = "valid logins", valid
        # a browser-faithful stuffing tool (OpenBullet-style config): Chrome's headers, in Chrome's order
        run_list(ctx, camp, clients_for(ctx, camp, n_addr, "chrome"),
                 [("POST", LOGIN, {"email": e, "password": p}) for e, p in combos], 10, 90,
                 lambda i, r: r.status == 200, vary_ua=rng if vary else None)
    return run


def careful_stuffing(ctx: Ctx, camp: Campaign) -> None:
    """A careful bot on 30 residential proxies: one consistent browser identity per proxy (its UA with that
    browser's headers), and it loads the catalog before each login as a person would."""
    rng = random.Random(36)
    combos, valid = combo_list(300, rng, 0.02)
    camp.gain_what, camp.gain_max = "valid logins", valid
    camp.n_addr = 30
    clients = [Client(ctx.port, camp.addr(k), BROWSER_UAS[k % len(BROWSER_UAS)], lang=camp.lang) for k in range(30)]
    items: list[tuple[str, str, Any]] = []
    for e, p in combos:
        items += [("GET", f"/api/v1/products?page={rng.randint(1, 5)}", None), ("POST", LOGIN, {"email": e, "password": p})]
    run_list(ctx, camp, clients, items, 20, 90, lambda i, r: items[i][0] == "POST" and r.status == 200, per_client=2)


def takeover_session(camp: Campaign, c: Client, token: str) -> int:
    """What an attacker does with a taken-over account: look, lock the owner out, cash out."""
    auth = {"Authorization": f"Bearer {token}"}
    steps: list[tuple[str, str, Any]] = [
        ("GET", "/api/v1/users/me", None),
        ("GET", "/api/v1/users/me/payment-methods", None),
        ("PATCH", "/api/v1/users/me", {"email": "parcel.drop.77@proton.me", "phone": "+447700900123"}),
        ("GET", "/api/v1/orders?page=1", None),
        ("POST", "/api/v1/orders", {"items": [{"product_id": 4242, "qty": 3}], "payment_method": "pm_saved_1",
                                    "ship_to": {"name": "J. Doe", "line1": "12 Depot Rd", "city": "Newark"}}),
    ]
    ok = 0
    for method, path, body in steps:
        r = camp.call(c, method, path, body, auth, actor="takeover-session")
        ok += not r.bastion and r.status < 400
        time.sleep(1.0)
    return ok


def takeover(fresh: Campaign) -> Callable[[Ctx, Campaign], None]:
    def run(ctx: Ctx, camp: Campaign) -> None:
        rng = random.Random(7)
        victim = W.accounts[ATO_VICTIM]
        combos, _ = combo_list(200, rng, 0.0)
        combos.insert(150, (victim.email, victim.password))
        clients = clients_for(ctx, camp, 5, "chrome")
        camp.gain_what, camp.gain_max = "login + 5 session steps", 6
        token: list[tuple[Client, str]] = []

        def hit(i: int, r: Resp) -> bool:
            if r.status == 200 and r.data.get("token"):
                token.append((clients[i % 5], str(r.data["token"])))
                return True
            return False

        run_list(ctx, camp, clients, [("POST", LOGIN, {"email": e, "password": p}) for e, p in combos], 10, 60, hit)
        if token:
            camp.gain += takeover_session(camp, *token[0])
        # the verified credential is then used from a clean residential proxy, as stuffing crews sell 'hits'
        fresh.t0 = time.monotonic()
        fresh.gain_what, fresh.gain_max = "login + 5 session steps", 6
        c = Client(ctx.port, fresh.addr(0), BROWSER_UAS[7])
        r = fresh.call(c, "POST", LOGIN, {"email": victim.email, "password": victim.password})
        if not r.bastion and r.data.get("token"):
            fresh.gain += 1 + takeover_session(fresh, c, str(r.data["token"]))
    return run


def reset_enum(n: int, n_addr: int, vary: bool) -> Callable[[Ctx, Campaign], None]:
    def run(ctx: Ctx, camp: Campaign) -> None:
        rng = random.Random(n + n_addr)
        emails, known = mixed_emails(n, rng, 0.10)
        camp.gain_what, camp.gain_max = "accounts confirmed", known
        run_list(ctx, camp, clients_for(ctx, camp, n_addr, "aiohttp"),
                 [("POST", "/api/v1/auth/password-reset", {"email": e}) for e in emails], 20, 130,
                 lambda i, r: r.status == 200, vary_ua=rng if vary else None)
    return run


def phone_enum(first: int, n: int, n_addr: int, rate: float, cap: float, ua: str = ANDROID_APP_UA
               ) -> Callable[[Ctx, Campaign], None]:
    """The app's own lookup API called by a script that copies the Android app's headers (Twitter 2022)."""
    def run(ctx: Ctx, camp: Campaign) -> None:
        phones = [f"+1555010{k:04d}" for k in range(first, first + n)]
        camp.gain_what, camp.gain_max = "users found", sum(p in W.by_phone for p in phones)
        run_list(ctx, camp, clients_for(ctx, camp, n_addr, "okhttp", ua),
                 [("GET", "/api/v1/users/lookup?phone=" + urllib.parse.quote(p), None) for p in phones], rate, cap,
                 lambda i, r: r.status == 200)
    return run


def email_enum(ctx: Ctx, camp: Campaign) -> None:
    emails, known = mixed_emails(500, random.Random(5), 0.15)
    camp.gain_what, camp.gain_max = "users found", known
    run_list(ctx, camp, clients_for(ctx, camp, 1, "okhttp", ANDROID_APP_UA),
             [("GET", "/api/v1/users/lookup?email=" + urllib.parse.quote(e), None) for e in emails], 20, 60,
             lambda i, r: r.status == 200)


def bola(mode: str, n_addr: int, acct: int, profile: str, ua: str) -> Callable[[Ctx, Campaign], None]:
    def run(ctx: Ctx, camp: Campaign) -> None:
        rng = random.Random(acct)
        clients = clients_for(ctx, camp, n_addr, profile, ua)
        tok = login(camp, clients[0], W.accounts[acct], ctx, rng)
        if tok is None:
            camp.notes.append("the attacker's own login was refused: nothing to walk with")
            return
        ids = list(range(100000, 100300)) if mode == "seq" else [rng.randint(100000, 101300) for _ in range(300)]
        mine = {o for o, u in W.orders.items() if u == W.accounts[acct].uid}
        camp.gain_what = "ids probed (403/404 oracle)"
        camp.gain_max = sum(o not in mine for o in ids)
        run_list(ctx, camp, clients, [("GET", f"/api/v1/orders/{o}", None) for o in ids], 5, 90,
                 lambda i, r: ids[i] not in mine and r.status in (403, 404),
                 headers={"Authorization": f"Bearer {tok}"})
    return run


def scrape(n_addr: int, rate: float | None, vary: bool, profile: str) -> Callable[[Ctx, Campaign], None]:
    def run(ctx: Ctx, camp: Campaign) -> None:
        camp.gain_what, camp.gain_max = "catalog pages copied", 500
        run_list(ctx, camp, clients_for(ctx, camp, n_addr, profile),
                 [("GET", f"/api/v1/products?page={p}", None) for p in range(1, 501)], rate, 70,
                 lambda i, r: r.status == 200, vary_ua=random.Random(9) if vary else None)
    return run


def scanner(ctx: Ctx, camp: Campaign) -> None:
    paths = scan_paths(400, random.Random(11))
    camp.gain_what, camp.gain_max = "paths probed", len(paths)
    run_list(ctx, camp, clients_for(ctx, camp, 1, "go"), [("GET", p, None) for p in paths], 20, 40, lambda i, r: True)


def hammer(ctx: Ctx, camp: Campaign) -> None:
    """Four keep-alive connections from one address hitting the search endpoint as fast as it answers, 5 s."""
    clients = clients_for(ctx, camp, 1, "bare") + [Client(ctx.port, camp.addr(0), CHROME, profile="bare") for _ in range(3)]

    def loop(c: Client) -> None:
        while time.monotonic() - camp.t0 < 5:
            camp.call(c, "GET", "/api/v1/search?q=running+shoes&sort=relevance")

    threads = [threading.Thread(target=loop, args=(c,), daemon=True) for c in clients]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    camp.notes.append(f"{len(camp.recs) / 5:.0f} req/s offered")


def giftcards(ctx: Ctx, camp: Campaign) -> None:
    rng = random.Random(13)
    c = clients_for(ctx, camp, 1, "requests")
    tok = login(camp, c[0], W.accounts[ATTACKER_ACCOUNTS[3]], ctx, rng)
    if tok is None:
        camp.notes.append("the attacker's own login was refused")
        return
    codes = [gift_code(rng) for _ in range(499)]
    codes.insert(450, W.gift_codes[2])  # a lucky hit late in the run: was the attacker stopped before it?
    camp.gain_what, camp.gain_max = "valid code redeemed", 1
    run_list(ctx, camp, c, [("POST", "/api/v1/gift-cards/redeem", {"code": k}) for k in codes], 10, 60,
             lambda i, r: r.status == 200, headers={"Authorization": f"Bearer {tok}"})


def otp_brute(ctx: Ctx, camp: Campaign) -> None:
    """The victim's password is known (phished); the attacker guesses the SMS code, which has no attempt limit."""
    c = clients_for(ctx, camp, 1, "httpx")
    acc = W.accounts[OTP_VICTIM]
    r = camp.call(c[0], "POST", LOGIN, {"email": acc.email, "password": acc.password})
    cid = str(r.data.get("challenge_id", ""))
    if not cid:
        camp.notes.append("login refused: no challenge to brute force")
        return
    right = otp_code(cid)
    codes = [f"{k:06d}" for k in range(600) if f"{k:06d}" != right][:499]
    codes.insert(450, right)  # as if the code space were small enough to be hit in 451 guesses
    camp.gain_what, camp.gain_max = "code found", 1
    run_list(ctx, camp, c, [("POST", "/api/v1/otp/verify", {"challenge_id": cid, "code": k}) for k in codes], 10, 60,
             lambda i, r: r.status == 200)


# ---------------------------------------------------------------- the run

def campaigns() -> list[tuple[Campaign, Callable[[Ctx, Campaign], None]]]:
    fresh = Campaign("ATO: the hit reused from a fresh address", "attack", 130, 0)
    a = "attack"
    out: list[tuple[Campaign, Callable[[Ctx, Campaign], None]]] = [
        (Campaign("users (12, one typo for 4, 2FA for 3)", "legit", 20, 0, 12), regular_users),
        (Campaign("office: 30 accounts behind one address", "legit", 21, 0), office),
        (Campaign("mobile app polling every second", "legit", 22, 0), mobile_poller),
        (Campaign("integration: API key, 500 own orders", "legit", 23, 20), integration),
        (Campaign("forgot password (2 fails, 2 resets)", "legit", 24, 30), forgot_password),
        (Campaign("support agent: 20 lookups by email", "legit", 25, 0), support_agent),
        (Campaign("android app users (5), find 8 friends each", "legit", 26, 0, 5), android_users),
        (Campaign("one-off visitors (40), same Chrome build", "legit", 27, 0, 40), chrome_crowd),
        # same tool defaults as the integration's python-requests: a deliberate overlap
        (Campaign("brute force 1 account, 1 addr", a, 101, 10), brute_force),
        (Campaign("password spraying, 1 addr", a, 102, 15), spraying),
        # exactly Chrome's headers, as the office's browsers send: a deliberate overlap
        (Campaign("stuffing, 1 addr", a, 103, 20), stuffing(1, False, 31)),
        (Campaign("stuffing, 5 addr, shared UA", a, 104, 30, lang="de-DE,de;q=0.9,en;q=0.8"), stuffing(5, False, 32)),
        (Campaign("stuffing, 5 addr, varying UA", a, 105, 40, lang="fr-FR,fr;q=0.9"), stuffing(5, True, 33)),
        (Campaign("stuffing, 30 addr, shared UA", a, 106, 50, lang="es-ES,es;q=0.9"), stuffing(30, False, 34)),
        (Campaign("stuffing, 30 addr, varying UA", a, 107, 60, lang="pt-BR,pt;q=0.9"), stuffing(30, True, 35)),
        (Campaign("stuffing, 30 addr, browser per addr, GET first", a, 109, 75, lang="en-AU,en;q=0.9"), careful_stuffing),
        (Campaign("ATO: stuffing 5 addr then session", a, 108, 70, lang="it-IT,it;q=0.9"), takeover(fresh)),
        (fresh, lambda ctx, camp: None),
        (Campaign("reset enumeration, 2000 emails, 1 addr", a, 110, 25, lang="nl-NL"), reset_enum(2000, 1, False)),
        (Campaign("reset enumeration, 20 addr, varying UA", a, 111, 90, lang="pl-PL"), reset_enum(1000, 20, True)),
        (Campaign("phone lookup 1000, 1 addr", a, 112, 35, lang="es-MX"), phone_enum(0, 1000, 1, 20, 70)),
        (Campaign("phone lookup 1000, 20 addr", a, 113, 100, lang="tr-TR"), phone_enum(1000, 1000, 20, 20, 70)),
        (Campaign("email lookup 500, 1 addr", a, 114, 120, lang="ja-JP"), email_enum),
        # the Android app's own headers, as the legitimate app users send: a deliberate overlap
        (Campaign("slow phone enumeration, 1 per 2 s", a, 115, 5), phone_enum(2000, 90, 1, 0.5, 190, SLOW_ENUM_UA)),
        (Campaign("BOLA sequential ids, 1 addr", a, 116, 45), bola("seq", 1, ATTACKER_ACCOUNTS[0], "curl", "curl/8.5.0")),
        (Campaign("BOLA random ids, 1 addr", a, 117, 110), bola("random", 1, ATTACKER_ACCOUNTS[1], "node", "axios/1.6.8")),
        (Campaign("BOLA one token, 30 addr", a, 118, 130), bola("random", 30, ATTACKER_ACCOUNTS[2], "go",
                                                                "Go-http-client/1.1")),
        (Campaign("catalog scrape, 1 addr, full speed", a, 119, 80), scrape(1, None, False, "scrapy")),
        (Campaign("catalog scrape, 20 addr, varying UA", a, 120, 140, lang="en-GB,en;q=0.9"), scrape(20, 10, True, "chrome")),
        (Campaign("404 scanner (word list), 1 addr", a, 121, 55, lang="ko-KR"), scanner),
        (Campaign("hammer one endpoint, 1 addr, 5 s", a, 122, 150), hammer),
        (Campaign("gift-card brute force, 1 addr", a, 123, 160, lang="sv-SE"), giftcards),
        (Campaign("OTP brute force, 1 addr", a, 124, 170, lang="da-DK"), otp_brute),
    ]
    return out


def wait_listening(port: int, proc: subprocess.Popen[bytes], seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


@contextlib.contextmanager
def gateway(keep: bool) -> Iterator[tuple[int, str]]:
    """The sample API and a default `bastion proxy` in front of it (admin on a free port, so runs can overlap).
    Retried on fresh ports when a start fails (another process may take a port between pick and bind)."""
    bastion = os.path.join(os.path.dirname(sys.executable), "bastion")
    data = tempfile.mkdtemp(prefix="bastion-campaigns-")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _attempt in range(3):
            up_port, gw_port, admin_port = free_port(), free_port(), free_port()
            up = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve-upstream", str(up_port)])
            with open(os.path.join(data, "gateway.log"), "ab") as log:
                gw = subprocess.Popen([bastion, "proxy", "--upstream", f"http://127.0.0.1:{up_port}", "--listen",
                                       f"127.0.0.1:{gw_port}", "--data-dir", data, "--admin",
                                       f"127.0.0.1:{admin_port}"], stdout=subprocess.DEVNULL, stderr=log)
            procs += [gw, up]
            if wait_listening(up_port, up, 30) and wait_listening(gw_port, gw, 60):
                break
            for p in (gw, up):
                p.terminate()
                p.wait(15)
        else:
            with open(os.path.join(data, "gateway.log"), "rb") as log:
                tail = log.read()[-2000:].decode(errors="replace")
            raise SystemExit(f"the gateway did not start; the end of its log:\n{tail}")
        yield gw_port, data
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(15)
        if not keep:
            shutil.rmtree(data, ignore_errors=True)


def summarize(camp: Campaign) -> dict[str, Any]:
    recs = sorted(camp.recs, key=lambda r: r.t)
    refused = [(k, r) for k, r in enumerate(recs, 1) if r.resp.bastion]
    first = refused[0] if refused else None
    through = sum(not r.resp.bastion for r in recs)
    return {
        "sent": len(recs), "refused": len(refused), "through": through,
        # '*': refused from its first request on, so by what an earlier campaign taught Bastion (or a signature)
        "first": f"#{first[0]}{'*' if first[0] == 1 else ''} {first[1].t:5.1f}s {first[1].resp.status}" if first else "-",
        "answers": " ".join(f"{s}x{n}" for s, n in Counter(r.resp.status for _, r in refused).most_common()),
        "upstream": " ".join(f"{s}x{n}" for s, n in Counter(r.resp.status for r in recs
                                                            if not r.resp.bastion).most_common(4)),
        "slow": sum(r.resp.latency >= 0.9 for r in recs),
        "gain": f"{camp.gain}/{camp.gain_max} {camp.gain_what}" if camp.gain_what else "-",
        "recs": recs, "refused_recs": refused,
    }


DECISIVE = ("password found", "valid logins", "login + 5 session steps", "valid code redeemed", "code found")


def event_reasons(data: str) -> dict[str, str]:
    """request id -> why Bastion refused it, from its own event store (what an operator reads, not the code)."""
    bastion = os.path.join(os.path.dirname(sys.executable), "bastion")
    out = subprocess.run([bastion, "events", "list", "--data-dir", data, "--json", "-n", "100000"],
                         capture_output=True, text=True, timeout=300).stdout
    reasons: dict[str, str] = {}
    for line in out.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        findings = e.get("findings", [])
        msgs = [f["message"] for f in findings if f.get("action") == "block"] or [f["message"] for f in findings]
        reasons[e.get("request_id", "")] = "; ".join(dict.fromkeys(msgs))[:220]
    return reasons


def answer(r: Rec, reasons: dict[str, str]) -> str:
    why = reasons.get(r.resp.request_id, "")
    return f"{r.resp.status} {r.resp.problem.split(' Retry-After')[0]}" + (f" <- {why}" if why else "")


def report(plan: list[tuple[Campaign, Callable[[Ctx, Campaign], None]]], reasons: dict[str, str]) -> None:
    print()
    print(f"{'ATTACK CAMPAIGN':46s} {'addr':>4s} {'sent':>5s} {'first refusal':>16s} {'through':>8s} "
          f"{'slow':>4s}  {'Bastion answers':18s} gain")
    print("-" * 130)
    attacks = [c for c, _ in plan if c.kind == "attack"]
    legit = [c for c, _ in plan if c.kind == "legit"]
    sums = {c.name: summarize(c) for c, _ in plan}
    for c in attacks:
        s = sums[c.name]
        pct = 100 * s["through"] / s["sent"] if s["sent"] else 0
        print(f"{c.name:46s} {c.n_addr:4d} {s['sent']:5d} {s['first']:>16s} {pct:7.1f}% {s['slow']:4d}  "
              f"{s['answers'] or '-':18s} {s['gain']}")
    print("('first refusal': request number, seconds after the campaign's start, status; '*': from its very first "
          "request; 'slow': answers that took >= 0.9 s)")
    print()
    print(f"{'LEGITIMATE ACTOR':46s} {'addr':>4s} {'sent':>5s} {'refused':>8s} {'slow':>5s}  upstream statuses")
    print("-" * 130)
    for c in legit:
        s = sums[c.name]
        print(f"{c.name:46s} {c.n_addr:4d} {s['sent']:5d} {s['refused']:8d} {s['slow']:5d}  {s['upstream']}")
    n_att = sum(sums[c.name]["sent"] for c in attacks)
    blocked = sum(bool(sums[c.name]["refused"]) for c in attacks)
    n_leg = sum(sums[c.name]["sent"] for c in legit)
    bad = sum(sums[c.name]["refused"] for c in legit)
    shares = [sums[c.name]["through"] / max(sums[c.name]["sent"], 1) for c in attacks]
    won = sum(bool(c.gain) for c in attacks if c.gain_what in DECISIVE)
    print()
    # the mean of per-campaign shares: one fast campaign (the hammer) must not outweigh all the others
    print(f"campaigns refused at least once: {blocked}/{len(attacks)}; mean share of a campaign's requests through: "
          f"{100 * sum(shares) / max(len(shares), 1):.1f}% ({n_att} attack requests); campaigns where the attacker "
          f"won (a password, login, code): {won}; legitimate requests refused: {bad}/{n_leg} "
          f"({100 * bad / max(n_leg, 1):.2f}%) in {sum(bool(sums[c.name]['refused']) for c in legit)}/{len(legit)} actors")

    print("\nLEGITIMATE REQUESTS REFUSED BY BASTION (first 6 per actor, then every kind)")
    if not bad:
        print("  none")
    for c in legit:
        refused = sums[c.name]["refused_recs"]
        for k, r in refused[:6]:
            print(f"  {c.name[:26]:26s} #{k:<4d} t={r.t:6.1f}s {r.actor:15s} {r.method} {r.path[:48]} -> {answer(r, reasons)}")
        if len(refused) > 6:
            kinds = Counter(f"{r.method} {r.path.split('?')[0]}" for _, r in refused)
            print(f"  {c.name[:26]:26s} ... {len(refused)} in all: " + "; ".join(f"{k} x{n}" for k, n in kinds.most_common(5)))

    print("\nCAMPAIGNS NOT STOPPED (never refused, or half of their requests through, or the attacker won)")
    for c in attacks:
        s = sums[c.name]
        share = s["through"] / max(s["sent"], 1)
        if s["refused"] and share < 0.5 and not (c.gain and c.gain_what in DECISIVE):
            continue
        what = "never refused" if not s["refused"] else f"refused {s['refused']}x, first {s['first'].strip()}"
        print(f"  {c.name}: {what}; {100 * share:.0f}% through; the API answered {s['upstream'] or '-'}; "
              f"gain {s['gain']}" + (f"; {'; '.join(c.notes)}" if c.notes else ""))
        for _k, r in s["refused_recs"][:1]:
            print(f"      Bastion's first refusal: {answer(r, reasons)}")

    print("\nWHY EACH CAMPAIGN WAS FIRST REFUSED, AND WHAT BASTION ANSWERED")
    for c in attacks:
        s = sums[c.name]
        if not s["refused_recs"]:
            continue
        k, first = s["refused_recs"][0]
        kinds = Counter(f"{r.resp.status} {r.resp.problem.split(' Retry-After')[0]}" for _, r in s["refused_recs"])
        after = sum(not r.resp.bastion for r in s["recs"][k:])
        print(f"  {c.name}: #{k} {answer(first, reasons)}")
        print(f"      answers: {'; '.join(f'{a} x{n}' for a, n in kinds.most_common(3))}; "
              f"{after} requests still reached the API after the first refusal"
              + (f"; {'; '.join(c.notes)}" if c.notes else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--keep", action="store_true", help="keep the gateway's data dir and log")
    args = ap.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return
    with gateway(args.keep) as (port, data):
        probe = Client(port, "127.0.0.2", CHROME).call("GET", "/api/v1/health")
        if probe.bastion or probe.status != 200:
            print(f"gateway not answering with the upstream: {probe}")
            return
        plan = campaigns()
        ctx = Ctx(port, time.monotonic(), legit_end=235, hard_end=250)
        print(f"gateway on 127.0.0.1:{port} (data {data}); {len(plan)} campaigns, about 4.5 minutes")

        def start(camp: Campaign, fn: Callable[[Ctx, Campaign], None]) -> None:
            ctx.sleep_until(camp.start)
            camp.t0 = time.monotonic()
            guarded(fn, ctx, camp)

        threads = [threading.Thread(target=start, args=(c, f), daemon=True) for c, f in plan]
        for th in threads:
            th.start()
        for th in threads:
            th.join(max(1.0, ctx.t0 + ctx.hard_end + 30 - time.monotonic()))
        print(f"run took {ctx.now():.0f} s")
        time.sleep(2)  # the event writer flushes every 0.5 s
        reasons = event_reasons(data)
    report(plan, reasons)


if __name__ == "__main__":
    main()
