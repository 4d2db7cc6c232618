"""PostgreSQL event store against the real server (skips when none is reachable)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from bastion.config import BastionConfig, StoreConfig
from bastion.errors import ConfigError
from bastion.store import open_store
from bastion.store.postgres import PostgresStore, split_url
from store_contract import check_contract, sample

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'bastion-gateway[postgres]')")

pytestmark = pytest.mark.postgres

BASE_URL = os.environ.get("BASTION_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA = "bastion_h2_test"


def _reachable() -> str | None:
    for url in (BASE_URL, "postgresql://127.0.0.1:5432/test"):
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return url
        except Exception:
            continue
    return None


URL = _reachable()


@pytest.fixture
def table_url() -> Iterator[str]:
    if URL is None:
        pytest.skip(f"PostgreSQL is not reachable at {BASE_URL}")
    table = "events_" + uuid.uuid4().hex[:10]
    yield f"{URL}?schema={SCHEMA}&table={table}"
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{SCHEMA}"."{table}"')


def test_contract(table_url: str) -> None:
    store = PostgresStore(table_url)
    try:
        check_contract(store)
    finally:
        store.close()


def test_reconnects_after_the_connection_drops(table_url: str) -> None:
    store = PostgresStore(table_url)
    store.write_many([sample(1)])
    store._conn.close()  # the server restarted, a proxy cut the connection...
    assert store.write_many([sample(2)]) == 1
    assert store.count() == 2
    store.close()


def test_two_instances_share_one_table(table_url: str) -> None:
    a, b = PostgresStore(table_url), PostgresStore(table_url)
    a.write_many([sample(1)])
    b.write_many([sample(2)])
    assert a.count() == b.count() == 2
    a.close()
    b.close()


def test_open_store_chooses_postgres(table_url: str) -> None:
    store = open_store(BastionConfig(store=StoreConfig(url=table_url)))
    assert isinstance(store, PostgresStore)
    store.close()


def test_url_options_are_checked() -> None:
    assert split_url("postgresql://h/db?sslmode=disable&table=t1") == ("postgresql://h/db?sslmode=disable", None, "t1")
    with pytest.raises(ConfigError, match="identifier"):
        split_url('postgresql://h/db?table=x";drop')


def test_unreachable_server_raises_quickly() -> None:
    with pytest.raises(psycopg.OperationalError):
        PostgresStore("postgresql://127.0.0.1:1/test", connect_timeout=1)
