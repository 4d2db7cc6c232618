"""The event writer: batches off the request path, and a store that fails never reaches the gateway."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from bastion.config import BastionConfig
from bastion.events import Event
from bastion.exchange import Client, Exchange, Headers, Request, Response
from bastion.store.sqlite import SQLiteStore
from bastion.store.writer import EventWriter
from bastion.verdict import Action, Finding, Verdict


def flagged(i: int, *, blocked: bool = True, started: float = 1_700_000_000.0) -> Exchange:
    ex = Exchange(
        id=f"req-{i}",
        client=Client(peer_ip="127.0.0.9"),
        request=Request(method="GET", target=f"/api/products?q={i}", headers=Headers()),
        started=started + i,
        duration=0.001,
    )
    ex.add(Finding(rule_id="942100", detector="signatures", message="SQL injection", score=5))
    ex.verdict = Verdict(Action.BLOCK if blocked else Action.LOG, status=403 if blocked else 200, score=5,
                         rule_ids=("942100",), reason="request-blocked" if blocked else "")
    ex.response = Response(status=ex.verdict.status, headers=Headers())
    return ex


def benign(i: int) -> Exchange:
    ex = flagged(i)
    ex.findings.clear()
    ex.verdict = Verdict(Action.ALLOW, status=200)
    return ex


class FlakyStore:
    """An EventStore whose writes fail while `broken` is set (disk full, database down)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.broken = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.closed = False

    def write_many(self, events: Sequence[Event]) -> int:
        self.gate.wait(10)
        if self.broken.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        self.events.extend(events)
        return len(events)

    def query(self, *a: object, **k: object) -> list[Event]:
        return list(reversed(self.events))

    def count(self, *a: object, **k: object) -> int:
        return len(self.events)

    def prune(self, retention: float, now: float | None = None) -> int:
        return 0

    def close(self) -> None:
        self.closed = True


def make_writer(store: object, **kw: object) -> EventWriter:
    opts: dict[str, object] = {"flush_interval": 0.05, "log_events": False}
    opts.update(kw)
    return EventWriter(lambda: store, **opts)  # type: ignore[arg-type, return-value]


def test_writes_flagged_exchanges_in_batches(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "events.db")
    w = EventWriter(lambda: store, flush_interval=0.05, batch_size=50, log_events=False)
    for i in range(120):
        w.exchange_done(flagged(i))
        w.exchange_done(benign(1000 + i))  # never stored
    assert w.flush(5)
    assert store.count() == 120
    assert w.stats.written == 120 and w.stats.dropped == 0 and w.stats.failed == 0
    assert 3 <= w.stats.batches < 120  # batched, not one transaction per event
    ev = store.query(limit=1)[0]
    assert ev.request_id == "req-119" and ev.path == "/api/products" and ev.action == "block"
    w.close()


def test_full_queue_drops_and_counts_without_blocking(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore()
    store.gate.clear()  # the store hangs: the writer thread is stuck in its first write
    w = make_writer(store, queue_size=10, batch_size=1)
    w.exchange_done(flagged(0))
    deadline = time.monotonic() + 5
    while w._queue.qsize() and time.monotonic() < deadline:  # the thread took event 0 and hangs
        time.sleep(0.005)
    with caplog.at_level(logging.ERROR, logger="bastion.store"):
        start = time.perf_counter()
        for i in range(1, 1001):
            w.exchange_done(flagged(i))
        elapsed = time.perf_counter() - start
    assert elapsed < 1.0  # the request path never waited for the store
    assert w.stats.dropped == 1000 - 10
    assert sum("queue full" in r.getMessage() for r in caplog.records) == 1  # logged once, not 990 times
    store.gate.set()
    assert w.flush(5)
    assert len(store.events) == 11
    w.close()
    assert store.closed


def test_failing_store_keeps_events_logs_once_and_writes_them_when_back(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore()
    store.broken.set()
    w = make_writer(store, batch_size=1, error_interval=3600)
    with caplog.at_level(logging.ERROR, logger="bastion.store"):
        for i in range(5):
            w.exchange_done(flagged(i))
        assert w.flush(5)
    assert w.stats.pending == 5 and w.stats.failed == 0 and w.stats.written == 0
    msgs = [r.getMessage() for r in caplog.records if "write failed" in r.getMessage()]
    assert len(msgs) == 1 and "disk is full" in msgs[0] and "kept for a retry" in msgs[0]
    store.broken.clear()  # space freed
    w.exchange_done(flagged(10))
    assert w.flush(5)
    # nothing lost, and the order kept: the backlog first
    assert [e.request_id for e in store.events] == ["req-0", "req-1", "req-2", "req-3", "req-4", "req-10"]
    assert w.stats.pending == 0 and w.stats.failed == 0 and w.stats.written == 6
    assert w._thread is not None and w._thread.is_alive()
    w.close()


def test_backlog_is_retried_with_a_growing_delay_without_a_flush() -> None:
    now = [0.0]
    store = FlakyStore()
    store.broken.set()
    calls: list[float] = []
    real = store.write_many

    def counted(events: Sequence[Event]) -> int:
        calls.append(now[0])
        return real(events)

    store.write_many = counted  # type: ignore[method-assign]
    w = EventWriter(lambda: store, flush_interval=0.02, log_events=False, monotonic=lambda: now[0])
    w.exchange_done(flagged(1))
    deadline = time.monotonic() + 5
    while w.stats.pending == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.3)  # idle ticks before the retry is due: no new attempt
    assert len(calls) == 1
    now[0] = 1.5  # past the first delay (1 s): retried, fails, the next delay is 2 s
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    now[0] = 2.5
    time.sleep(0.3)
    assert len(calls) == 2
    store.broken.clear()
    now[0] = 4.0
    while w.stats.pending and time.monotonic() < deadline:
        time.sleep(0.005)
    assert [e.request_id for e in store.events] == ["req-1"] and w.stats.failed == 0
    w.close()


def test_backlog_is_bounded_and_the_oldest_events_are_lost_counted(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore()
    store.broken.set()
    w = make_writer(store, backlog_size=10, error_interval=3600)
    with caplog.at_level(logging.ERROR, logger="bastion.store"):
        for i in range(25):
            w.exchange_done(flagged(i))
        assert w.flush(5)
    assert w.stats.pending == 10 and w.stats.failed == 15
    assert any("backlog full" in r.getMessage() for r in caplog.records)
    store.broken.clear()
    assert w.flush(5)
    assert [e.request_id for e in store.events] == [f"req-{i}" for i in range(15, 25)]
    w.close()


def test_events_still_pending_at_shutdown_are_counted_lost(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore()
    store.broken.set()
    w = make_writer(store)
    for i in range(3):
        w.exchange_done(flagged(i))
    assert w.flush(5)
    with caplog.at_level(logging.ERROR, logger="bastion.store"):
        w.close()
    assert w.stats.failed == 3 and w.stats.pending == 0
    assert any("3 events lost" in r.getMessage() for r in caplog.records)


def test_store_that_cannot_open_is_retried_later_and_loses_nothing() -> None:
    now = [0.0]
    attempts: list[float] = []
    store = FlakyStore()

    def opener() -> FlakyStore:
        attempts.append(now[0])
        if len(attempts) < 2:
            raise PermissionError("data dir is read-only")
        return store

    w = EventWriter(opener, flush_interval=0.05, log_events=False, reopen_interval=5.0, monotonic=lambda: now[0])
    w.start()
    deadline = time.monotonic() + 5
    while not attempts and time.monotonic() < deadline:
        time.sleep(0.005)
    w.submit(Event(time=1.0, request_id="req-1", client_ip="x"))  # no flush: the thread keeps its delays
    w.submit(Event(time=2.0, request_id="req-2", client_ip="x"))
    while w.stats.pending < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(attempts) == 1 and w.stats.pending == 2
    now[0] = 6.0  # past reopen_interval and the retry delay
    while w.stats.pending and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(attempts) == 2 and [e.request_id for e in store.events] == ["req-1", "req-2"]
    assert w.stats.failed == 0
    w.close()


def test_locked_sqlite_never_blocks_the_request_path(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(path, busy_timeout=0.1)
    w = EventWriter(lambda: store, flush_interval=0.02, log_events=False, error_interval=0)
    locker = sqlite3.connect(str(path), isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    start = time.perf_counter()
    for i in range(200):
        w.exchange_done(flagged(i))
    assert time.perf_counter() - start < 0.5
    assert w.flush(10)
    assert w.stats.pending > 0
    locker.execute("ROLLBACK")
    locker.close()
    w.exchange_done(flagged(999))
    assert w.flush(5)
    assert store.query(limit=1)[0].request_id == "req-999"
    assert store.count() == 201 and w.stats.failed == 0  # the locked time cost no event
    w.close()


def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "events.db")
    w = EventWriter(lambda: store, flush_interval=5.0, log_events=False)
    for i in range(30):
        w.exchange_done(flagged(i))
    w.close(timeout=5)
    assert SQLiteStore(tmp_path / "events.db").count() == 30


def test_listeners_see_batches_and_a_failing_listener_is_contained() -> None:
    store = FlakyStore()
    w = make_writer(store)
    seen: list[str] = []

    def bad(batch: list[Event]) -> None:
        raise RuntimeError("webhook down")

    w.add_listener(bad)
    w.add_listener(lambda batch: seen.extend(e.request_id for e in batch))
    w.exchange_done(flagged(1))
    assert w.flush(5)
    assert seen == ["req-1"] and len(store.events) == 1
    w.close()


def test_from_config(tmp_path: Path) -> None:
    cfg = BastionConfig(data_dir=tmp_path, mode="observe")
    w = EventWriter.from_config(cfg)
    w.exchange_done(flagged(1, blocked=False, started=time.time()))
    w.exchange_done(flagged(2, started=time.time() - 31 * 86400))  # beyond retention_days: pruned
    w.close()  # joins the thread: the prune that follows the batch has run
    events = SQLiteStore(tmp_path / "events.db").query()
    assert [e.request_id for e in events] == ["req-1"]
    assert events[0].mode == "observe" and events[0].action == "log"
    assert EventWriter.from_config(cfg, with_store=False)._opener is None


def test_events_after_close_are_dropped_not_queued() -> None:
    store = FlakyStore()
    w = make_writer(store)
    w.close()
    assert not w.submit(Event(time=1.0, request_id="late", client_ip="x"))
    assert w.stats.dropped == 1 and w._queue.qsize() == 0


def test_a_store_url_that_cannot_work_fails_at_start_up(tmp_path: Path) -> None:
    from bastion.config import StoreConfig
    from bastion.errors import ConfigError

    cfg = BastionConfig(data_dir=tmp_path, store=StoreConfig(url="postgress://db/events"))
    with pytest.raises(ConfigError, match="unsupported event store 'postgress'"):
        EventWriter.from_config(cfg)
    assert EventWriter.from_config(cfg, with_store=False)._opener is None  # no store: nothing to check


def test_unusable_data_dir_is_reported_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    w = EventWriter.from_config(BastionConfig(data_dir=blocker / "data"))
    with caplog.at_level(logging.ERROR, logger="bastion.store"):
        w.start()
        deadline = time.monotonic() + 5
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)
        w.exchange_done(flagged(1))  # the gateway carries on; the event waits for the store
        assert w.flush(5)
        assert w.stats.pending == 1
        w.close()  # the store never came: the event is counted as lost
    assert "cannot open the event store" in caplog.records[0].getMessage()
    assert w.stats.failed == 1


def test_an_event_the_store_cannot_encode_is_dropped_alone(caplog: pytest.LogCaptureFixture) -> None:
    """A content error is not an outage: retrying the batch forever would store nothing again."""

    class PickyStore(FlakyStore):
        def write_many(self, events: Sequence[Event]) -> int:
            if any(ev.request_id == "req-3" for ev in events):
                raise TypeError("str is not valid UTF-8: surrogates not allowed")
            return super().write_many(events)

    store = PickyStore()
    w = EventWriter(lambda: store, flush_interval=0.05, batch_size=50, log_events=False)
    with caplog.at_level(logging.ERROR, logger="bastion.store"):
        for i in range(10):
            w.exchange_done(flagged(i))
        assert w.flush(5)
        w.exchange_done(flagged(10))
        assert w.flush(5)
    assert sorted(ev.request_id for ev in store.events) == sorted(f"req-{i}" for i in range(11) if i != 3)
    assert w.stats.failed == 1 and w.stats.pending == 0
    assert "cannot encode" in caplog.text
    w.close()
