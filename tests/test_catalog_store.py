"""Persistence: the catalog survives restarts, merges workers, and is readable while written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from bastion.catalog.endpoint import Endpoint
from bastion.catalog.store import CatalogStore, read_catalog
from bastion.detect.catalog import CatalogDetector
from bastion.exchange import Response
from bastion.testing import make_config, make_exchange, make_pipeline, run_exchange, run_response
from catalog_traffic import HOST, to_exchange, traffic


def feed(det: CatalogDetector, n: int, seed: int = 7, start: int = 0) -> None:
    for i, c in enumerate(traffic(n, seed)):
        det.complete(to_exchange(c, 1_700_000_000.0 + start + i))


def by_key(eps: list[Endpoint]) -> dict[tuple[str, str, str], Endpoint]:
    return {e.key: e for e in eps}


async def test_flush_restart_and_adoption(tmp_path: Path) -> None:
    db = tmp_path / "catalog.db"
    cfg = make_config({"catalog": {"flush_interval": 1}}).catalog
    a = CatalogDetector(cfg, db)
    await a.startup()
    feed(a, 1500)
    assert await a.flush() > 30
    # Readable while the gateway runs: a read-only reader sees the flushed rows.
    live = by_key(read_catalog(db))
    assert live[(HOST, "GET", "/api/v1/users/{id}")].calls == a.learner.find(HOST, "GET", "/api/v1/users/{id}").calls
    await a.shutdown()

    # A restart: the new process adopts the cleanly stopped writer's rows at once.
    b = CatalogDetector(cfg, db)
    await b.startup()
    before = b.learner.find(HOST, "GET", "/api/v1/users/{id}")
    assert before is not None and before.calls == live[(HOST, "GET", "/api/v1/users/{id}")].calls
    feed(b, 500, seed=8, start=5000)
    await b.shutdown()
    after = by_key(read_catalog(db))
    assert after[(HOST, "GET", "/api/v1/users/{id}")].calls == b.learner.find(HOST, "GET", "/api/v1/users/{id}").calls
    writers = sqlite3.connect(db).execute("SELECT COUNT(DISTINCT writer) FROM endpoints").fetchone()[0]
    assert writers == 1


async def test_two_live_writers_are_merged_by_readers(tmp_path: Path) -> None:
    db = tmp_path / "catalog.db"
    cfg = make_config({}).catalog
    a, b = CatalogDetector(cfg, db), CatalogDetector(cfg, db)
    await a.startup()
    await b.startup()
    feed(a, 800, seed=1)
    feed(b, 800, seed=2)
    await a.flush()
    await b.flush()
    merged = by_key(read_catalog(db))
    key = (HOST, "GET", "/api/v1/products/{id}")
    ea, eb = a.learner.find(*key), b.learner.find(*key)
    assert ea is not None and eb is not None
    assert merged[key].calls == ea.calls + eb.calls
    await a.shutdown()
    await b.shutdown()


async def test_renamed_templates_replace_old_rows(tmp_path: Path) -> None:
    db = tmp_path / "catalog.db"
    det = CatalogDetector(make_config({}).catalog, db)
    await det.startup()
    for i in range(5):
        ex = make_exchange("GET", f"/posts/hello-world-{'abcdefghij'[i]}", host=HOST)
        ex.response = Response(200, ex.request.headers)
        det.complete(ex)
    await det.flush()
    assert len(read_catalog(db)) == 5
    for i in range(40):
        ex = make_exchange("GET", f"/posts/another-post-{i}x", host=HOST)
        ex.response = Response(200, ex.request.headers)
        det.complete(ex)
    await det.flush()
    assert [e.template for e in read_catalog(db)] == ["/posts/{name}"]
    await det.shutdown()


async def test_unwritable_data_dir_keeps_learning_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    det = CatalogDetector(make_config({}).catalog, blocker / "catalog.db")
    await det.startup()
    feed(det, 50)
    assert det.store is None and det.learner.endpoints()
    assert await det.flush() == 0
    await det.shutdown()


async def test_pipeline_registration_and_data_dir(tmp_path: Path) -> None:
    p = make_pipeline({"data_dir": str(tmp_path)}, only={"catalog"})
    await p.startup()
    ex = make_exchange("GET", "/orders/42", host=HOST, pipeline=p)
    await run_exchange(p, ex)
    await run_response(p, ex, 200, headers={"Content-Type": "application/json"}, body=b'{"id": 42}')
    assert ex.route == "/orders/{id}"
    await p.shutdown()
    assert [e.template for e in read_catalog(tmp_path / "catalog.db")] == ["/orders/{id}"]


def test_disabled_catalog_builds_no_detector() -> None:
    p = make_pipeline({"catalog": {"enabled": False}}, only={"catalog"})
    assert p.detectors == []


def test_damaged_rows_are_skipped(tmp_path: Path) -> None:
    db = tmp_path / "catalog.db"
    s = CatalogStore(db)
    ep = Endpoint(HOST, "GET", "/a")
    ep.calls = 3
    s.write("w1", [(HOST, "GET", "/a", 3, 0.0, orjson.dumps(ep.to_dict()))], replace_all=False)
    s.write("w1", [(HOST, "GET", "/b", 1, 0.0, b"{not json")], replace_all=False)
    s.close()
    assert [e.template for e in read_catalog(db)] == ["/a"]


def test_live_catalog_of_a_pipeline() -> None:
    from bastion.detect.catalog import live_catalog

    p = make_pipeline({"catalog": {"persist": False}}, only={"catalog"})
    lr = live_catalog(p)
    assert lr is not None and lr.endpoints() == []
    assert live_catalog(make_pipeline({}, only={"limits"})) is None


async def test_a_crashed_writer_is_adopted_once_stale(tmp_path: Path) -> None:
    db = tmp_path / "catalog.db"
    cfg = make_config({}).catalog
    a = CatalogDetector(cfg, db)
    await a.startup()
    feed(a, 300)
    await a.flush()
    if a._task is not None:
        a._task.cancel()  # a crash: no final flush, no retire
    a.store.close()
    b = CatalogDetector(cfg, db)
    await b.startup()
    assert b.learner.endpoints() == []  # the old writer still looks alive: not adopted yet
    await b.shutdown()
    store = CatalogStore(db)
    store.conn.execute("UPDATE writers SET heartbeat = heartbeat - 3600 WHERE writer = ?", (a.writer,))
    store.close()
    c = CatalogDetector(cfg, db)
    await c.startup()
    assert len(c.learner.endpoints()) == len(a.learner.endpoints())
    await c.shutdown()
    assert {e.key for e in read_catalog(db)} == {e.key for e in a.learner.endpoints()}
