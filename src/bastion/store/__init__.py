"""Event stores: where events go, behind one small protocol, chosen by URL.

    ""                                 SQLite, DATA_DIR/events.db (default, embedded)
    sqlite:///rel.db, sqlite:////abs.db  SQLite elsewhere (relative / absolute path)
    postgresql://user@host/db          PostgreSQL (psycopg 3), for many gateway instances

Stores are synchronous: the gateway writes to them from the writer thread (store/writer.py),
never from the event loop; the CLI and admin API read from them directly or via a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from bastion.config import BastionConfig
from bastion.errors import ConfigError
from bastion.events import Event


def where_clause(
    placeholder: str,
    rule_condition: str,
    rule_argument: str | None,
    since: float | None,
    until: float | None,
    action: str | None,
    client: str | None,
) -> tuple[str, list[Any]]:
    """The WHERE clause and arguments of an event query, for a store's placeholder style.

    Stores differ only in the placeholder (`?`, `%s`) and in how a rule id is found in the row
    (`rule_condition`, with `{}` where the placeholder goes, and its `rule_argument`).
    """
    wanted: list[tuple[str, Any]] = [
        ("time >= {}", since),
        ("time < {}", until),
        ("action = {}", action or None),
        ("client_ip = {}", client or None),
        (rule_condition, rule_argument),
    ]
    clauses = [cond.format(placeholder) for cond, arg in wanted if arg is not None]
    args = [arg for _, arg in wanted if arg is not None]
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


@runtime_checkable
class EventStore(Protocol):
    def write_many(self, events: Sequence[Event]) -> int:
        """Store events in one transaction; return how many were written."""
        ...

    def query(
        self,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        action: str | None = None,
        client: str | None = None,
        rule: str | None = None,
    ) -> list[Event]:
        """Events newest first, filtered by time range, action, client IP and rule id."""
        ...

    def count(
        self,
        since: float | None = None,
        until: float | None = None,
        action: str | None = None,
        client: str | None = None,
        rule: str | None = None,
    ) -> int: ...

    def prune(self, retention: float, now: float | None = None) -> int:
        """Delete events older than `retention` seconds; return how many were deleted."""
        ...

    def close(self) -> None: ...


def sqlite_path(config: BastionConfig) -> Path:
    return Path(config.data_dir) / "events.db"


def _sqlite_file(url: str) -> Path:
    # As SQLAlchemy spells it: sqlite:///relative/events.db, sqlite:////absolute/events.db.
    rest = url.removeprefix("sqlite:")
    for prefix in ("///", "//"):
        if rest.startswith(prefix):
            return Path(rest[len(prefix) :])
    return Path(rest)


def check_store_url(url: str) -> None:
    """Fail at start-up, not in the writer thread, on a store URL that can never work."""
    if url and not url.startswith(("sqlite:", "postgresql://", "postgres://")):
        raise ConfigError([f"store.url: unsupported event store {url.split(':', 1)[0]!r} (use sqlite or postgresql)"])


def open_store(config: BastionConfig, *, url: str | None = None, create: bool = True) -> EventStore:
    """Open the store the config names. `create=False` (readers) fails instead of creating a
    fresh SQLite file, so `bastion events list` on the wrong directory says so."""
    url = config.store.url if url is None else url
    check_store_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        from bastion.store.postgres import PostgresStore

        return PostgresStore(url)
    from bastion.store.sqlite import SQLiteStore

    path = _sqlite_file(url) if url else sqlite_path(config)
    if not create and not path.exists():
        raise FileNotFoundError(str(path))
    return SQLiteStore(path)

__all__ = ["EventStore", "check_store_url", "open_store", "sqlite_path"]
