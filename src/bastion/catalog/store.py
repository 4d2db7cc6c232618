"""The catalog file: one SQLite database (`catalog.db` in the data directory by default).

Each gateway process is a *writer* with its own rows: it rewrites them from memory at each flush,
so several workers never overwrite each other. Readers (`bastion catalog`, the admin API) merge
every writer's rows. A writer that stopped (no heartbeat for a while) is adopted by the next one
to start: its rows move, in one transaction, into the new writer's memory and rows. WAL mode lets
readers read while the gateway writes.
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

import orjson

from bastion.catalog.endpoint import Endpoint

_SCHEMA = """
CREATE TABLE IF NOT EXISTS writers (
    writer TEXT PRIMARY KEY,
    started REAL NOT NULL,
    heartbeat REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    writer TEXT NOT NULL,
    host TEXT NOT NULL,
    method TEXT NOT NULL,
    template TEXT NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0,
    last_seen REAL NOT NULL DEFAULT 0,
    data BLOB NOT NULL,
    PRIMARY KEY (writer, host, method, template)
);
"""


def new_writer_id() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(3)}"


class CatalogStore:
    """Blocking SQLite access; the detector calls it from a worker thread."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"no catalog at {self.path}")
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10,
                                        check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def adopt(self, writer: str, stale_after: float, now: float | None = None) -> list[Endpoint]:
        """Register `writer`; move the rows of writers silent for `stale_after` seconds to it.

        Returns the adopted endpoints (they are now the new writer's rows)."""
        now = time.time() if now is None else now
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("INSERT OR REPLACE INTO writers VALUES (?, ?, ?)", (writer, now, now))
            stale = [r[0] for r in c.execute("SELECT writer FROM writers WHERE heartbeat < ? AND writer != ?",
                                             (now - stale_after, writer))]
            orphans = [r[0] for r in c.execute(
                "SELECT DISTINCT writer FROM endpoints WHERE writer NOT IN (SELECT writer FROM writers)")]
            gone = stale + orphans
            adopted: list[Endpoint] = []
            for w in gone:
                for (data,) in c.execute("SELECT data FROM endpoints WHERE writer = ?", (w,)):
                    adopted.append(Endpoint.from_dict(orjson.loads(data)))
                c.execute("DELETE FROM endpoints WHERE writer = ?", (w,))
                c.execute("DELETE FROM writers WHERE writer = ?", (w,))
            merged: dict[tuple[str, str, str], Endpoint] = {}
            for ep in adopted:
                mine = merged.get(ep.key)
                if mine is None:
                    merged[ep.key] = ep
                else:
                    mine.merge(ep)
            self._write_rows(writer, merged.values())
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return list(merged.values())

    def _write_rows(self, writer: str, eps: Iterable[Endpoint]) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO endpoints VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(writer, e.host, e.method, e.template, e.calls, e.last_seen, orjson.dumps(e.to_dict())) for e in eps],
        )

    def write(self, writer: str, rows: list[tuple[str, str, str, int, float, bytes]], *, replace_all: bool,
              now: float | None = None) -> None:
        """Store a writer's rows (pre-serialised on the event loop). `replace_all` first drops the
        writer's old rows (templates were renamed)."""
        now = time.time() if now is None else now
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            if replace_all:
                c.execute("DELETE FROM endpoints WHERE writer = ?", (writer,))
            c.executemany("INSERT OR REPLACE INTO endpoints VALUES (?, ?, ?, ?, ?, ?, ?)",
                          [(writer, *r) for r in rows])
            c.execute("INSERT OR REPLACE INTO writers VALUES (?, COALESCE((SELECT started FROM writers "
                      "WHERE writer = ?), ?), ?)", (writer, writer, now, now))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def retire(self, writer: str) -> None:
        """A clean shutdown: the next process to start adopts these rows at once."""
        self.conn.execute("UPDATE writers SET heartbeat = 0 WHERE writer = ?", (writer,))

    def rows(self, exclude_writer: str = "") -> list[Endpoint]:
        """Every endpoint row of every writer (not merged)."""
        out = []
        for (data,) in self.conn.execute("SELECT data FROM endpoints WHERE writer != ?", (exclude_writer,)):
            try:
                out.append(Endpoint.from_dict(orjson.loads(data)))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a damaged row must not hide the rest of the catalog
        return out


def read_catalog(path: str | Path) -> list[Endpoint]:
    """The merged catalog of every writer, as readers (CLI, admin API) show it. Raises
    FileNotFoundError when there is no catalog yet."""
    from bastion.catalog.learner import Learner  # the learner imports nothing from here; keep it lazy

    store = CatalogStore(path, readonly=True)
    try:
        rows = store.rows()
    finally:
        store.close()
    return Learner.from_endpoints(rows).endpoints()
