"""Webhook alerts: blocked (or flagged) events pushed to Slack-compatible or generic endpoints.

Alerts hang off the event writer as a listener, so they see exactly what is stored, already
masked. Sending happens on a thread of its own with a bounded queue: a slow or dead webhook never
delays event writes, let alone requests. Alerts are deduplicated per (client, reason, rule) within
a window, and the next alert for a key says how many were folded into it, so one scanner firing a
thousand times is one message, not a thousand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from bastion.alerts.outbox import Outbox, post_json
from bastion.alerts.settings import AlertsConfig, WebhookConfig
from bastion.clock import Clock, SystemClock
from bastion.events import Event

log = logging.getLogger("bastion.alerts")


Sender = Callable[[WebhookConfig, bytes], None]


def http_post(hook: WebhookConfig, body: bytes) -> None:
    post_json(hook.url, body, timeout=hook.timeout, agent="bastion-alerts", headers=hook.headers)


@dataclass(slots=True)
class _Key:
    last_sent: float
    folded: int = 0


@dataclass(slots=True)
class AlertStats:
    sent: int = 0
    deduplicated: int = 0
    dropped: int = 0
    failed: int = 0


class WebhookAlerter:
    """An event-writer listener (`writer.add_listener(alerter)`) that sends deduplicated alerts."""

    def __init__(self, config: AlertsConfig, *, clock: Clock | None = None, sender: Sender = http_post) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.sender = sender
        self.stats = AlertStats()
        self._keys: dict[tuple[str, str, str], _Key] = {}
        self._sent_at: dict[int, list[float]] = {}
        self._outbox: Outbox[tuple[WebhookConfig, bytes]] = Outbox(
            lambda item: self.sender(*item), self.stats, size=config.queue_size, name="bastion-alerts",
            what="webhook alert",
        )

    # --- listener side (event-writer thread) ---------------------------------------------

    def __call__(self, batch: Sequence[Event]) -> None:
        for ev in batch:
            if self._wanted(ev):
                self._consider(ev)

    def _wanted(self, ev: Event) -> bool:
        if not self.config.webhooks:
            return False
        if self.config.send_on == "flag" or ev.blocked or ev.would_block:
            return True
        # A rule with `actions: {alert: true}` (bastion.detect.ratelimit) asks for an alert
        # even when it only scores: its finding carries the `alert` tag.
        return any("alert" in (f.get("tags") or ()) for f in ev.findings)

    def _consider(self, ev: Event) -> None:
        now = self.clock.now()
        key = (ev.client_ip, ev.reason or ev.action, ev.rule_ids[0] if ev.rule_ids else "")
        state = self._keys.get(key)
        if state is not None and now - state.last_sent < self.config.dedup_window:
            state.folded += 1
            self.stats.deduplicated += 1
            return
        folded = state.folded if state is not None else 0
        self._keys[key] = _Key(last_sent=now)
        if len(self._keys) > 50_000:  # bounded: forget keys whose window has passed
            cutoff = now - self.config.dedup_window
            self._keys = {k: s for k, s in self._keys.items() if s.last_sent >= cutoff}
        for i, hook in enumerate(self.config.webhooks):
            if not self._within_rate(i, now):
                self.stats.dropped += 1
                continue
            if not self._outbox.put((hook, render(hook.format, ev, folded))):
                self.stats.dropped += 1

    def _within_rate(self, i: int, now: float) -> bool:
        times = [t for t in self._sent_at.get(i, []) if now - t < 60.0]
        if len(times) >= self.config.max_per_minute:
            self._sent_at[i] = times
            return False
        times.append(now)
        self._sent_at[i] = times
        return True

    # --- sender side ------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> None:
        self._outbox.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        self._outbox.close(timeout)


def render(fmt: str, ev: Event, folded: int = 0) -> bytes:
    """The alert body: Slack's `text` message, or the event itself for generic receivers."""
    when = datetime.fromtimestamp(ev.time, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    verb = "blocked" if ev.blocked else ("would block" if ev.would_block else "flagged")
    rules = ", ".join(ev.rule_ids[:5]) or ev.reason or "-"
    summary = f"Bastion {verb} {ev.method} {ev.path} from {ev.client_ip} ({rules}) at {when}"
    if folded:
        summary += f"; {folded} similar alerts folded since the last one"
    doc: dict[str, Any]
    doc = {"text": summary} if fmt == "slack" else {"summary": summary, "folded": folded, "event": ev.as_dict()}
    return orjson.dumps(doc)
