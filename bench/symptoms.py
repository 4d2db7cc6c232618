"""Cost of the symptoms detector per exchange: `python bench/symptoms.py [--scopes 200] [--rate 100]`.

Feeds generated finished exchanges (200 endpoints, 2% 404s, 10-60 ms latencies) through
`SymptomsDetector.complete` on a manual clock advancing 1/rate s per exchange, so bucket rollovers
(every 10 s of simulated time, over every endpoint scope) are included at their real frequency.
Prints the thread CPU time per exchange, median of 5 runs, and a same-run baseline: the loop with a
no-op hook.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time

from bastion.config import BastionConfig
from bastion.detect.symptoms import SymptomsDetector
from bastion.engine.registry import BuildContext
from bastion.exchange import Exchange, Headers, Response
from bastion.testing import ManualClock, make_exchange


def exchanges(n: int, scopes: int) -> list[Exchange]:
    rng = random.Random(1)
    out = []
    for i in range(n):
        ex = make_exchange("GET", f"/r{i % scopes}/{i}")
        ex.route = f"/r{i % scopes}/{{id}}"
        ex.response = Response(status=404 if rng.random() < 0.02 else 200, headers=Headers())
        ex.duration = rng.uniform(0.01, 0.06)
        out.append(ex)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scopes", type=int, default=200)
    ap.add_argument("--rate", type=float, default=100.0, help="simulated requests per second")
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # the symptoms this synthetic traffic raises are not the point
    exs = exchanges(5000, args.scopes)
    clock = ManualClock()
    det = SymptomsDetector(BastionConfig().symptoms, BuildContext(clock=clock, services={}))
    step = 1.0 / args.rate

    other = ManualClock()

    def noop(ex: Exchange) -> None:
        other.now()

    runs: dict[str, list[float]] = {"symptoms": [], "baseline": []}
    for _ in range(5):
        for name, hook in (("baseline", noop), ("symptoms", det.complete)):
            t = time.thread_time()
            c = clock if name == "symptoms" else other
            for _ in range(4):
                for ex in exs:
                    hook(ex)
                    c.advance(step)
            runs[name].append((time.thread_time() - t) / (4 * len(exs)) * 1e6)
    base, cost = statistics.median(runs["baseline"]), statistics.median(runs["symptoms"])
    print(f"symptoms.complete: {cost:.2f} us/exchange (baseline loop {base:.2f} us, net {cost - base:.2f} us), "
          f"{len(det.scopes)} scopes, {args.rate:g} req/s simulated")


if __name__ == "__main__":
    main()
