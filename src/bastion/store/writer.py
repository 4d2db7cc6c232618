"""The event writer: flagged and blocked exchanges become Events, written in batches off the request path.

`exchange_done` (called by the pipeline after each response) builds the masked Event and puts it
on a bounded queue; that is all the request path pays. One daemon thread takes batches off the
queue, writes each event as a log line and the batch to the store in one transaction.

Failure is contained here, and costs no event while memory allows: a batch the store refuses (disk
full, database locked, PostgreSQL down, a store that cannot be opened) joins a bounded backlog that
is retried with a growing delay (1 s up to `retry_max`) and written, oldest first, once the store is
back. Only what overflows the backlog (`backlog_size` events, oldest first) or is still pending at
shutdown is lost, and counted (`failed`); a full queue drops the new event and counts it
(`dropped`). Each kind of failure is logged at most once per `error_interval`. Every event was also
written as a log line when it was taken off the queue. The gateway never waits and never sees the
exception.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bastion.config import BastionConfig
from bastion.engine import ExchangeSink
from bastion.events import Event, event_from_exchange, is_notable
from bastion.exchange import Exchange
from bastion.logs import log_event
from bastion.store import EventStore, check_store_url, open_store

log = logging.getLogger("bastion.store")

Listener = Callable[[list[Event]], None]


@dataclass(slots=True)
class WriterStats:
    queued: int = 0
    written: int = 0
    dropped: int = 0  # queue full: the gateway produced events faster than the store took them
    failed: int = 0  # lost: the store stayed unreachable longer than the backlog could hold, or refused the event
    batches: int = 0
    pending: int = 0  # refused by the store, waiting in the backlog for a retry


class EventWriter(ExchangeSink):
    """An ExchangeSink that stores and logs events from a background thread."""

    def __init__(
        self,
        opener: Callable[[], EventStore] | None,
        *,
        mode: str = "enforce",
        batch_size: int = 500,
        flush_interval: float = 0.5,
        queue_size: int = 100_000,
        retention: float | None = None,
        log_events: bool = True,
        error_interval: float = 60.0,
        reopen_interval: float = 5.0,
        prune_interval: float = 3600.0,
        backlog_size: int = 50_000,
        retry_max: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._opener = opener
        self.mode = mode
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retention = retention
        self.log_events = log_events
        self.error_interval = error_interval
        self.reopen_interval = reopen_interval
        self.prune_interval = prune_interval
        self._mono = monotonic
        self.backlog_size = backlog_size
        self.retry_max = retry_max
        self._backlog: deque[Event] = deque()
        self._retry_delay = 0.0  # 0: the last write worked; else the wait before the next attempt
        self._next_retry = 0.0
        self._retry_now = threading.Event()  # flush(): retry the backlog at once
        self._attempts = 0  # backlog write attempts, so that flush() can wait for one
        self._queue: queue.Queue[Event] = queue.Queue(maxsize=queue_size)
        self.stats = WriterStats()
        self.store: EventStore | None = None
        self._listeners: list[Listener] = []
        self._last_error: dict[str, float] = {}
        self._next_open = 0.0
        self._next_prune = 0.0
        self._stop = threading.Event()
        self._flush = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: BastionConfig, *, with_store: bool = True) -> EventWriter:
        sc = config.store
        if with_store:
            check_store_url(sc.url)
        return cls(
            (lambda: open_store(config)) if with_store else None,
            mode=config.mode,
            batch_size=sc.batch_size,
            flush_interval=sc.flush_interval,
            queue_size=sc.queue_size,
            backlog_size=sc.backlog_size,
            retention=sc.retention_days * 86400.0,
            log_events=config.logging.events_to_log,
        )

    # --- request path ------------------------------------------------------------------------

    def exchange_done(self, ex: Exchange) -> None:
        if is_notable(ex):
            self.submit(event_from_exchange(ex, self.mode))

    def submit(self, event: Event) -> bool:
        """Queue an event; False (and counted) when the queue is full or the writer closed. Never blocks."""
        if self._stop.is_set():
            self.stats.dropped += 1
            return False
        if self._thread is None:
            self.start()
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.stats.dropped += 1
            self._error("queue-full", "event queue full: events are being dropped")
            return False
        self.stats.queued += 1
        return True

    def add_listener(self, fn: Listener) -> None:
        """Call `fn(batch)` from the writer thread after each batch (alerts, live views)."""
        self._listeners.append(fn)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="bastion-event-writer", daemon=True)
                self._thread.start()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event was handled and the backlog was retried once (without its
        delay). True when the queue is empty; events the store still refuses stay `pending`."""
        if self._thread is None:
            return self._queue.unfinished_tasks == 0
        deadline = time.monotonic() + timeout
        attempts = self._attempts
        self._retry_now.set()
        self._flush.set()
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(min(remaining, 0.05))
                self._flush.set()
        while self._backlog and self._attempts == attempts and time.monotonic() < deadline:
            self._retry_now.set()
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to `timeout`), stop the thread and close the store."""
        self._stop.set()
        self._flush.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            self._close_store()

    # --- writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        if self._opener is not None:
            self._open()  # at start-up, so that an unusable store is reported before the first event
        while True:
            batch = self._take()
            if batch:
                self._handle(batch)
                for _ in batch:
                    self._queue.task_done()
            elif self._stop.is_set():
                break
            else:
                self._drain()
            self._maybe_prune()
        self._drain(final=True)
        self._close_store()

    def _take(self) -> list[Event]:
        """Block for the first event, then gather more until the batch is full or the interval ends."""
        try:
            # A short wait, so that close() is noticed quickly when idle (0.1 s wake-ups cost nothing).
            first = self._queue.get(timeout=min(self.flush_interval, 0.1))
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.flush_interval
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            if self._flush.is_set() or self._stop.is_set():
                self._flush.clear()
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=min(remaining, 0.05)))
            except queue.Empty:
                continue
        return batch

    def _handle(self, batch: list[Event]) -> None:
        if self.log_events:
            for ev in batch:
                try:
                    log_event(ev)
                except Exception as exc:
                    self._error("log", f"event log line failed: {type(exc).__name__}: {exc}")
        for fn in self._listeners:
            try:
                fn(batch)
            except Exception as exc:
                self._error("listener", f"event listener {getattr(fn, '__name__', fn)!r} failed: {exc!r}")
        if self._opener is None:
            return
        if self._backlog:  # the store is down: keep the order, the backlog goes first
            self._keep(batch)
            self._drain()
            return
        if not self._write(batch):
            self._keep(batch)

    def _write(self, batch: list[Event]) -> bool:
        """One store write; False (logged, retry scheduled) when the store refuses it."""
        store = self._open()
        if store is None:
            self._schedule_retry()
            return False
        try:
            self.stats.written += store.write_many(batch)
        except (TypeError, ValueError) as exc:  # the data, not the store: retrying cannot help
            self._write_each(store, batch, exc)
        except Exception as exc:
            self._schedule_retry()
            self._error("write", f"event store write failed, {len(batch)} events kept for a retry: "
                                 f"{type(exc).__name__}: {exc}")
            return False
        self.stats.batches += 1
        self._retry_delay = 0.0
        return True

    def _write_each(self, store: EventStore, batch: list[Event], exc: Exception) -> None:
        """Write a batch the store refused for its content one event at a time, and drop (count and
        report) only the events it still refuses, so that one bad event never blocks the rest."""
        bad = 0
        for ev in batch:
            try:
                self.stats.written += store.write_many([ev])
            except Exception:  # its content, or the store failing in this very moment: counted, reported
                bad += 1
        self.stats.failed += bad
        self._error("encode", f"{bad} event(s) the store cannot encode were dropped: {type(exc).__name__}: {exc}")

    def _keep(self, batch: list[Event]) -> None:
        """Backlog a refused batch; beyond `backlog_size` the oldest events are lost (counted)."""
        self._backlog.extend(batch)
        over = len(self._backlog) - self.backlog_size
        if over > 0:
            for _ in range(over):
                self._backlog.popleft()
            self.stats.failed += over
            self._error("backlog", f"event backlog full ({self.backlog_size}): the oldest events are lost")
        self.stats.pending = len(self._backlog)

    def _schedule_retry(self) -> None:
        self._retry_delay = min(self.retry_max, max(1.0, self._retry_delay * 2))
        self._next_retry = self._mono() + self._retry_delay

    def _drain(self, *, final: bool = False) -> None:
        """Write the backlog, oldest first, when its retry is due (at once for flush and close)."""
        if not self._backlog:
            return
        forced = final or self._retry_now.is_set()
        if not forced and self._mono() < self._next_retry:
            return
        self._retry_now.clear()
        if forced:
            self._next_open = 0.0  # a flush or close retries opening too
        try:
            while self._backlog:
                chunk = [self._backlog[i] for i in range(min(self.batch_size, len(self._backlog)))]
                if not self._write(chunk):
                    break
                for _ in chunk:
                    self._backlog.popleft()
        finally:
            self._attempts += 1
            self.stats.pending = len(self._backlog)
        if final and self._backlog:
            lost = len(self._backlog)
            self._backlog.clear()
            self.stats.failed += lost
            self.stats.pending = 0
            log.error("event store unavailable at shutdown: %d events lost (each was written to the log)", lost)

    def _open(self) -> EventStore | None:
        if self.store is not None or self._opener is None:
            return self.store
        now = self._mono()
        if now < self._next_open:
            return None
        try:
            self.store = self._opener()
        except Exception as exc:
            self._next_open = now + self.reopen_interval
            self._error("open", f"cannot open the event store (retrying): {type(exc).__name__}: {exc}")
            return None
        return self.store

    def _maybe_prune(self) -> None:
        if self.retention is None or self.store is None:
            return
        now = self._mono()
        if now < self._next_prune:
            return
        self._next_prune = now + self.prune_interval
        try:
            n = self.store.prune(self.retention)
            if n:
                log.info("pruned %d events older than %.0f days", n, self.retention / 86400)
        except Exception as exc:
            self._error("prune", f"event store prune failed: {type(exc).__name__}: {exc}")

    def _close_store(self) -> None:
        store, self.store = self.store, None
        if store is not None:
            try:
                store.close()
            except Exception as exc:
                log.warning("closing the event store failed: %s", exc)

    def _error(self, kind: str, message: str) -> None:
        """Log a failure once per `error_interval` for each kind, with the running loss counts."""
        now = self._mono()
        last = self._last_error.get(kind)
        if last is not None and now - last < self.error_interval:
            return
        self._last_error[kind] = now
        s = self.stats
        log.error("%s (dropped %d, failed %d so far)", message, s.dropped, s.failed)
