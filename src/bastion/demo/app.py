"""A small shop API to put Bastion in front of: login, users, orders, product search, reviews and a
profile lookup by email (the kind of endpoint that lets one attacker enumerate every account).

A plain ASGI app with in-memory data, deterministic so demos and tests see the same answers. It is
deliberately naive (it trusts its input): the point is to show what the gateway stops before it.
"""

from __future__ import annotations

import hashlib
import random
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 1024 * 1024
_ID = r"(\d+)"

FIRST = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Niaj"]
LAST = ["Martin", "Nguyen", "Okafor", "Schmidt", "Rossi", "Tanaka", "Dubois", "Kowalski", "Silva", "Haddad"]
CITIES = ["Lyon", "Austin", "Osaka", "Porto", "Leeds", "Gdansk", "Accra", "Montreal", "Bergen", "Valencia"]
CATALOG = [
    ("Desk lamp", "lighting", 39.9, "Adjustable LED desk lamp with a dimmer and warm/cool modes."),
    ("Floor lamp", "lighting", 89.0, "Arc floor lamp, brushed steel, E27 socket."),
    ("Ergonomic chair", "furniture", 249.0, "Mesh back, lumbar support, 4D armrests."),
    ("Standing desk", "furniture", 399.0, "Electric sit-stand desk, 140x70 cm, memory presets."),
    ("Mechanical keyboard", "electronics", 119.0, "Hot-swappable switches, PBT keycaps, USB-C."),
    ("Wireless mouse", "electronics", 49.5, "Silent clicks, 70-day battery, Bluetooth and 2.4 GHz."),
    ("27-inch monitor", "electronics", 279.0, "QHD IPS panel, 75 Hz, height-adjustable stand."),
    ("Noise-cancelling headphones", "audio", 199.0, "Over-ear, 30 h battery, multipoint pairing."),
    ("Bookshelf speakers", "audio", 149.0, "Passive two-way speakers, walnut veneer, pair."),
    ("Notebook, dotted", "stationery", 12.5, "A5, 160 pages of 100 g/m2 paper, lay-flat binding."),
    ("Fountain pen", "stationery", 34.0, "Steel nib (F), converter and two cartridges included."),
    ("Children's book set", "books", 24.9, "Five illustrated stories for ages 4-7."),
    ("Coffee grinder", "kitchen", 79.0, "Conical burr grinder with 40 grind settings."),
    ("French press", "kitchen", 29.0, "1 L borosilicate glass, double stainless filter."),
    ("Water bottle", "outdoor", 19.9, "Insulated, 750 ml, keeps drinks cold for 24 h."),
    ("Trail backpack", "outdoor", 129.0, "28 L, rain cover, ventilated back panel."),
]


@dataclass(slots=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Awaitable[tuple[int, Any]]]


def _password_hash(password: str) -> str:
    return hashlib.sha256(("demo-salt:" + password).encode()).hexdigest()


class ShopApp:
    """The demo shop. `ShopApp()` is an ASGI application."""

    def __init__(self, seed: int = 7) -> None:
        rnd = random.Random(seed)
        self.users: list[dict[str, Any]] = []
        self._passwords: dict[str, str] = {}
        for i in range(12):
            first, last = FIRST[i], LAST[i % len(LAST)]
            email = f"{first.lower()}.{last.lower()}@example.com" if i else "alice@example.com"
            self.users.append(
                {
                    "id": i + 1,
                    "name": f"{first} {last}",
                    "email": email,
                    "city": CITIES[i % len(CITIES)],
                    "member_since": f"20{18 + i % 7}-{1 + i % 12:02d}-{3 + i:02d}",
                    "role": "admin" if i == 0 else "customer",
                }
            )
            self._passwords[email] = _password_hash("wonderland" if i == 0 else f"pass-{first.lower()}-{i}")
        self.products: list[dict[str, Any]] = [
            {"id": i + 1, "sku": f"SKU-{1000 + i * 7}", "name": name, "category": cat, "price": price,
             "currency": "EUR", "description": desc, "stock": rnd.randint(0, 120),
             "rating": round(rnd.uniform(3.2, 4.9), 1)}
            for i, (name, cat, price, desc) in enumerate(CATALOG)
        ]
        self.orders: list[dict[str, Any]] = []
        for i in range(30):
            items: list[dict[str, Any]] = [
                {"product_id": p["id"], "name": p["name"], "qty": rnd.randint(1, 3), "unit_price": p["price"]}
                for p in rnd.sample(self.products, rnd.randint(1, 3))
            ]
            self.orders.append(
                {"id": 5000 + i, "user_id": 1 + i % len(self.users), "items": items,
                 "total": round(sum(it["qty"] * it["unit_price"] for it in items), 2), "currency": "EUR",
                 "status": rnd.choice(["paid", "shipped", "delivered", "delivered"]),
                 "created_at": f"2026-{1 + i % 11:02d}-{1 + i % 28:02d}T{8 + i % 12:02d}:{i * 7 % 60:02d}:00Z"}
            )
        self.reviews: list[dict[str, Any]] = []
        self.tokens: dict[str, int] = {}
        self._rnd = rnd
        r = re.compile
        self.routes = [
            Route("GET", r(r"/"), self.index),
            Route("GET", r(r"/health"), self.health),
            Route("POST", r(r"/api/login"), self.login),
            Route("GET", r(r"/api/users"), self.list_users),
            Route("GET", r(r"/api/users/(\d+)"), self.get_user),
            Route("GET", r(r"/api/users/(\d+)/orders"), self.user_orders),
            Route("GET", r(r"/api/profile"), self.profile_by_email),
            Route("GET", r(r"/api/products"), self.search_products),
            Route("GET", r(r"/api/products/(\d+)"), self.get_product),
            Route("GET", r(r"/api/orders"), self.list_orders),
            Route("POST", r(r"/api/orders"), self.create_order),
            Route("GET", r(r"/api/orders/(\d+)"), self.get_order),
            Route("GET", r(r"/api/reviews"), self.list_reviews),
            Route("POST", r(r"/api/reviews"), self.create_review),
        ]

    # --- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > MAX_BODY:
                await self._send(send, 413, {"error": "payload too large"})
                return
        status, payload = await self.dispatch(scope["method"], scope["path"], scope.get("query_string", b""), body)
        await self._send(send, status, payload)

    async def dispatch(self, method: str, path: str, query: bytes, body: bytes) -> tuple[int, Any]:
        path = path.rstrip("/") or "/"
        allowed = False
        for route in self.routes:
            m = route.pattern.fullmatch(path)
            if m is None:
                continue
            if route.method != method and not (method == "HEAD" and route.method == "GET"):
                allowed = True
                continue
            args = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))
            try:
                return await route.handler(args, body, *m.groups())
            except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
                return 400, {"error": "bad request", "detail": type(exc).__name__}
        if allowed:
            return 405, {"error": "method not allowed"}
        return 404, {"error": "not found", "path": path}

    @staticmethod
    async def _send(send: Send, status: int, payload: Any) -> None:
        data = orjson.dumps(payload)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                (b"server", b"demo-shop/1.0")]})
        await send({"type": "http.response.body", "body": data})

    # --- handlers ----------------------------------------------------------------------------

    async def index(self, args: dict[str, str], body: bytes) -> tuple[int, Any]:
        endpoints = [f"{r.method} {r.pattern.pattern.replace(_ID, '{id}')}" for r in self.routes]
        return 200, {"name": "Bastion demo shop", "endpoints": endpoints}

    async def health(self, args: dict[str, str], body: bytes) -> tuple[int, Any]:
        return 200, {"status": "ok"}

    async def login(self, args: dict[str, str], body: bytes) -> tuple[int, Any]:
        data = orjson.loads(body or b"{}")
        email, password = str(data.get("email", "")), str(data.get("password", ""))
        if not email or not password:
            return 400, {"error": "email and password are required"}
        if self._passwords.get(email.lower()) != _password_hash(password):
            return 401, {"error": "invalid email or password"}
        user = next(u for u in self.users if u["email"] == email.lower())
        token = secrets.token_hex(16)
        self.tokens[token] = user["id"]
        return 200, {"token": token, "token_type": "bearer", "expires_in": 3600,
                     "user": {"id": user["id"], "name": user["name"]}}

    def _public(self, user: dict[str, Any]) -> dict[str, Any]:
        return {k: user[k] for k in ("id", "name", "city", "member_since")}

    async def list_users(self, args: dict[str, str], body: bytes) -> tuple[int, Any]:
        limit, offset = min(int(args.get("limit", 20)), 100), int(args.get("offset", 0))
        page = self.users[offset : offset + limit]
        return 200, {"users": [self._public(u) for u in page], "total": len(self.users), "offset": offset}

    async def get_user(self, args: dict[str, str], body: bytes, uid: str) -> tuple[int, Any]:
        user = next((u for u in self.users if u["id"] == int(uid)), None)
        if user is None:
            return 404, {"error": "user not found"}
        return 200, user

    async def user_orders(self, args: dict[str, str], body: bytes, uid: str) -> tuple[int, Any]:
        orders = [o for o in self.orders if o["user_id"] == int(uid)]
        return 200, {"user_id": int(uid), "orders": orders}

    async def profile_by_email(self, args: dict[str, str], body: bytes) -> tuple[int, Any]:
        email = args.get("email", "").lower()
        user = next((u for u in self.users if u["email"] == email), None)
        if user is None:
            return 404, {"error": "no account with this email"}
        return 200, {"id": user["id"], "name": user["name"], "email": user["email"], "city": user["city"]}

    async def search_products(self, args: dict[str, str], body: bytes) -> tuple[int, Any]:
        q = args.get("q", "").lower()
        cat = args.get("category", "")
        limit = min(int(args.get("limit", 10)), 50)
        hits = [
            p for p in self.products
            if (not q or q in p["name"].lower() or q in p["description"].lower()) and (not cat or p["category"] == cat)
        ]
        return 200, {"query": args.get("q", ""), "count": len(hits), "products": hits[:limit]}

    async def get_product(self, args: dict[str, str], body: bytes, pid: str) -> tuple[int, Any]:
        p = next((p for p in self.products if p["id"] == int(pid)), None)
        return (200, p) if p is not None else (404, {"error": "product not found"})

    async def list_orders(self, args: dict[str, str], body: bytes) -> tuple[int, Any]:
        orders = self.orders
        if "user_id" in args:
            orders = [o for o in orders if o["user_id"] == int(args["user_id"])]
        return 200, {"orders": orders[:50], "count": len(orders)}

    async def get_order(self, args: dict[str, str], body: bytes, oid: str) -> tuple[int, Any]:
        o = next((o for o in self.orders if o["id"] == int(oid)), None)
        return (200, o) if o is not None else (404, {"error": "order not found"})

    async def create_order(self, args: dict[str, str], body: bytes) -> tuple[int, Any]:
        data = orjson.loads(body or b"{}")
        items: list[dict[str, Any]] = []
        for it in data.get("items", []):
            p = next((p for p in self.products if p["id"] == int(it["product_id"])), None)
            if p is None:
                return 422, {"error": f"unknown product {it['product_id']}"}
            items.append({"product_id": p["id"], "name": p["name"], "qty": int(it.get("qty", 1)),
                          "unit_price": p["price"]})
        if not items:
            return 422, {"error": "an order needs at least one item"}
        order = {"id": 5000 + len(self.orders), "user_id": int(data.get("user_id", 1)), "items": items,
                 "total": round(sum(i["qty"] * i["unit_price"] for i in items), 2), "currency": "EUR",
                 "status": "pending", "created_at": "2026-11-23T12:00:00Z"}
        self.orders.append(order)
        return 201, order

    async def list_reviews(self, args: dict[str, str], body: bytes) -> tuple[int, Any]:
        return 200, {"reviews": self.reviews[-50:]}

    async def create_review(self, args: dict[str, str], body: bytes) -> tuple[int, Any]:
        data = orjson.loads(body or b"{}")
        review = {"id": len(self.reviews) + 1, "product_id": int(data["product_id"]),
                  "rating": max(1, min(5, int(data.get("rating", 5)))), "text": str(data.get("text", ""))[:2000]}
        self.reviews.append(review)
        return 201, review


def create_app() -> ShopApp:
    return ShopApp()
