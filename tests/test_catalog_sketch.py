"""Sketches and shapes: quantiles, decayed rates, heavy hitters, distinct counts, schema inference."""

from __future__ import annotations

import random

from bastion.catalog.shapes import MAX_PROPS, Shape
from bastion.catalog.sketch import DecayedRate, Distinct, LatencySketch, TopK


def test_latency_quantiles_within_a_few_percent() -> None:
    r = random.Random(1)
    xs = [r.lognormvariate(-4, 1) for _ in range(20_000)]
    s = LatencySketch()
    for x in xs:
        s.add(x)
    xs.sort()
    for q in (0.5, 0.95, 0.99):
        exact = xs[int(q * (len(xs) - 1))]
        assert abs(s.quantile(q) - exact) / exact < 0.06
    assert len(s.buckets) < 250
    a, b = LatencySketch(), LatencySketch()
    for i, x in enumerate(xs):
        (a if i % 2 else b).add(x)
    a.merge(b)
    assert a.count == s.count and abs(a.quantile(0.95) - s.quantile(0.95)) < 1e-9
    assert LatencySketch.from_dict(s.to_dict()).quantile(0.5) == s.quantile(0.5)


def test_decayed_rate() -> None:
    r = DecayedRate(half_life=60)
    for i in range(600):
        r.add(1000.0 + i * 0.5)  # 2 per second for 5 minutes
    assert 1.8 < r.rate(1300.0) < 2.1
    assert r.rate(1300.0 + 600) < 0.01
    other = DecayedRate.from_dict(r.to_dict(), 60)
    other.merge(r)
    assert abs(other.rate(1300.0) - 2 * r.rate(1300.0)) < 1e-9


def test_topk_keeps_heavy_hitters_in_bounded_memory() -> None:
    t = TopK(5)
    for i in range(10_000):
        t.add("heavy" if i % 3 == 0 else f"noise{i}")
    assert len(t.counts) <= 5
    assert t.top(1)[0][0] == "heavy"


def test_distinct_estimate() -> None:
    d = Distinct()
    for i in range(5000):
        d.add(f"10.0.{i // 256}.{i % 256}")
    assert 3500 < d.estimate() < 6500
    e = Distinct.from_dict(d.to_dict())
    e.merge(d)
    assert e.estimate() == d.estimate()


def test_shape_types_required_and_nullable() -> None:
    s = Shape()
    for i in range(20):
        s.observe({"id": i, "price": 1.5 if i % 2 else 2, "tag": None if i % 3 else "x", "opt": {"a": [1, 2]}}
                  if i % 4 else {"id": i, "price": 1, "tag": "x"})
    sch = s.json_schema()
    assert sch["properties"]["id"]["type"] == "integer"
    assert sch["properties"]["price"]["type"] == "number"
    assert sch["properties"]["tag"]["type"] == ["string", "null"]
    assert sch["properties"]["opt"]["properties"]["a"]["items"]["type"] == "integer"
    assert sch["required"] == ["id", "price", "tag"]
    assert Shape.from_dict(s.to_dict()).json_schema() == sch


def test_maps_keyed_by_ids_become_open_objects() -> None:
    s = Shape()
    s.observe({str(i): {"v": i} for i in range(MAX_PROPS + 10)})
    assert s.open and s.props == {}
    assert "additionalProperties" not in s.json_schema()


def test_enums_only_for_small_closed_sets() -> None:
    small, big = Shape(), Shape()
    for i in range(100):
        small.observe_text(["asc", "desc"][i % 2])
        big.observe_text(f"user{i}")
    assert small.json_schema(text=True)["enum"] == ["asc", "desc"]
    assert "enum" not in big.json_schema(text=True) and big.enum is None
