"""CPU cost of the limits and protocol detectors per request (their hooks called directly).

Usage: .venv/bin/python bench/limits_protocol.py [--requests 5000] [--rounds 7]

Two typical requests: a GET with a query and five headers, and a POST with a ~1 KB JSON body.
Prints the median CPU time per request (`time.process_time`, the machine is shared) over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bastion.detect.limits import LimitsDetector  # noqa: E402
from bastion.detect.protocol import ProtocolDetector  # noqa: E402
from bastion.testing import make_config, make_exchange  # noqa: E402

HEADERS = [
    ("Host", "api.example.com"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
    ("Accept", "application/json"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl"),
    ("Connection", "keep-alive"),
]
BODY = b"[" + b",".join(
    [b'{"name": "Zoe O\'Brien", "items": [1, 2, 3], "note": "hello world, select the best"}'] * 12
) + b"]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    cfg = make_config()
    limits, protocol = LimitsDetector(cfg.limits), ProtocolDetector(cfg.protocol)
    cases = {
        "GET  /api/v1/users/42/orders?page=2&sort=-created&q=caf%C3%A9": (
            "GET", "/api/v1/users/42/orders?page=2&sort=-created&q=caf%C3%A9", HEADERS, b""),
        f"POST /api/v1/orders ({len(BODY)} B JSON)": (
            "POST", "/api/v1/orders", [*HEADERS, ("Content-Type", "application/json; charset=utf-8")], BODY),
    }
    for label, (method, target, headers, body) in cases.items():
        exchanges = [make_exchange(method, target, headers=headers, body=body) for _ in range(args.requests)]
        rounds = []
        for _ in range(args.rounds):
            t0 = time.process_time()
            for ex in exchanges:
                ex.findings.clear()
                limits.request_headers(ex)
                protocol.request_headers(ex)
                limits.request_body(ex)
                protocol.request_body(ex)
            rounds.append((time.process_time() - t0) / len(exchanges) * 1e6)
        assert not exchanges[0].findings, exchanges[0].findings
        print(f"{label}: {statistics.median(rounds):.1f} us CPU/request (median of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
