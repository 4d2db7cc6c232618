"""The catalog detector: feeds every finished exchange to the catalog learner. Reports nothing.

Only a `complete` hook, so it costs the request path nothing; the learning itself is bounded to a
few microseconds per exchange (see bench/catalog.py). The catalog is written to its SQLite file
every `catalog.flush_interval` seconds from a worker thread, and once more at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import orjson

from bastion.catalog.learner import Learner, LearnerLimits
from bastion.catalog.settings import CatalogConfig
from bastion.catalog.store import CatalogStore, new_writer_id
from bastion.config import BastionConfig
from bastion.engine.registry import BuildContext
from bastion.exchange import Exchange

log = logging.getLogger("bastion.catalog")


def catalog_path(config: BastionConfig) -> Path:
    return config.catalog.path or (config.data_dir / "catalog.db")


def limits_from(cfg: CatalogConfig) -> LearnerLimits:
    return LearnerLimits(
        max_hosts=cfg.max_hosts, max_nodes=cfg.max_nodes, max_endpoints=cfg.max_endpoints,
        full_samples=cfg.full_samples, sample_every=cfg.sample_every, min_siblings=cfg.min_siblings,
        max_siblings=cfg.max_siblings, sensitive=cfg.sensitive, max_shapes=cfg.max_shapes,
    )


class CatalogDetector:
    name = "catalog"

    def __init__(self, cfg: CatalogConfig, path: Path | None) -> None:
        self.learner = Learner(limits_from(cfg))
        self.path = path
        self.flush_interval = cfg.flush_interval
        self.writer = new_writer_id()
        self.store: CatalogStore | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.observe = False
        if cfg.hold_responses:
            # Front-ends only buffer a response's prefix when a detector hooks response_body.
            self.response_body = _nothing


    def complete(self, ex: Exchange) -> None:
        self.learner.observe(ex)

    # --- persistence ---------------------------------------------------------------------------

    async def startup(self, _pipeline: Any = None) -> None:
        if self.path is None:
            return
        try:
            self.store = await asyncio.to_thread(CatalogStore, self.path)
            stale = max(60.0, 6 * self.flush_interval)
            adopted = await asyncio.to_thread(self.store.adopt, self.writer, stale)
        except Exception as exc:  # an unwritable data dir must not stop the gateway
            log.warning("catalog: cannot use %s (%s); learning in memory only", self.path, exc)
            self.store = None
            return
        if adopted:
            for ep in adopted:
                self.learner.add(ep)
            self.learner.settle()
        self._task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except Exception as exc:
                log.warning("catalog: flush failed: %r", exc)

    async def _snapshot(self) -> tuple[list[tuple[str, str, str, int, float, bytes]], bool]:
        """Serialise what changed, on the event loop (the learner is not thread-safe), yielding to
        requests every few endpoints so a big catalog never stalls the gateway."""
        lr = self.learner
        replace_all = lr.structure_changed
        lr.structure_changed = False
        rows = []
        for i, ep in enumerate(lr.endpoints()):
            if ep.dirty or replace_all:
                rows.append((ep.host, ep.method, ep.template, ep.calls, ep.last_seen, orjson.dumps(ep.to_dict())))
                ep.dirty = False
            if i % 32 == 31:
                await asyncio.sleep(0)
        return rows, replace_all

    async def flush(self) -> int:
        """Write what changed since the last flush; returns the number of rows written."""
        if self.store is None:
            return 0
        async with self._lock:
            rows, replace_all = await self._snapshot()
            if not rows and not replace_all:
                await asyncio.to_thread(self.store.write, self.writer, [], replace_all=False, now=time.time())
                return 0
            await asyncio.to_thread(self.store.write, self.writer, rows, replace_all=replace_all, now=time.time())
            return len(rows)

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.store is not None:
            try:
                await self.flush()
                await asyncio.to_thread(self.store.retire, self.writer)
            finally:
                self.store.close()
                self.store = None


def live_catalog(pipeline: Any) -> Learner | None:
    """The in-process learner of a running pipeline (admin API, console): current to the last
    exchange, unlike the catalog file. `learner.endpoints()` lists this process's endpoints."""
    for det in getattr(pipeline, "detectors", ()):
        if isinstance(det, CatalogDetector):
            return det.learner
    return None


def _nothing(_ex: Exchange) -> None:
    return None


def make(config: BastionConfig, ctx: BuildContext) -> CatalogDetector | None:
    cfg = config.catalog
    if not cfg.enabled:
        return None
    det = CatalogDetector(cfg, catalog_path(config) if cfg.persist else None)
    ctx.services["catalog"] = det.learner
    return det
