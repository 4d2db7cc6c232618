"""False-positive rate of the real engine on the benign corpus (tests/data/benign_requests.jsonl).

Usage: .venv/bin/python bench/corpus_benign.py [--corpus FILE] [--show N] [--checkers]

Every request goes through the pipeline that the proxy builds (bastion.engine.build_pipeline with the
default config, via bastion.testing.inspect_request), each from its own client address so that rate
limits and behaviour scenarios don't mix requests. Prints the share of requests blocked, the rules
responsible, the share by request kind, and the rules that fired without blocking (observe/score below
threshold). `--checkers` also runs sqli_check/xss_check directly on every value (query arguments, form
fields, JSON leaves) to measure the confirmation checks alone. Regenerate the corpus with
bench/make_benign.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bastion.detect.sqli import sqli_check  # noqa: E402
from bastion.detect.xss import xss_check  # noqa: E402
from bastion.engine.registry import DETECTORS  # noqa: E402
from bastion.testing import inspect_request, make_config, make_pipeline  # noqa: E402

DEFAULT = ROOT / "tests" / "data" / "benign_requests.jsonl"


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build():
    """The default pipeline; detectors whose module is not there yet are left out (and named)."""
    try:
        return make_pipeline(make_config()), []
    except (ImportError, AttributeError) as exc:
        print(f"note: full default pipeline failed to build ({type(exc).__name__}: {exc})")
    missing, ok = [], set()
    for name, _spec in DETECTORS:
        try:
            make_pipeline(make_config(), only={name})
            ok.add(name)
        except (ImportError, AttributeError):
            missing.append(name)
    return make_pipeline(make_config(), only=ok), missing


def values(req: dict) -> list[str]:
    """Values a zone parser would hand to the checks: query args, form fields, JSON leaves, raw text."""
    out: list[str] = []
    target = req["target"]
    if "?" in target:
        for k, v in parse_qsl(target.split("?", 1)[1], keep_blank_values=True):
            out += [k, v]
    body, ct = req.get("body", ""), req.get("content_type", "")
    if not body:
        return out
    if "json" in ct:
        def walk(o: object) -> None:
            if isinstance(o, dict):
                for k, v in o.items():
                    out.append(str(k))
                    walk(v)
            elif isinstance(o, list):
                for v in o:
                    walk(v)
            elif isinstance(o, str):
                out.append(o)
        walk(json.loads(body))
    elif "x-www-form-urlencoded" in ct:
        for k, v in parse_qsl(body, keep_blank_values=True):
            out += [k, v]
    elif ct.startswith("text/plain"):
        out.append(body)
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=DEFAULT)
    ap.add_argument("--show", type=int, default=10, help="print up to N blocked requests")
    ap.add_argument("--checkers", action="store_true", help="also run sqli_check/xss_check on every value")
    a = ap.parse_args()
    rows = load(a.corpus)
    pipeline, missing = build()
    names = [d.name for d in pipeline.detectors]
    print(f"corpus: {len(rows)} requests from {a.corpus}")
    print(f"detectors: {', '.join(names)}" + (f"  (not available: {', '.join(missing)})" if missing else ""))

    blocked = 0
    by_rule: Counter[str] = Counter()
    fired: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    shown = 0
    t0 = time.perf_counter()
    for i, req in enumerate(rows):
        kinds[req["kind"]] += 1
        ip = f"198.18.{(i >> 8) & 255}.{i & 255}"
        ex, verdict = await inspect_request(pipeline, req["method"], req["target"],
                                            headers=[tuple(h) for h in req["headers"]],
                                            body=req.get("body", "").encode("utf-8"), client_ip=ip)
        for f in ex.findings:
            fired[f.rule_id] += 1
        if verdict.blocks:
            blocked += 1
            by_kind[req["kind"]] += 1
            rules = sorted({f.rule_id for f in ex.findings if f.score or f.action})
            for r in rules:
                by_rule[r] += 1
            if shown < a.show:
                shown += 1
                detail = "; ".join(f"{f.rule_id} {f.zone}:{f.name} {f.evidence!r}" for f in ex.findings)[:300]
                print(f"  BLOCKED {req['id']} {req['kind']} {req['method']} {req['target'][:60]} -> {detail}")
    elapsed = time.perf_counter() - t0
    print()
    print(f"blocked {blocked}/{len(rows)} = {100 * blocked / max(1, len(rows)):.2f}%  (target <= 0.5%)")
    print(f"time: {elapsed:.2f} s, {1e3 * elapsed / max(1, len(rows)):.3f} ms/request (whole pipeline, incl. Python overhead)")
    if by_rule:
        print("rules responsible for blocks:")
        for r, c in by_rule.most_common():
            print(f"  {r:24s} {c}")
    if by_kind:
        print("blocked share by request kind:")
        for k, c in by_kind.most_common():
            print(f"  {k:16s} {c}/{kinds[k]}")
    others = {r: c for r, c in fired.items() if r not in by_rule}
    if others:
        print("rules that fired without being responsible for a block:")
        for r, c in sorted(others.items(), key=lambda kv: -kv[1]):
            print(f"  {r:24s} {c}")

    if a.checkers:
        n = s_hits = x_hits = 0
        examples: list[str] = []
        for req in rows:
            for v in values(req):
                n += 1
                s, x = sqli_check(v), xss_check(v)
                s_hits += s is not None
                x_hits += x is not None
                if (s or x) and len(examples) < a.show:
                    examples.append(f"  {req['id']} {v[:80]!r} -> {s or x}")
        print(f"\ncheckers alone over {n} values: sqli flagged {s_hits}, xss flagged {x_hits}")
        for e in examples:
            print(e)


if __name__ == "__main__":
    asyncio.run(main())
