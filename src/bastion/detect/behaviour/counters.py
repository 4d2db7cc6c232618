"""Small per-subject counters for behaviour scenarios: decayed counts and windowed distinct sets.

They live in process memory and cost O(1) per event: a decayed count is two floats; a distinct set
is a dict ordered by last sight, trimmed from the front, capped a little above its threshold
(a scenario only needs to know that the threshold was crossed, not the exact total).
"""

from __future__ import annotations


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
    """Distinct members seen in the last `window` seconds, exact up to `cap`."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def add(self, member: str, now: float, window: float, cap: int) -> int:
        seen = self.seen
        if member in seen:
            del seen[member]  # re-insert at the end: the dict stays ordered by last sight
        seen[member] = now
        self.trim(now, window, cap)
        return len(seen)

    def trim(self, now: float, window: float, cap: int) -> None:
        seen = self.seen
        cutoff = now - window
        while seen:
            first = next(iter(seen))
            if seen[first] >= cutoff and len(seen) <= cap:
                break
            del seen[first]

    def count(self, now: float, window: float, cap: int) -> int:
        self.trim(now, window, cap)
        return len(self.seen)

    def __contains__(self, member: str) -> bool:
        return member in self.seen


class Track:
    """One subject's state in one scenario (a subject is a key: ip:..., user:..., fp:...)."""

    __slots__ = ("bad", "fast", "fired", "last", "new", "slow", "total", "walked")

    def __init__(self) -> None:
        self.fast = Distinct()
        self.slow: Distinct | None = None
        self.bad = Decayed()
        self.total = Decayed()
        self.fired = -1e18  # last time the scenario fired on this subject
        self.last = 0.0
        self.new: Decayed | None = None  # BOLA: new ids, and new ids next to a seen one (walking)
        self.walked: Decayed | None = None


class Tracks:
    """Tracks of one scenario by subject, with idle expiry."""

    __slots__ = ("by_subject", "idle", "last_sweep", "max_subjects")

    def __init__(self, idle: float, max_subjects: int = 500_000) -> None:
        self.by_subject: dict[str, Track] = {}
        self.idle = idle
        self.last_sweep = 0.0
        self.max_subjects = max_subjects

    def get(self, subject: str, now: float) -> Track:
        t = self.by_subject.get(subject)
        if t is None:
            if now - self.last_sweep > 60.0 or len(self.by_subject) >= self.max_subjects:
                self.sweep(now)
            t = self.by_subject[subject] = Track()
        t.last = now
        return t

    def peek(self, subject: str) -> Track | None:
        return self.by_subject.get(subject)

    def sweep(self, now: float) -> None:
        self.last_sweep = now
        cutoff = now - self.idle
        dead = [k for k, t in self.by_subject.items() if t.last < cutoff]
        for k in dead:
            del self.by_subject[k]
        if len(self.by_subject) >= self.max_subjects:  # still full of active subjects: drop the oldest
            for k in list(self.by_subject)[: self.max_subjects // 10]:
                del self.by_subject[k]

    def __len__(self) -> int:
        return len(self.by_subject)
