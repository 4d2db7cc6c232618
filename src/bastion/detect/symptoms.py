"""The `symptoms` detector: what an attack does to the API as a whole, seen before anyone looks.

Per scope (the whole gateway, and each endpoint the catalog names) every finished exchange adds to
the current bucket (`bucket` seconds): requests, 5xx answers, client errors, 401/403 refusals,
requests Bastion blocked, and a latency histogram. When a bucket closes, each scope's last `window`
seconds are compared with its baseline (a mean of past buckets, weighted down with a half-life of
`baseline_half_life`); a symptom starts when the window is far above the baseline, by a ratio and an
absolute floor both (a quiet endpoint going from 1 to 5 calls is not an incident):

    traffic         a traffic spike: requests (a flood, scraping, a credential-stuffing wave)
    errors          a 5xx surge: the API failing (an exploit hitting a bug, resource exhaustion)
    client_errors   400/404/405... surge: a scanner or a fuzzer walking the API
    auth_failures   401/403 surge: brute force, stuffing, token guessing (a failed-login surge)
    blocked         requests Bastion refused: an attack in progress
    latency         slow responses: the window's p95 far above the baseline's p95

The baseline is frozen for a signal while its symptom lasts, so an attack does not become normal, and
a scope alerts only after `warmup` seconds of history. A symptom's start is an event tagged `alert`
(webhooks send it whatever `alerts.send_on` says) and its end another event; active symptoms are
gauges in /metrics (`bastion_symptom_active`). Nothing here blocks: the per-entity detectors do that.

The request path pays nothing (a `complete` hook); each exchange costs a few dictionary and list
updates, and the comparison runs once per bucket over at most `max_endpoints` scopes.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bastion.config import BastionConfig
from bastion.detect.symptoms_settings import SymptomsConfig, SymptomThreshold
from bastion.engine.registry import BuildContext
from bastion.events import Event
from bastion.exchange import Exchange

log = logging.getLogger("bastion.symptoms")

SIGNALS = ("traffic", "errors", "client_errors", "auth_failures", "blocked", "latency")
REQ, E5XX, E4XX, AUTH, BLOCKED = range(5)
COUNTED = ("traffic", "errors", "client_errors", "auth_failures", "blocked")  # index = the counter
MESSAGES = {
    "traffic": "traffic spike",
    "errors": "server error (5xx) surge",
    "client_errors": "client error (4xx) surge: scanning or fuzzing",
    "auth_failures": "authentication failure (401/403) surge: brute force or credential stuffing",
    "blocked": "surge of blocked requests: an attack in progress",
    "latency": "slow responses",
}
# Latency histogram: bucket k holds durations up to 1 ms * 1.5**k (k = 0..LAT_BUCKETS-1, ~1 ms to ~10 min).
LAT_BUCKETS = 34
_LOG_STEP = math.log(1.5)
TENANT = "*"
MAX_PATHS = 20_000


@dataclass(slots=True)
class Scope:
    """One scope's current bucket, its window (recent buckets and their running sums), its baselines."""

    counts: list[int] = field(default_factory=lambda: [0] * 5)
    lat: list[int] = field(default_factory=lambda: [0] * LAT_BUCKETS)
    recent: deque[tuple[list[int], list[int]]] = field(default_factory=deque)
    win: list[int] = field(default_factory=lambda: [0] * 5)
    win_lat: list[int] = field(default_factory=lambda: [0] * LAT_BUCKETS)
    base: list[float] = field(default_factory=lambda: [0.0] * 5)  # mean per bucket
    base_p95: float = 0.0  # seconds
    history: float = 0.0  # seconds of baseline behind it
    active: dict[str, float] = field(default_factory=dict)  # signal -> start time


# An empty bucket, shared: idle scopes cost no allocation.
_EMPTY: tuple[list[int], list[int]] = ([0] * 5, [0] * LAT_BUCKETS)


def lat_bucket(seconds: float) -> int:
    ms = seconds * 1000.0
    if ms <= 1.0:
        return 0
    return min(LAT_BUCKETS - 1, int(math.log(ms) / _LOG_STEP) + 1)


def p95(hist: list[int]) -> float:
    """Upper bound of the bucket holding the 95th percentile, in seconds (0 with no samples)."""
    total = sum(hist)
    if not total:
        return 0.0
    need = math.ceil(0.95 * total)
    seen = 0
    for k, n in enumerate(hist):
        seen += n
        if seen >= need:
            return 0.001 * 1.5**k
    return 0.001 * 1.5 ** (LAT_BUCKETS - 1)


class SymptomsDetector:
    name = "symptoms"

    def __init__(self, cfg: SymptomsConfig, ctx: BuildContext) -> None:
        self.cfg = cfg
        self.clock = ctx.clock
        self.services = ctx.services
        self.observe = False
        self.scopes: dict[tuple[str, str], Scope] = {}
        self.tenant = self.scopes[(TENANT, TENANT)] = Scope()
        self.per_window = max(1, round(cfg.window / cfg.bucket))
        self.thresholds: list[tuple[str, SymptomThreshold]] = [(signal, getattr(cfg, signal)) for signal in COUNTED]
        self.decay = 0.5 ** (cfg.bucket / cfg.baseline_half_life)  # weight of the old baseline per bucket
        self.bucket_end = 0.0
        self.routes: dict[tuple[str, str], str] = {}  # (method, path) -> route, for exchanges the catalog skips
        self.started: list[Event] = []  # what emit() sent, for tests and `bastion analyze`

    # --- per exchange ----------------------------------------------------------------------

    def complete(self, ex: Exchange) -> None:
        now = self.clock.now()
        if now >= self.bucket_end:
            self._roll(now)
        resp = ex.response
        status = resp.status if resp is not None else 0
        v = ex.verdict
        blocked = v is not None and v.blocks
        k = lat_bucket(ex.duration) if ex.duration and not blocked else -1
        self._add(self.tenant, status, blocked, k)
        route = ex.route
        path_key = (ex.request.method, ex.request.path)
        if route:
            if len(self.routes) < MAX_PATHS:
                self.routes[path_key] = route
        else:
            # The catalog does not route what Bastion blocked: a path seen answered before is known.
            route = self.routes.get(path_key, "")
        if route:
            key = (ex.request.method, route)
            scope = self.scopes.get(key)
            if scope is None:
                if len(self.scopes) > self.cfg.max_endpoints:
                    return
                scope = self.scopes[key] = Scope()
            self._add(scope, status, blocked, k)

    @staticmethod
    def _add(scope: Scope, status: int, blocked: bool, k: int) -> None:
        c = scope.counts
        c[REQ] += 1
        if blocked:
            c[BLOCKED] += 1  # Bastion's own refusals say nothing about the API's answers
        elif status >= 500:
            c[E5XX] += 1
        elif status in (401, 403):
            c[AUTH] += 1
        elif 400 <= status < 500 and status != 429:
            c[E4XX] += 1
        if k >= 0:
            scope.lat[k] += 1

    # --- once per bucket -------------------------------------------------------------------

    def _roll(self, now: float) -> None:
        b = self.cfg.bucket
        if not self.bucket_end:  # the first exchange opens the first bucket
            self.bucket_end = (now // b + 1) * b
            return
        # Buckets with no exchange at all (an idle gap) are empty buckets for the window and baseline;
        # a gap longer than the window is not folded in further, so a night without traffic does not
        # make the morning look like a spike.
        idle = min(int((now - self.bucket_end) // b), self.per_window + 1)
        closing = self.bucket_end
        self.bucket_end = (now // b + 1) * b
        for key, scope in self.scopes.items():
            self._close(key, scope, closing)
            for _ in range(idle):
                self._close(key, scope, closing)

    def _close(self, key: tuple[str, str], scope: Scope, at: float) -> None:
        """Move the current bucket into the window, compare, then fold it into the baseline."""
        cfg = self.cfg
        counts, lat = scope.counts, scope.lat
        busy = counts[REQ] > 0
        if busy:
            scope.counts = [0] * 5
            scope.lat = [0] * LAT_BUCKETS
        else:
            counts, lat = _EMPTY
        scope.recent.append((counts, lat))
        if busy:
            scope.win = [a + b for a, b in zip(scope.win, counts, strict=True)]
            scope.win_lat = [a + b for a, b in zip(scope.win_lat, lat, strict=True)]
        if len(scope.recent) > self.per_window:
            old, old_lat = scope.recent.popleft()
            if old[REQ]:
                scope.win = [a - b for a, b in zip(scope.win, old, strict=True)]
                scope.win_lat = [a - b for a, b in zip(scope.win_lat, old_lat, strict=True)]
        win = scope.win
        d = self.decay
        if not win[REQ] and not scope.active:  # a quiet scope: nothing to compare, the baseline fades
            for i in range(5):
                scope.base[i] *= d
            scope.history += cfg.bucket
            return
        ready = scope.history >= cfg.warmup and len(scope.recent) >= self.per_window
        n = len(scope.recent)
        for i, (signal, th) in enumerate(self.thresholds):
            expected = scope.base[i] * n
            above = win[i] >= th.floor and win[i] >= th.ratio * max(expected, 1.0)
            if i == E5XX:  # a busy API's few 5xx are not a surge: a share too
                above = above and win[E5XX] >= 0.05 * max(win[REQ], 1)
            if (ready and above) or signal in scope.active:
                self._transition(key, scope, signal, ready and above, win[i] <= 1.5 * max(expected, 1.0), at,
                                 f"{win[i]} in {n * cfg.bucket:g}s, baseline {expected:.1f}")
        th = cfg.latency
        if scope.base_p95 and (win[REQ] >= th.floor or "latency" in scope.active):
            lat_p95 = p95(scope.win_lat)
            slow = (win[REQ] >= th.floor and lat_p95 >= th.ratio * scope.base_p95
                    and lat_p95 >= scope.base_p95 + 0.25)
            self._transition(key, scope, "latency", ready and slow, lat_p95 <= 1.5 * scope.base_p95, at,
                             f"p95 {lat_p95 * 1000:.0f} ms in {n * cfg.bucket:g}s, "
                             f"baseline {scope.base_p95 * 1000:.0f} ms")
        # The baseline learns from normal buckets only: a signal in a symptom keeps its old baseline.
        if scope.history:
            scope.base = [b if signal in scope.active else d * b + (1 - d) * c
                          for signal, b, c in zip(COUNTED, scope.base, counts, strict=True)]
        else:
            scope.base = [float(c) for c in counts]
        if busy and "latency" not in scope.active and counts[REQ] >= 5:
            bucket_p95 = p95(lat)
            if bucket_p95:
                scope.base_p95 = d * scope.base_p95 + (1 - d) * bucket_p95 if scope.base_p95 else bucket_p95
        scope.history += cfg.bucket

    def _transition(self, key: tuple[str, str], scope: Scope, signal: str, start: bool, normal: bool,
                    at: float, figures: str) -> None:
        if signal in scope.active:
            if normal:
                began = scope.active.pop(signal)
                self._emit(key, signal, at, f"ended after {at - began:g}s: {figures}", started=False)
        elif start:
            scope.active[signal] = at
            self._emit(key, signal, at, figures, started=True)

    # --- out -------------------------------------------------------------------------------

    def _emit(self, key: tuple[str, str], signal: str, at: float, figures: str, *, started: bool) -> None:
        method, route = key
        where = "the whole API" if route == TENANT else f"{method} {route}"
        what = MESSAGES[signal]
        message = f"{what} on {where}" if started else f"{what} on {where} ended"
        rule_id = f"symptom-{signal}"
        tags = ("symptom", "alert") if started else ("symptom",)
        whole = route == TENANT
        ev = Event(
            time=at, request_id=f"symptom-{uuid.uuid4().hex[:16]}", client_ip="", method="" if whole else method,
            path="", route="" if whole else route, action="log", rule_ids=(rule_id,),
            findings=[{"rule_id": rule_id, "detector": self.name, "message": message, "severity": "warning",
                       "score": 0, "evidence": figures, "tags": list(tags)}],
            reason=rule_id if started else f"{rule_id}-ended",
        )
        log.warning("%s (%s)", message, figures)
        if started:
            self.started.append(ev)
            del self.started[:-100]
        writer = self.services.get("events")
        if writer is not None:
            writer.submit(ev)

    def active(self) -> list[tuple[str, str, str, float]]:
        """(signal, method, route, since) of every symptom in progress."""
        return [(signal, m, r, since) for (m, r), s in self.scopes.items() for signal, since in s.active.items()]


def make(config: BastionConfig, ctx: BuildContext) -> SymptomsDetector:
    return SymptomsDetector(config.symptoms, ctx)


def symptoms_of(pipeline: Any) -> SymptomsDetector | None:
    for det in getattr(pipeline, "detectors", ()):
        if isinstance(det, SymptomsDetector):
            return det
    return None
