"""Small per-subject counters for behaviour scenarios: decayed counts and windowed distinct sets.

They live in process memory and cost O(1) per event: a decayed count is two floats; a distinct set
is a dict ordered by last sight, trimmed from the front, capped a little above its threshold
(a scenario only needs to know that the threshold was crossed, not the exact total).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T", bound="Fired")


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

    Members are kept ordered by last sight; `head` is the first of them and `head_t` its time, kept so
    that an add which cannot expire anything (the usual case) checks two attributes instead of reading
    the dict's first entry. A set of one member, most sets (a client seen once), has no dict at all:
    `seen` is None and the member is `head` (a dict of one costs ~200 bytes more)."""

    __slots__ = ("head", "head_t", "seen")

    def __init__(self) -> None:
        self.seen: dict[str, float] | None = None  # None: `head` is the only member (or there is none)
        self.head: str | None = None
        self.head_t = -1e18

    def add(self, member: str, now: float, window: float, cap: int) -> int:
        seen = self.seen
        if seen is None:
            one = self.head
            if one is None or one == member or self.head_t < now - window or cap < 2:
                # empty, the same member again, or the one member expired (or no room for two):
                # a set of this one member, as the dict's re-insert and trim would leave it
                self.head = member
                self.head_t = now
                return 1
            # a second member while the first is recent: the dict, ordered by last sight
            self.seen = {one: self.head_t, member: now}
            return 2
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
        if seen is None:
            if self.head is not None and (self.head_t < cutoff or cap < 1):
                self.head = None
                self.head_t = -1e18
            return
        while seen:
            for first in seen:  # noqa: B007 (the first member: cheaper than next(iter()))
                break
            t = seen[first]
            if t >= cutoff and len(seen) <= cap:
                self.head = first
                self.head_t = t
                return
            del seen[first]
        self.seen = None  # empty: back to the compact form
        self.head = None
        self.head_t = -1e18

    def count(self, now: float, window: float, cap: int) -> int:
        self.trim(now, window, cap)
        return len(self)

    def discard(self, member: str) -> None:
        """Forget one member (a forgiven typo): `head` is kept the first member, as add() expects."""
        seen = self.seen
        if seen is None:
            if member == self.head:
                self.head = None
                self.head_t = -1e18
            return
        if seen.pop(member, None) is None or member != self.head:
            return
        for first in seen:  # (the first member)
            self.head = first
            self.head_t = seen[first]
            return
        self.head = None
        self.head_t = -1e18

    def items(self) -> list[tuple[str, float]]:
        """(member, last sight), oldest first."""
        seen = self.seen
        if seen is not None:
            return list(seen.items())
        return [] if self.head is None else [(self.head, self.head_t)]

    def __contains__(self, member: str) -> bool:
        seen = self.seen
        return member in seen if seen is not None else member == self.head

    def __len__(self) -> int:
        seen = self.seen
        if seen is not None:
            return len(seen)
        return 0 if self.head is None else 1


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


class Fired:
    """What every scenario keeps of a subject: when it last fired there (its cooldown) and when the
    subject was last counted (idle expiry). Scenarios that count nothing of their own (scraping,
    sequence) keep only this."""

    __slots__ = ("fired", "last")

    def __init__(self) -> None:
        self.fired = -1e18  # last time the scenario fired on this subject
        self.last = 0.0


class Track(Fired):
    """One subject's state in one scenario (a subject is a key: ip:..., user:..., fp:...)."""

    __slots__ = ("bad", "fast", "new", "slow", "total", "walked", "x")

    def __init__(self) -> None:
        self.fired = -1e18
        self.last = 0.0
        self.fast = Distinct()
        self.slow: Distinct | None = None
        self.bad = Decayed()
        self.total = Decayed()
        self.new: Decayed | None = None  # BOLA: new ids, and new ids next to a seen one (walking)
        self.walked: Decayed | None = None
        self.x: TrackExtra | None = None

    def extra(self) -> TrackExtra:
        x = self.x
        if x is None:
            x = self.x = TrackExtra()
        return x


class Spread(Fired):
    """token_spread's state of one token: the addresses and networks it was used from. Most tokens
    are used from one address: while so, that address and its network are kept as they are (their
    last sight is the token's, `last`), and the distinct sets are made when a second one comes."""

    __slots__ = ("ip", "ips", "net", "nets")

    def __init__(self) -> None:
        self.fired = -1e18
        self.last = 0.0
        self.ip = ""  # the one address (while `ips` is None)
        self.net = ""  # the one network (while `nets` is None)
        self.ips: Distinct | None = None
        self.nets: Distinct | None = None

    def count(self, ip: str, net: str, prev: float, now: float, window: float, ip_cap: int,
              net_cap: int) -> tuple[int, int]:
        """Count one use from address `ip` in network `net`, at `now`; `prev`: the token's previous use.
        Returns the distinct addresses and networks of the last `window` seconds, as two Distinct sets
        (caps `ip_cap`, `net_cap`) would count them."""
        self.ip, self.ips, ips = _add_inline(self.ip, self.ips, ip, prev, now, window, ip_cap)
        self.net, self.nets, nets = _add_inline(self.net, self.nets, net, prev, now, window, net_cap)
        return ips, nets


def _add_inline(one: str, d: Distinct | None, member: str, prev: float, now: float, window: float,
                cap: int) -> tuple[str, Distinct | None, int]:
    """Distinct.add for a set kept as one inline member (`one`, last seen at `prev`) until a second
    member arrives in the window: returns the new (one, set, count)."""
    if d is not None:
        return one, d, d.add(member, now, window, cap)
    if not one or one == member or prev < now - window or cap < 2:
        return member, None, 1  # the same member, or the first one expired
    d = Distinct()
    d.head, d.head_t = one, prev
    return "", d, d.add(member, now, window, cap)


def _last(entry: Any) -> float:
    return float(entry.last)


def make_room(table: dict[str, Any], count: int, score: Callable[[Any], float] = _last,
              drop: Callable[[str], None] | None = None) -> int:
    """Drop `count` entries of a full table, the least recently used among those at its front (the
    CLOCK algorithm, with a choice): the first `4 * count + 64` entries in the table's order (added,
    or put back) are ranked by `score` (by default their last use: the lowest go first, the oldest
    first among equals), the `count` lowest are dropped (through `drop` when given), and the others
    are put back at the end, a second chance. The front thus moves on through the table, and an entry
    still in use when it comes round again is kept again. A pass costs O(count), amortised O(1) per
    entry added: never a scan of the table (a million entries take ~0.5 s). Returns how many went."""
    n = min(len(table), 4 * count + 64)
    if n <= 0 or count <= 0:
        return 0
    window: list[str] = []
    for k in table:
        window.append(k)
        if len(window) >= n:
            break
    victims = set(window) if count >= n else set(sorted(window, key=lambda k: score(table[k]))[:count])
    for k in window:
        if k in victims:
            if drop is None:
                del table[k]
            else:
                drop(k)
        else:
            table[k] = table.pop(k)  # to the back of the queue
    return len(victims)


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


class Tracks(Generic[T]):
    """The records of one scenario by subject (made by `factory`), with idle expiry and a size cap:
    a full table makes room by dropping its least recently used records (make_room)."""

    __slots__ = ("by_subject", "factory", "idle", "max_subjects", "sweeper")

    def __init__(self, idle: float, max_subjects: int = 500_000, factory: Callable[[], T] = Track) -> None:  # type: ignore[assignment]
        self.by_subject: dict[str, T] = {}
        self.idle = idle
        self.sweeper = Sweeper()
        self.max_subjects = max_subjects
        self.factory = factory

    def get(self, subject: str, now: float) -> T:
        t = self.by_subject.get(subject)
        if t is None:
            t = self.add(subject, now)
        t.last = now
        return t

    def add(self, subject: str, now: float) -> T:
        """A new record for `subject` (not in the table), after the idle sweep's slice and room made."""
        table = self.by_subject
        cutoff = now - self.idle
        self.sweeper.step(table, now, lambda tr: tr.last < cutoff)
        if len(table) >= self.max_subjects:
            make_room(table, max(1, self.max_subjects // 100))
        t = table[subject] = self.factory()
        t.last = now
        return t

    def peek(self, subject: str) -> T | None:
        return self.by_subject.get(subject)

    def __len__(self) -> int:
        return len(self.by_subject)
