"""Catalog learning cost and memory, and schema validation cost per request.

    .venv/bin/python bench/catalog.py [--exchanges 20000] [--distinct 100000] [--runs 5]

1. Learning: the catalog learner's `observe` over generated traffic of the ~40-endpoint test API
   (tests/catalog_traffic.py), µs per exchange, median of `--runs` runs over a learner warmed
   with the same traffic once;
   the baseline is the same loop calling an empty function (the cost of the loop itself).
   Reported twice: in steady state (sampling after the first 100 exchanges of an endpoint) and
   with every exchange inspected in full (full_samples huge) as the worst case.
2. Memory: tracemalloc's view of the learner after `--distinct` exchanges with distinct paths,
   three ways: a scanner's 404s, invented paths a catch-all answers with 200, and distinct ids
   under the real templates.
3. Validation: the schema detector (spec exported from the learned catalog) on a typical JSON
   POST body and on a GET with query parameters, µs per request (request_headers + request_body);
   baseline: orjson.loads of the same body.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bastion.catalog.learner import Learner, LearnerLimits
from bastion.catalog.openapi import export_openapi
from bastion.catalog.settings import SpecConfig
from bastion.catalog.spec import parse_spec
from bastion.detect.schema import SchemaDetector
from bastion.exchange import Headers, Response
from bastion.testing import make_exchange
from catalog_traffic import HOST, SPECS, make_call, to_exchange, traffic


def _noop(_ex: object) -> None:
    return None


_REF_DOC = orjson.dumps({"users": [{"id": i, "name": "Ada Lovelace", "email": f"u{i}@example.com", "active": True}
                                   for i in range(12)]})


def reference(runs: int) -> float:
    """A machine-speed yardstick measured in the same run: µs to orjson.loads a ~1 KB JSON document.
    On a shared, busy machine every figure moves with it; the ratios to it move much less."""
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        for _ in range(20_000):
            orjson.loads(_REF_DOC)
        out.append((time.perf_counter() - t) / 20_000 * 1e6)
    return statistics.median(out)


def learning(n: int, runs: int, full: bool) -> tuple[float, float, float]:
    """Median µs per exchange, median ratio to the reference measured right before each run,
    and the loop baseline."""
    calls = list(traffic(n, seed=11))
    exchanges = [to_exchange(c, 1_700_000_000.0 + i) for i, c in enumerate(calls)]
    limits = LearnerLimits(full_samples=10**9) if full else LearnerLimits()
    per, base, ratios = [], [], []
    for _ in range(runs):
        lr = Learner(limits)
        for ex in exchanges:  # warm: templates exist and first samples are taken, as in a running gateway
            lr.observe(ex)
        for ex in exchanges:
            ex.route = ""
        gc.collect()
        ref = reference(1)
        t = time.perf_counter()
        for ex in exchanges:
            lr.observe(ex)
        per.append((time.perf_counter() - t) / len(exchanges) * 1e6)
        ratios.append(per[-1] / ((ref + reference(1)) / 2))
        t = time.perf_counter()
        for ex in exchanges:
            _noop(ex)
        base.append((time.perf_counter() - t) / len(exchanges) * 1e6)
    return statistics.median(per), statistics.median(ratios), statistics.median(base)


def memory(distinct: int, how: str) -> tuple[float, int, int]:
    r = random.Random(5)
    gc.collect()
    tracemalloc.start()
    lr = Learner()
    for i in range(distinct):
        if how == "scanner-404":
            path = f"/{r.choice(['admin', 'wp', 'api', 'backup'])}/{i:x}{r.getrandbits(24):x}.php"
            status = 404
        elif how == "catch-all-200":
            path = "/" + "/".join(f"w{r.getrandbits(20):x}" for _ in range(r.randint(1, 4)))
            status = 200
        else:
            spec = SPECS[i % len(SPECS)]
            c = make_call(spec, r)
            path, status = c.target.split("?")[0], c.status
        ex = make_exchange("GET", path, host=HOST)
        ex.started = 1_700_000_000.0 + i
        ex.response = Response(status, Headers())
        lr.observe(ex)
    gc.collect()
    current, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return current / 1e6, lr.n_endpoints, lr.budget[0]


def memory_traffic(n: int) -> tuple[float, int]:
    """The whole catalog (shapes, sketches, sensitive tags) of the test API after `n` exchanges."""
    calls = list(traffic(n, seed=11))
    gc.collect()
    tracemalloc.start()
    lr = Learner()
    for i, c in enumerate(calls):
        lr.observe(to_exchange(c, 1_700_000_000.0 + i))  # each exchange is dropped, as after a real response
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return current / 1e6, lr.n_endpoints


def validation(runs: int, reps: int) -> dict[str, tuple[float, float, float]]:
    lr = Learner()
    for i, c in enumerate(traffic(4000, seed=11)):
        lr.observe(to_exchange(c, 1_700_000_000.0 + i))
    det = SchemaDetector(parse_spec(export_openapi(lr.endpoints())), SpecConfig(path=Path("bench.yaml")))
    r = random.Random(2)
    post = next(s for s in SPECS if s.method == "POST" and s.template == "/api/v1/users")
    get = next(s for s in SPECS if s.template == "/api/v1/users" and s.method == "GET")
    search = next(s for s in SPECS if s.template == "/api/v1/search")
    out = {}
    for label, spec in (("POST /api/v1/users (JSON body)", post), ("POST /api/v1/search (nested JSON)", search),
                        ("GET /api/v1/users?page&sort", get)):
        calls = [make_call(spec, r) for _ in range(200)]
        exs = [to_exchange(c) for c in calls]
        per, base, ratios = [], [], []
        for _ in range(runs):
            ref = reference(1)
            t = time.perf_counter()
            for _ in range(reps // len(exs)):
                for ex in exs:
                    ex.findings.clear()
                    ex.route = ""
                    det.request_headers(ex)
                    det.request_body(ex)
            per.append((time.perf_counter() - t) / reps * 1e6)
            ratios.append(per[-1] / ((ref + reference(1)) / 2))
            t = time.perf_counter()
            for _ in range(reps // len(exs)):
                for ex in exs:
                    if ex.request.body:
                        orjson.loads(ex.request.body)
            base.append((time.perf_counter() - t) / reps * 1e6)
        assert not any(ex.findings for ex in exs), "benign traffic must pass its own spec"
        out[label] = (statistics.median(per), statistics.median(ratios), statistics.median(base))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exchanges", type=int, default=20_000)
    ap.add_argument("--distinct", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    print(f"python {sys.version.split()[0]}; {a.exchanges} exchanges x {a.runs} runs")
    ref = reference(a.runs)
    print(f"reference: orjson.loads of a {len(_REF_DOC)}-byte JSON document: {ref:.2f} us")
    for full in (False, True):
        us, ratio, base = learning(a.exchanges, a.runs, full)
        label = "every exchange inspected" if full else "steady state (sampled)"
        print(f"learning, {label:26s}: {us:6.2f} us/exchange = {ratio:4.1f}x the reference measured "
              f"around each run (loop baseline {base:.2f} us)")
    for how in ("scanner-404", "catch-all-200", "ids-under-templates"):
        mb, eps, nodes = memory(a.distinct, how)
        print(f"memory, {a.distinct} distinct paths, {how:20s}: {mb:6.2f} MB, {eps} endpoints, {nodes} nodes")
    mb, eps = memory_traffic(a.exchanges)
    print(f"memory, the test API's catalog after {a.exchanges} exchanges: {mb:6.2f} MB, {eps} endpoints")
    for label, (us, ratio, base) in validation(a.runs, 20_000).items():
        print(f"validation {label:34s}: {us:6.2f} us/request = {ratio:4.1f}x reference "
              f"(orjson.loads of its body alone {base:.2f} us)")
    print(f"reference again: {reference(a.runs):.2f} us")


if __name__ == "__main__":
    main()
