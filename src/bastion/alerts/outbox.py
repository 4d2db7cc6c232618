"""An outbox: a bounded queue drained by one daemon thread, for what Bastion sends out of band
(webhook alerts, step-up code deliveries). `put` never waits: a full outbox refuses the item and
the caller counts it. A failed send is counted and logged at most once a minute, by the type of the
error only (an item may hold a secret: a one-time code, a signed body)."""

from __future__ import annotations

import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")
log = logging.getLogger("bastion.alerts")


def post_json(url: str, body: bytes, *, timeout: float, agent: str, headers: Mapping[str, str] = {}) -> None:
    """POST a JSON body; raises on a non-2xx answer or a network failure (the outbox counts it)."""
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("User-Agent", agent)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        if not 200 <= resp.status < 300:
            raise urllib.error.HTTPError(url, resp.status, f"{url} answered {resp.status}", resp.headers, None)


class SendStats(Protocol):
    sent: int
    failed: int


class Outbox(Generic[T]):
    def __init__(self, send: Callable[[T], None], stats: SendStats, *, size: int, name: str, what: str,
                 on_failure: Callable[[T], None] | None = None) -> None:
        self._send = send
        self.stats = stats
        self._name = name  # the thread's
        self._what = what  # for the log line: "webhook alert"
        self._on_failure = on_failure
        self._queue: queue.Queue[T | None] = queue.Queue(size)
        self._thread: threading.Thread | None = None
        self._last_error_log = 0.0

    def put(self, item: T) -> bool:
        """Queue one item (starting the thread on first use); False when the outbox is full."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return False
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                try:
                    self._send(item)
                    self.stats.sent += 1
                except Exception as exc:
                    self.stats.failed += 1
                    if self._on_failure is not None:
                        self._on_failure(item)
                    mono = time.monotonic()
                    if mono - self._last_error_log > 60:  # once a minute, not once per item
                        self._last_error_log = mono
                        log.warning("%s failed (%d so far): %s", self._what, self.stats.failed, type(exc).__name__)
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self.flush(timeout)
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                return
            self._thread.join(timeout)
            self._thread = None
