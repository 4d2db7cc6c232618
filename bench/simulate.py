"""Behaviour simulation: `python bench/simulate.py [--benign N] [--attackers N] [--hours H] [--seed S]`.

Generated benign users and attackers of every kind through the real engine with a manual clock;
prints recall, requests before the block (median, p90) per scenario and benign users ever hit.
Same as `bastion simulate`. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bastion.detect.behaviour.simulate import run_simulation


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--benign", type=int, default=1000)
    ap.add_argument("--attackers", type=int, default=6)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--behaviour-only", action="store_true", help="only the decisions/risk/behaviour detectors")
    args = ap.parse_args()
    only = {"decisions", "risk", "behaviour"} if args.behaviour_only else None
    report = asyncio.run(run_simulation(benign=args.benign, attackers=args.attackers, hours=args.hours,
                                        seed=args.seed, only=only))
    print(report.text())
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
