"""Small per-subject counters for behaviour scenarios: decayed counts and windowed distinct sets.

They live in process memory and cost O(1) per event: a decayed count is two floats; a distinct set
is a dict ordered by last sight, trimmed from the front, capped a little above its threshold
(a scenario only needs to know that the threshold was crossed, not the exact total).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Decayed:
    """An exponentially decayed count: recent events weigh 1, events one half-life old weigh 0.5."""

    __slots__ = ("t", "v")

    def __init__(self) -> None:
        self.v = 0.0
        self.t = 0.0

    def add(self, now: float, half_life: float, n: float = 1.0) -> float:
        v = self.v
        if v > 0.0 and now > self.t:
            v *= 0.5 ** ((now - self.t) / half_life)
        self.v = v + n
        self.t = now
        return self.v

    def value(self, now: float, half_life: float) -> float:
        if self.v <= 0.0 or now <= self.t:
            return self.v
        return float(self.v * 0.5 ** ((now - self.t) / half_life))


class Distinct:
    """Distinct members seen in the last `window` seconds, exact up to `cap`.

    `seen` is ordered by last sight; `head` is its first member and `head_t` that member's time,
    kept so that an add which cannot expire anything (the usual case) checks two attributes instead
    of reading the dict's first entry."""

    __slots__ = ("head", "head_t", "seen")

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.head: str | None = None
        self.head_t = -1e18

    def add(self, member: str, now: float, window: float, cap: int) -> int:
        seen = self.seen
        if member == self.head:
            # the first member moves to the end (the dict stays ordered by last sight): the next
            # one is first now; nothing to trim while it is recent and the set within its cap
            del seen[member]
            seen[member] = now
            for head in seen:  # noqa: B007 (the first member: cheaper than next(iter()))
                break
            t = seen[head]
            if t >= now - window and len(seen) <= cap:
                self.head = head
                self.head_t = t
                return len(seen)
        else:
            seen.pop(member, None)  # re-insert at the end
            seen[member] = now
            # `head` is still the first: nothing to trim while it is recent and the set within its cap
            if self.head_t >= now - window and len(seen) <= cap:
                return len(seen)
        self.trim(now, window, cap)
        return len(seen)

    def trim(self, now: float, window: float, cap: int) -> None:
        seen = self.seen
        cutoff = now - window
        while seen:
            for first in seen:  # noqa: B007 (the first member: cheaper than next(iter()))
                break
            t = seen[first]
            if t >= cutoff and len(seen) <= cap:
                self.head = first
                self.head_t = t
                return
            del seen[first]
        self.head = None
        self.head_t = -1e18

    def count(self, now: float, window: float, cap: int) -> int:
        self.trim(now, window, cap)
        return len(self.seen)

    def discard(self, member: str) -> None:
        """Forget one member (a forgiven typo): `head` is kept the first member, as add() expects."""
        seen = self.seen
        if seen.pop(member, None) is None or member != self.head:
            return
        for first in seen:  # (the first member)
            self.head = first
            self.head_t = seen[first]
            return
        self.head = None
        self.head_t = -1e18

    def __contains__(self, member: str) -> bool:
        return member in self.seen


class TrackExtra:
    """The rarer state of a track, made on first need (a Track is created per subject and route, and
    each slot initialised costs every one of them)."""

    __slots__ = ("slow_bad", "slow_total", "slow_walked", "streak", "streak_t", "typos")

    def __init__(self) -> None:
        # low-and-slow outcome share (attempts and bad outcomes decayed over the slow window): a
        # slow variant needs a bad share too, not only a count over hours
        self.slow_total = Decayed()
        self.slow_bad = Decayed()
        # logins: recent failures by account (their times, oldest first), so that a few failures on
        # an account that then logs in are forgiven as typos; and failures since the last success
        self.typos: dict[str, list[float]] = {}
        self.streak = 0
        self.streak_t = -1e18
        self.slow_walked: Distinct | None = None  # BOLA: walked ids over the slow window


class Track:
    """One subject's state in one scenario (a subject is a key: ip:..., user:..., fp:...)."""

    __slots__ = ("bad", "fast", "fired", "last", "new", "slow", "total", "walked", "x")

    def __init__(self) -> None:
        self.fast = Distinct()
        self.slow: Distinct | None = None
        self.bad = Decayed()
        self.total = Decayed()
        self.fired = -1e18  # last time the scenario fired on this subject
        self.last = 0.0
        self.new: Decayed | None = None  # BOLA: new ids, and new ids next to a seen one (walking)
        self.walked: Decayed | None = None
        self.x: TrackExtra | None = None

    def extra(self) -> TrackExtra:
        x = self.x
        if x is None:
            x = self.x = TrackExtra()
        return x


class Sweeper:
    """Expire idle entries of a big dict a slice at a time, so that no single request pays for a
    full scan (a million keys take ~0.5 s to scan: far too long a pause for an event loop).

    `step(table, is_idle)` checks at most `batch` entries of a snapshot of the keys taken when
    the previous pass ended (and `every` seconds have gone by)."""

    __slots__ = ("batch", "every", "keys", "pos", "started")

    def __init__(self, every: float = 60.0, batch: int = 2000) -> None:
        self.every = every
        self.batch = batch
        self.keys: list[str] = []
        self.pos = 0
        self.started = -1e18

    def step(self, table: dict[str, Any], now: float, is_idle: Callable[[Any], bool],
             drop: Callable[[str], None] | None = None) -> int:
        if self.pos >= len(self.keys):
            if now - self.started < self.every:
                return 0
            self.started = now
            self.keys = list(table)
            self.pos = 0
        end = min(self.pos + self.batch, len(self.keys))
        dropped = 0
        for k in self.keys[self.pos:end]:
            v = table.get(k)
            if v is not None and is_idle(v):
                if drop is not None:
                    drop(k)
                else:
                    del table[k]
                dropped += 1
        self.pos = end
        if end >= len(self.keys):
            self.keys = []
        return dropped


class Tracks:
    """Tracks of one scenario by subject, with idle expiry."""

    __slots__ = ("by_subject", "idle", "max_subjects", "sweeper")

    def __init__(self, idle: float, max_subjects: int = 500_000) -> None:
        self.by_subject: dict[str, Track] = {}
        self.idle = idle
        self.sweeper = Sweeper()
        self.max_subjects = max_subjects

    def get(self, subject: str, now: float) -> Track:
        t = self.by_subject.get(subject)
        if t is None:
            cutoff = now - self.idle
            self.sweeper.step(self.by_subject, now, lambda tr: tr.last < cutoff)
            if len(self.by_subject) >= self.max_subjects:
                self.sweep(now)
            t = self.by_subject[subject] = Track()
        t.last = now
        return t

    def peek(self, subject: str) -> Track | None:
        return self.by_subject.get(subject)

    def sweep(self, now: float) -> None:
        """A full pass (only when the table is full)."""
        cutoff = now - self.idle
        dead = [k for k, t in self.by_subject.items() if t.last < cutoff]
        for k in dead:
            del self.by_subject[k]
        if len(self.by_subject) >= self.max_subjects:  # still full of active subjects: drop the oldest
            for k in list(self.by_subject)[: self.max_subjects // 10]:
                del self.by_subject[k]

    def __len__(self) -> int:
        return len(self.by_subject)
