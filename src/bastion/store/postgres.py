"""PostgreSQL event store (psycopg 3): one table shared by every gateway instance.

`store.url: postgresql://user@host:5432/db` selects it; `?schema=NAME&table=NAME` in the URL
(Bastion's own options, removed before connecting) place the table, by default
`public.bastion_events`. Schema, table and indexes are created on first use. A lost connection is reopened on the
next call; the writer thread retries on its own schedule, so the gateway never waits on it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bastion.errors import ConfigError
from bastion.events import Event
from bastion.store import where_clause

_COLUMNS = (
    "time, request_id, client_ip, peer_ip, method, path, route, site, status, action, score, "
    "rule_ids, findings, reason, duration_ms, mode, would_block, entity"
)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def split_url(url: str) -> tuple[str, str | None, str]:
    """Take Bastion's own `schema` and `table` query options out of a libpq URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    table = next((v for k, v in query if k == "table"), "bastion_events")
    rest = [(k, v) for k, v in query if k not in ("schema", "table")]
    for name in (schema, table):
        if name is not None and not _IDENT.match(name):
            raise ConfigError([f"store.url: {name!r} is not a plain SQL identifier"])
    return urlunsplit(parts._replace(query=urlencode(rest))), schema, table


class PostgresStore:
    """An EventStore in PostgreSQL. `url` may carry `?schema=NAME&table=NAME` (default public.bastion_events)."""

    def __init__(self, url: str, *, connect_timeout: float = 3.0) -> None:
        import psycopg  # optional dependency: bastion-gateway[postgres]

        self._psycopg = psycopg
        self.url, self.schema, table = split_url(url)
        self.table = f'"{self.schema}"."{table}"' if self.schema else f'"{table}"'
        self._index_prefix = f"{self.schema or 'public'}_{table}"[:40]
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._conn: Any = None
        with self._lock:
            self._connection()

    def _connection(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = self._psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self._connect_timeout)))
        with conn.cursor() as cur:
            if self.schema:
                cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            cur.execute(
                f"""CREATE TABLE IF NOT EXISTS {self.table} (
                    id BIGSERIAL PRIMARY KEY,
                    time DOUBLE PRECISION NOT NULL,
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
                    rule_ids TEXT[] NOT NULL DEFAULT '{{}}',
                    findings JSONB NOT NULL DEFAULT '[]',
                    reason TEXT NOT NULL DEFAULT '',
                    duration_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
                    mode TEXT NOT NULL DEFAULT '',
                    would_block BOOLEAN NOT NULL DEFAULT FALSE,
                    entity TEXT NOT NULL DEFAULT ''
                )"""
            )
            p = self._index_prefix
            cur.execute(f'CREATE INDEX IF NOT EXISTS "{p}_time" ON {self.table} (time)')
            cur.execute(f'CREATE INDEX IF NOT EXISTS "{p}_client" ON {self.table} (client_ip, time)')
        self._conn = conn
        return conn

    def _run(self, fn: Any) -> Any:
        """Run `fn(conn)`; on a dropped connection, reconnect once and retry."""
        with self._lock:
            try:
                return fn(self._connection())
            except self._psycopg.OperationalError:
                self._drop()
                return fn(self._connection())

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
        self._conn = None

    def write_many(self, events: Sequence[Event]) -> int:
        if not events:
            return 0
        from psycopg.types.json import Jsonb

        rows = [
            (
                e.time, e.request_id, e.client_ip, e.peer_ip, e.method, e.path, e.route, e.site, e.status,
                e.action, e.score, list(e.rule_ids), Jsonb(e.findings), e.reason, e.duration_ms, e.mode,
                e.would_block, e.entity,
            )
            for e in events
        ]
        sql = f"INSERT INTO {self.table} ({_COLUMNS}) VALUES ({', '.join(['%s'] * 18)})"

        def write(conn: Any) -> int:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(sql, rows)
            return len(rows)

        n: int = self._run(write)
        return n

    @staticmethod
    def _where(
        since: float | None, until: float | None, action: str | None, client: str | None, rule: str | None
    ) -> tuple[str, list[Any]]:
        return where_clause("%s", "{} = ANY(rule_ids)", rule if rule else None, since, until, action, client)

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
        sql = f"SELECT id, {_COLUMNS} FROM {self.table}{where} ORDER BY time DESC, id DESC LIMIT %s"

        def read(conn: Any) -> list[Any]:
            with conn.cursor() as cur:
                cur.execute(sql, [*args, max(0, int(limit))])
                return list(cur.fetchall())

        return [
            Event(
                id=r[0], time=r[1], request_id=r[2], client_ip=r[3], peer_ip=r[4], method=r[5], path=r[6],
                route=r[7], site=r[8], status=r[9], action=r[10], score=r[11], rule_ids=tuple(r[12] or ()),
                findings=list(r[13] or []), reason=r[14], duration_ms=r[15], mode=r[16],
                would_block=bool(r[17]), entity=r[18],
            )
            for r in self._run(read)
        ]

    def count(
        self,
        since: float | None = None,
        until: float | None = None,
        action: str | None = None,
        client: str | None = None,
        rule: str | None = None,
    ) -> int:
        where, args = self._where(since, until, action, client, rule)

        def read(conn: Any) -> int:
            with conn.cursor() as cur:
                cur.execute(f"SELECT COUNT(*) FROM {self.table}{where}", args)
                return int(cur.fetchone()[0])

        n: int = self._run(read)
        return n

    def prune(self, retention: float, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - retention

        def delete(conn: Any) -> int:
            with conn.cursor() as cur:
                cur.execute(f"DELETE FROM {self.table} WHERE time < %s", (cutoff,))
                return int(cur.rowcount)

        n: int = self._run(delete)
        return n

    def close(self) -> None:
        with self._lock:
            self._drop()
