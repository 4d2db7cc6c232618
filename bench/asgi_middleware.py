"""Added latency of BastionMiddleware in a FastAPI app, measured in-process (no sockets, no server).

Usage: .venv/bin/python bench/asgi_middleware.py [--seconds 2] [--requests 2000]

Each variant serves the same requests by calling the ASGI app directly: a GET with a query and a
POST with a ~1 KB JSON body. Variants alternate round by round, and time is the process's CPU time
(`time.process_time`), because the machine is shared and wall time mostly measures the neighbours.
The script prints the median CPU time per request of each variant, and what Bastion adds over the
bare app measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fastapi import FastAPI, Request  # noqa: E402

from bastion.clock import ManualClock  # noqa: E402
from bastion.frontends.asgi import BastionMiddleware  # noqa: E402
from bastion.runtime import Runtime  # noqa: E402
from bastion.testing import make_config  # noqa: E402

HEADERS = [
    (b"host", b"api.example.com"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
    (b"accept", b"application/json"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"authorization", b"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl"),
]
BODY = (
    b'{"customer": {"name": "Zo\xc3\xab O\'Brien", "email": "zoe@example.com"}, "items": ['
    + b",".join(b'{"sku": "SKU-%d", "qty": %d, "note": "select the blue one"}' % (i, i) for i in range(12))
    + b'], "comment": "Please drop it at the door; thanks!"}'
)


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/api/v1/users/{uid}/orders")
    async def orders(uid: int, page: int = 1) -> dict[str, Any]:
        return {"user": uid, "page": page, "orders": [{"id": 1, "total": 12.5}]}

    @app.post("/api/v1/orders")
    async def create(request: Request) -> dict[str, Any]:
        body = await request.body()
        return {"ok": True, "size": len(body)}

    return app


async def call(app: Any, method: str, path: str, query: bytes, body: bytes) -> int:
    headers = list(HEADERS)
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query, "headers": headers,
             "client": ("198.51.100.7", 50000), "server": ("127.0.0.1", 8000), "root_path": ""}
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def variants() -> dict[str, Any]:
    out: dict[str, Any] = {"bare": make_app()}
    cfg = make_config({"logging": {"events_to_log": False}})
    core = Runtime.create(cfg, clock=ManualClock(), with_store=False, only={"decisions", "limits", "protocol"})
    out["bastion core (decisions+limits+protocol)"] = BastionMiddleware(make_app(), runtime=core)
    try:
        full = Runtime.create(cfg, with_store=False)
        out["bastion default detectors"] = BastionMiddleware(make_app(), runtime=full)
    except Exception as exc:  # a detector under construction elsewhere must not stop the benchmark
        print(f"note: default detectors unavailable ({type(exc).__name__}: {exc})")
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0, help="time budget per variant and request kind")
    ap.add_argument("--requests", type=int, default=2000, help="requests per round")
    args = ap.parse_args()
    apps = variants()
    kinds = {
        "GET  /api/v1/users/42/orders?page=2": ("GET", "/api/v1/users/42/orders", b"page=2", b""),
        f"POST /api/v1/orders ({len(BODY)} B JSON)": ("POST", "/api/v1/orders", b"", BODY),
    }
    for kind, (method, path, query, body) in kinds.items():
        samples: dict[str, list[float]] = {name: [] for name in apps}
        for app in apps.values():  # warm-up, and a check that every variant serves the request
            assert await call(app, method, path, query, body) == 200
        deadline = time.monotonic() + args.seconds * len(apps)
        while time.monotonic() < deadline:
            for name, app in apps.items():
                n = max(1, args.requests // 10)
                t0 = time.process_time()
                for _ in range(n):
                    await call(app, method, path, query, body)
                samples[name].append((time.process_time() - t0) / n * 1e6)
        base = statistics.median(samples["bare"])
        print(kind)
        for name, values in samples.items():
            med = statistics.median(values)
            extra = "" if name == "bare" else f"  (+{med - base:.1f} us, x{med / base:.2f})"
            print(f"  {name:45s} {med:8.1f} us CPU/request  [{len(values)} rounds]{extra}")


if __name__ == "__main__":
    asyncio.run(main())
