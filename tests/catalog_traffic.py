"""A test API of ~40 endpoints of varied shapes, and seeded generated traffic for it.

Shapes: nested ids, uuids, hashes, emails, dates, opaque tokens, slugs, per-tenant words, versioned
prefixes, `/me` siblings, JSON, form and multipart bodies, query parameters with enums. Each
generated request carries the response the API would give. Used by the catalog tests and bench.
"""

from __future__ import annotations

import base64
import hashlib
import random
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from bastion.exchange import Exchange, Headers, Response
from bastion.testing import make_exchange

HOST = "api.test"
Gen = Callable[[random.Random], Any]

_WORDS = ("pasta", "bread", "garden", "rust", "python", "ocean", "winter", "coffee", "guitar", "travel",
          "budget", "camera", "forest", "mountain", "kitchen", "running", "reading", "design", "history")
TENANTS = [f"{a}{b}" for a in ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka")
           for b in ("", "corp", "labs", "group", "inc")]


def _slug(r: random.Random) -> str:
    words = r.sample(_WORDS, r.randint(2, 4))
    if r.random() < 0.3:
        words.insert(r.randint(0, len(words)), str(r.randint(1, 99)))
    return "-".join(words)


def _uuid(r: random.Random) -> str:
    return str(uuid.UUID(int=r.getrandbits(128), version=4))


def _sha1(r: random.Random) -> str:
    return hashlib.sha1(r.getrandbits(64).to_bytes(8, "big")).hexdigest()


def _token(r: random.Random) -> str:
    while True:
        t = base64.urlsafe_b64encode(r.getrandbits(128).to_bytes(16, "big")).decode().rstrip("=")
        if sum(c.isdigit() for c in t) >= 3:
            return t


def _email(r: random.Random) -> str:
    return f"{r.choice(_WORDS)}.{r.randint(1, 9999)}@example.{r.choice(['com', 'org', 'net'])}"


def _date(r: random.Random) -> str:
    return f"202{r.randint(0, 5)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"


def _id(r: random.Random) -> str:
    return str(r.randint(1, 500_000))


def _name(r: random.Random) -> str:
    return " ".join(w.capitalize() for w in r.sample(_WORDS, 2))


PATH_GENS: dict[str, Gen] = {"id": _id, "uuid": _uuid, "hash": _sha1, "token": _token, "email": _email,
                             "date": _date, "name": _slug, "tenant": lambda r: r.choice(TENANTS)}


@dataclass
class Spec:
    method: str
    template: str  # true template; {kind} names say how to generate the value
    query: dict[str, tuple[Gen, float]] = field(default_factory=dict)  # name -> (value, presence)
    body: Gen | None = None
    form: bool = False
    multipart: bool = False
    response: Gen | None = None
    status: int = 200
    weight: float = 1.0
    headers: dict[str, Gen] = field(default_factory=dict)

    def normalized(self) -> str:
        return normalize(self.template)


def normalize(template: str) -> str:
    """Templates compared by shape: parameter names are cosmetic."""
    return "/".join("{}" if s.startswith("{") else s for s in template.split("/"))


def _user(r: random.Random) -> dict[str, Any]:
    return {"id": r.randint(1, 500_000), "name": _name(r), "email": _email(r), "created": "2024-03-01T10:00:00Z",
            "active": r.random() < 0.8, "role": r.choice(["admin", "member", "viewer"])}


def _order(r: random.Random) -> dict[str, Any]:
    return {"id": _uuid(r), "total": round(r.uniform(1, 500), 2), "status": r.choice(["new", "paid", "shipped"]),
            "items": [{"sku": f"SKU-{r.randint(100, 999)}", "qty": r.randint(1, 5)} for _ in range(r.randint(1, 3))]}


def _product(r: random.Random) -> dict[str, Any]:
    return {"id": r.randint(1, 9999), "title": _name(r), "price": round(r.uniform(1, 99), 2), "stock": r.randint(0, 50)}


def _page(r: random.Random) -> str:
    return str(r.randint(1, 20))


def _enum(*vals: str) -> Gen:
    return lambda r: r.choice(vals)


def _list(item: Gen) -> Gen:
    return lambda r: [item(r) for _ in range(r.randint(0, 3))]


SPECS: list[Spec] = [
    Spec("GET", "/health", response=lambda r: {"status": "ok"}, weight=2),
    Spec("GET", "/api/v1/users", query={"page": (_page, 0.7), "per_page": (_enum("10", "20", "50"), 0.5),
                                        "sort": (_enum("asc", "desc"), 0.3)}, response=_list(_user), weight=2),
    Spec("POST", "/api/v1/users", body=lambda r: {"name": _name(r), "email": _email(r), "age": r.randint(18, 90)},
         response=_user, status=201),
    Spec("GET", "/api/v1/users/{id}", response=_user, weight=3),
    Spec("PUT", "/api/v1/users/{id}", body=lambda r: {"name": _name(r), "email": _email(r)}, response=_user),
    Spec("DELETE", "/api/v1/users/{id}", status=204),
    Spec("GET", "/api/v1/users/me", response=_user, weight=3),
    Spec("PATCH", "/api/v1/users/me", body=lambda r: {"name": _name(r)}, response=_user),
    Spec("GET", "/api/v1/users/{id}/orders", query={"status": (_enum("new", "paid", "shipped"), 0.4)},
         response=_list(_order)),
    Spec("GET", "/api/v1/users/{id}/orders/{uuid}", response=_order),
    Spec("GET", "/api/v1/users/{id}/avatar"),
    Spec("GET", "/api/v1/orders", query={"status": (_enum("new", "paid", "shipped"), 0.5), "from": (_date, 0.3)},
         response=_list(_order)),
    Spec("POST", "/api/v1/orders", body=lambda r: {"items": [{"sku": f"SKU-{r.randint(100, 999)}",
                                                               "qty": r.randint(1, 5)}],
                                                   "coupon": r.choice([None, "SPRING"])}, response=_order,
         status=201),
    Spec("GET", "/api/v1/orders/{uuid}", response=_order, weight=2),
    Spec("GET", "/api/v1/orders/{uuid}/items/{id}", response=lambda r: {"sku": "SKU-1", "qty": 1}),
    Spec("GET", "/api/v2/users/{id}", response=_user),
    Spec("GET", "/api/v2/users/me", response=_user),
    Spec("GET", "/api/v1/products", query={"q": (lambda r: r.choice(_WORDS), 0.5),
                                           "category": (_enum("books", "music", "games"), 0.4),
                                           "limit": (_page, 0.3)}, response=_list(_product), weight=2),
    Spec("GET", "/api/v1/products/{id}", response=_product, weight=3),
    Spec("GET", "/api/v1/products/{id}/reviews", response=_list(lambda r: {"stars": r.randint(1, 5)})),
    Spec("POST", "/api/v1/products/{id}/reviews", body=lambda r: {"stars": r.randint(1, 5), "text": _name(r)},
         status=201),
    Spec("PUT", "/api/v1/products/{id}/inventory",
         body=lambda r: {"quantity": r.randint(0, 100), "warehouse": r.choice(["east", "west"])}),
    Spec("GET", "/api/v1/articles/{name}", response=lambda r: {"title": _name(r), "body": "text"}, weight=2),
    Spec("GET", "/api/v1/articles/search", query={"q": (lambda r: r.choice(_WORDS), 1.0)},
         response=_list(lambda r: {"title": _name(r)})),
    Spec("GET", "/api/v1/files/{hash}"),
    Spec("GET", "/api/v1/reports/{date}", response=lambda r: {"total": r.randint(0, 9999)}),
    Spec("GET", "/api/v1/accounts/{email}", response=lambda r: {"plan": r.choice(["free", "pro"])}),
    Spec("POST", "/login", form=True, body=lambda r: {"username": r.choice(_WORDS), "password": _token(r)},
         status=302, weight=2),
    Spec("POST", "/logout", status=204),
    Spec("GET", "/api/v1/categories", response=_list(lambda r: {"id": r.randint(1, 50), "name": r.choice(_WORDS)})),
    Spec("GET", "/api/v1/categories/{id}/products", query={"limit": (_page, 0.5)}, response=_list(_product)),
    Spec("GET", "/api/v1/tenants/{tenant}/settings", response=lambda r: {"theme": r.choice(["dark", "light"])}),
    Spec("GET", "/api/v1/tenants/{tenant}/users", response=_list(_user)),
    Spec("POST", "/api/v1/search", body=lambda r: {"query": r.choice(_WORDS),
                                                   "filters": {"in_stock": r.random() < 0.5,
                                                               "max_price": r.randint(5, 500)}},
         response=_list(_product)),
    Spec("GET", "/api/v1/notifications", headers={"X-Client-Version": _enum("1.2.0", "1.3.1")},
         response=_list(lambda r: {"id": r.randint(1, 9), "read": r.random() < 0.5})),
    Spec("GET", "/api/v1/sessions/{token}", response=lambda r: {"expires": "2024-03-01T10:00:00Z"}),
    Spec("DELETE", "/api/v1/sessions/{token}", status=204),
    Spec("POST", "/api/v1/uploads", multipart=True, status=201, response=lambda r: {"id": _uuid(r)}),
    Spec("GET", "/api/v1/admin/stats", response=lambda r: {"users": r.randint(1, 10**6)}),
    Spec("GET", "/api/v1/admin/users/{id}/audit", response=_list(lambda r: {"at": "2024-03-01T10:00:00Z"})),
    Spec("POST", "/api/v1/payments", body=lambda r: {"amount": round(r.uniform(1, 300), 2),
                                                     "currency": r.choice(["EUR", "USD"]), "token": _token(r)},
         response=lambda r: {"id": _uuid(r), "state": "authorized"}, status=201),
]


@dataclass
class Call:
    spec: Spec
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    status: int
    resp_headers: list[tuple[str, str]]
    resp_body: bytes


def _fill(template: str, r: random.Random) -> str:
    out = []
    for seg in template.split("/"):
        if seg.startswith("{"):
            out.append(PATH_GENS[seg[1:-1]](r))
        else:
            out.append(seg)
    return "/".join(out)


def make_call(spec: Spec, r: random.Random) -> Call:
    path = _fill(spec.template, r)
    args = [(k, gen(r)) for k, (gen, p) in spec.query.items() if p >= 1.0 or r.random() < p]
    target = path + ("?" + "&".join(f"{k}={v}" for k, v in args) if args else "")
    headers = [("Host", HOST), ("User-Agent", "test-client/1.0"), ("Accept", "application/json")]
    if r.random() < 0.8:
        headers.append(("Authorization", "Bearer " + _token(r)))
    for k, gen in spec.headers.items():
        headers.append((k, gen(r)))
    body = b""
    if spec.body is not None:
        doc = spec.body(r)
        if spec.form:
            body = "&".join(f"{k}={v}" for k, v in doc.items()).encode()
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        else:
            body = orjson.dumps(doc)
            headers.append(("Content-Type", "application/json"))
    elif spec.multipart:
        body = b"--xyz\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nhello\r\n--xyz--\r\n"
        headers.append(("Content-Type", "multipart/form-data; boundary=xyz"))
    resp_headers: list[tuple[str, str]] = []
    resp_body = b""
    if spec.response is not None:
        resp_body = orjson.dumps(spec.response(r))
        resp_headers.append(("Content-Type", "application/json"))
    return Call(spec, spec.method, target, headers, body, spec.status, resp_headers, resp_body)


def scanner_call(r: random.Random) -> Call:
    """A vulnerability scanner's probe: random paths that the API answers with 404."""
    name = "".join(r.choice(string.ascii_lowercase) for _ in range(r.randint(3, 10)))
    path = r.choice([f"/{name}.php", f"/admin/{name}", f"/.{name}", f"/api/v1/{name}", f"/wp-content/{name}/x",
                     f"/api/v1/users/{name}/{name}", f"/backup/{name}.zip"])
    return Call(SPECS[0], r.choice(["GET", "POST"]), path, [("Host", HOST)], b"", 404,
                [("Content-Type", "text/html")], b"<h1>Not found</h1>")


def traffic(n: int, seed: int = 7, scanner: float = 0.1) -> Iterator[Call]:
    r = random.Random(seed)
    weights = [s.weight for s in SPECS]
    for _ in range(n):
        if r.random() < scanner:
            yield scanner_call(r)
        else:
            yield make_call(r.choices(SPECS, weights)[0], r)


def to_exchange(call: Call, started: float = 1_700_000_000.0, ip: str = "10.0.0.1") -> Exchange:
    ex = make_exchange(call.method, call.target, headers=call.headers, body=call.body, client_ip=ip, host=None)
    ex.started = started
    ex.duration = 0.012
    ex.response = Response(status=call.status, headers=Headers(list(call.resp_headers)), body=call.resp_body,
                           body_size=len(call.resp_body))
    return ex


def truth() -> set[tuple[str, str]]:
    return {(s.method, s.normalized()) for s in SPECS}


def _fix_weights() -> None:
    # ids rarely repeat; tenants do: both must template the same.
    assert len(SPECS) >= 40


_fix_weights()
