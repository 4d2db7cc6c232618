"""SQLite event store: the contract, concurrent reading while a writer holds the database, URLs."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from bastion.config import BastionConfig
from bastion.errors import ConfigError
from bastion.store import open_store, sqlite_path
from bastion.store.sqlite import SQLiteStore
from store_contract import check_contract, sample


def test_contract(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "events.db")
    try:
        check_contract(store)
    finally:
        store.close()


def test_wal_lets_a_reader_work_during_a_write_transaction(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    writer = SQLiteStore(path)
    writer.write_many([sample(1)])
    # Another process's long write transaction (a second gateway worker, say).
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO events (time) VALUES (1)")
    reader = SQLiteStore(path)
    assert reader.count() == 1  # the reader sees the committed state, without waiting
    other.execute("COMMIT")
    assert reader.count() == 2
    assert str(path.with_name("events.db-wal").name) in {p.name for p in tmp_path.iterdir()}
    for s in (reader, writer):
        s.close()
    other.close()


def test_locked_database_write_fails_fast_instead_of_hanging(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(path, busy_timeout=0.2)
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(sqlite3.OperationalError):
        store.write_many([sample(1)])
    other.execute("ROLLBACK")
    assert store.write_many([sample(2)]) == 1  # usable again once the lock is gone
    other.close()
    store.close()


def test_store_is_thread_safe(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "events.db")

    def work(base: int) -> None:
        for i in range(20):
            store.write_many([sample(base + i)])
            store.query(limit=5)

    threads = [threading.Thread(target=work, args=(n * 1000,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count() == 80
    store.close()


def test_open_store_by_url(tmp_path: Path) -> None:
    cfg = BastionConfig(data_dir=tmp_path / "data")
    s = open_store(cfg)
    assert isinstance(s, SQLiteStore) and s.path == sqlite_path(cfg) == tmp_path / "data" / "events.db"
    s.close()
    s = open_store(cfg, url=f"sqlite:///{tmp_path}/other.db")
    assert isinstance(s, SQLiteStore) and s.path == tmp_path / "other.db"
    s.close()
    with pytest.raises(FileNotFoundError):
        open_store(BastionConfig(data_dir=tmp_path / "missing"), create=False)
    with pytest.raises(ConfigError, match="unsupported event store 'mysql'"):
        open_store(cfg, url="mysql://x")


def _open_at(path: str, start: float) -> str:
    import time

    from bastion.store.sqlite import SQLiteStore

    time.sleep(max(0.0, start - time.time()))
    try:
        SQLiteStore(path).close()
    except Exception as exc:
        return repr(exc)
    return ""


def test_workers_opening_a_new_file_at_once_all_succeed(tmp_path) -> None:
    """`--workers N` opens one new events.db from N processes at the same moment; switching it to
    WAL is not covered by SQLite's busy handler, so the losers must wait and retry, not fail."""
    import multiprocessing
    import time

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(6) as pool:
        for round_ in range(8):
            path = str(tmp_path / f"events-{round_}.db")
            start = time.time() + 0.2
            errors = [e for e in pool.starmap(_open_at, [(path, start)] * 6) if e]
            assert errors == []
