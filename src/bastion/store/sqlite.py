"""The default event store: one SQLite file in the data directory.

WAL mode lets `bastion events list` (and the admin API) read while the gateway writes, and lets
several worker processes append to the same file. Writes come from the writer thread only, so a
busy or locked database delays that thread, never a request.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from bastion.events import Event
from bastion.store import where_clause

_COLUMNS = (
    "time, request_id, client_ip, peer_ip, method, path, route, site, status, action, score, "
    "rule_ids, findings, reason, duration_ms, mode, would_block, entity"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    request_id TEXT NOT NULL DEFAULT '',
    client_ip TEXT NOT NULL DEFAULT '',
    peer_ip TEXT NOT NULL DEFAULT '',
    method TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL DEFAULT '',
    route TEXT NOT NULL DEFAULT '',
    site TEXT NOT NULL DEFAULT '',
    status INTEGER NOT NULL DEFAULT 0,
    action TEXT NOT NULL DEFAULT '',
    score INTEGER NOT NULL DEFAULT 0,
    rule_ids TEXT NOT NULL DEFAULT '',
    findings TEXT NOT NULL DEFAULT '[]',
    reason TEXT NOT NULL DEFAULT '',
    duration_ms REAL NOT NULL DEFAULT 0,
    mode TEXT NOT NULL DEFAULT '',
    would_block INTEGER NOT NULL DEFAULT 0,
    entity TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_time ON events(time);
CREATE INDEX IF NOT EXISTS events_client_time ON events(client_ip, time);
CREATE INDEX IF NOT EXISTS events_request ON events(request_id);
"""


def _rules_text(rule_ids: Sequence[str]) -> str:
    # Space-delimited with a space at both ends, so `rule = X` is one instr() without false prefixes.
    return " " + " ".join(r.replace(" ", "_") for r in rule_ids) + " " if rule_ids else ""


class SQLiteStore:
    """An EventStore over one SQLite file. Thread-safe (one connection behind a lock)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 2.0) -> None:
        self.path = Path(path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Several worker processes open the same new file at once: switching it to WAL takes an
        # exclusive lock that SQLite does not wait for (no busy handler there), so a worker that
        # loses the race is told "database is locked" at once. Wait and try again, briefly.
        deadline = time.monotonic() + busy_timeout
        while True:
            self._db = sqlite3.connect(
                str(self.path), timeout=busy_timeout, check_same_thread=False, isolation_level=None
            )
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                self._db.close()
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
            except sqlite3.Error:
                self._db.close()
                raise

    def write_many(self, events: Sequence[Event]) -> int:
        if not events:
            return 0
        rows = [
            (
                e.time, e.request_id, e.client_ip, e.peer_ip, e.method, e.path, e.route, e.site, e.status,
                e.action, e.score, _rules_text(e.rule_ids), orjson.dumps(e.findings).decode(), e.reason,
                e.duration_ms, e.mode, int(e.would_block), e.entity,
            )
            for e in events
        ]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    f"INSERT INTO events ({_COLUMNS}) VALUES ({', '.join('?' * 18)})", rows
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return len(rows)

    @staticmethod
    def _where(
        since: float | None, until: float | None, action: str | None, client: str | None, rule: str | None
    ) -> tuple[str, list[Any]]:
        return where_clause("?", "instr(rule_ids, {}) > 0", f" {rule} " if rule else None, since, until, action, client)

    def query(
        self,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        action: str | None = None,
        client: str | None = None,
        rule: str | None = None,
    ) -> list[Event]:
        where, args = self._where(since, until, action, client, rule)
        sql = f"SELECT id, {_COLUMNS} FROM events{where} ORDER BY time DESC, id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, [*args, max(0, int(limit))]).fetchall()
        return [self._event(r) for r in rows]

    def count(
        self,
        since: float | None = None,
        until: float | None = None,
        action: str | None = None,
        client: str | None = None,
        rule: str | None = None,
    ) -> int:
        where, args = self._where(since, until, action, client, rule)
        with self._lock:
            (n,) = self._db.execute(f"SELECT COUNT(*) FROM events{where}", args).fetchone()
        return int(n)

    def prune(self, retention: float, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - retention
        with self._lock:
            cur = self._db.execute("DELETE FROM events WHERE time < ?", (cutoff,))
        return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _event(r: tuple[Any, ...]) -> Event:
        return Event(
            id=r[0], time=r[1], request_id=r[2], client_ip=r[3], peer_ip=r[4], method=r[5], path=r[6],
            route=r[7], site=r[8], status=r[9], action=r[10], score=r[11], rule_ids=tuple(r[12].split()),
            findings=orjson.loads(r[13]), reason=r[14], duration_ms=r[15], mode=r[16],
            would_block=bool(r[17]), entity=r[18],
        )
