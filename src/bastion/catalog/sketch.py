"""Small mergeable summaries with bounded memory: latency quantiles, decayed rates, heavy hitters, distinct counts.

Every summary merges (two workers, or two endpoints folded into one template) and round-trips
through plain dicts for the catalog store.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

_GAMMA = 1.08  # relative accuracy ~4%: each bucket spans 8%, the estimate is its geometric middle
_LOG_GAMMA = math.log(_GAMMA)
_MIN_S = 1e-5  # 10 µs: faster than that is noise at this resolution


class LatencySketch:
    """Log-bucketed latency histogram (a DDSketch-style sketch): quantiles within ~4%, ~200 buckets max."""

    __slots__ = ("buckets", "count", "max")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        i = 0 if seconds <= _MIN_S else int(math.log(seconds / _MIN_S) / _LOG_GAMMA) + 1
        b = self.buckets
        b[i] = b.get(i, 0) + 1
        self.count += 1
        if seconds > self.max:
            self.max = seconds

    def quantile(self, q: float) -> float:
        if self.count == 0:
            return 0.0
        rank = q * (self.count - 1)
        seen = 0
        for i in sorted(self.buckets):
            seen += self.buckets[i]
            if seen > rank:
                if i == 0:
                    return _MIN_S
                return min(self.max, _MIN_S * math.pow(_GAMMA, i - 0.5))
        return self.max

    def merge(self, other: LatencySketch) -> None:
        for i, n in other.buckets.items():
            self.buckets[i] = self.buckets.get(i, 0) + n
        self.count += other.count
        self.max = max(self.max, other.max)

    def to_dict(self) -> dict[str, Any]:
        return {"b": {str(k): v for k, v in self.buckets.items()}, "n": self.count, "max": self.max}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatencySketch:
        s = cls()
        s.buckets = {int(k): int(v) for k, v in d.get("b", {}).items()}
        s.count = int(d.get("n", 0))
        s.max = float(d.get("max", 0.0))
        return s


class DecayedRate:
    """An exponentially decayed event count: `rate(now)` is events per second over ~the half-life."""

    __slots__ = ("half_life", "t", "value")

    def __init__(self, half_life: float = 300.0) -> None:
        self.half_life = half_life
        self.value = 0.0
        self.t = 0.0

    def _decay_to(self, now: float) -> None:
        if now > self.t:
            if self.value:
                self.value *= 0.5 ** ((now - self.t) / self.half_life)
            self.t = now

    def add(self, now: float, n: float = 1.0) -> None:
        # Decaying costs a pow(); within a second of the last decay the error is < 0.3%, so skip it.
        if now >= self.t + 1.0:
            self._decay_to(now)
        self.value += n

    def rate(self, now: float) -> float:
        v = self.value * math.pow(0.5, max(0.0, now - self.t) / self.half_life)
        return float(v * math.log(2) / self.half_life)

    def merge(self, other: DecayedRate) -> None:
        t = max(self.t, other.t)
        self._decay_to(t)
        self.value += other.value * 0.5 ** ((t - other.t) / other.half_life)

    def to_dict(self) -> dict[str, Any]:
        return {"v": self.value, "t": self.t}

    @classmethod
    def from_dict(cls, d: dict[str, Any], half_life: float = 300.0) -> DecayedRate:
        r = cls(half_life)
        r.value = float(d.get("v", 0.0))
        r.t = float(d.get("t", 0.0))
        return r


class TopK:
    """Heavy hitters by the Misra-Gries algorithm: at most `k` keys; any key above n/k is kept."""

    __slots__ = ("counts", "k")

    def __init__(self, k: int = 10) -> None:
        self.k = k
        self.counts: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        c = self.counts
        if key in c:
            c[key] += n
        elif len(c) < self.k:
            c[key] = n
        else:
            # Everyone loses one; the zeros leave. Keeps memory at k whatever the key space.
            drop = min(n, min(c.values()))
            for k2 in list(c):
                c[k2] -= drop
                if c[k2] <= 0:
                    del c[k2]
            if n > drop and len(c) < self.k:
                c[key] = n - drop

    def top(self, n: int | None = None) -> list[tuple[str, int]]:
        items = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return items[:n] if n else items

    def merge(self, other: TopK) -> None:
        for key, n in sorted(other.counts.items()):
            self.add(key, n)

    def to_dict(self) -> dict[str, int]:
        return dict(self.counts)

    @classmethod
    def from_dict(cls, d: dict[str, Any], k: int = 10) -> TopK:
        t = cls(k)
        for key, n in sorted(d.items(), key=lambda kv: (-int(kv[1]), kv[0])):
            t.add(str(key), int(n))
        return t


_HLL_P = 6  # 64 registers: ~13% error, 64 bytes; enough to tell 3 users from 3000
_HLL_M = 1 << _HLL_P


class Distinct:
    """HyperLogLog distinct counter (stable hash, so it merges across processes)."""

    __slots__ = ("regs",)

    def __init__(self) -> None:
        self.regs = bytearray(_HLL_M)

    def add(self, key: str) -> None:
        # crc32 then a 64-bit multiplicative mix: stable across processes (unlike hash()) and cheap.
        h = (zlib.crc32(key.encode("utf-8", "surrogatepass")) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
        idx = h & (_HLL_M - 1)
        w = h >> _HLL_P
        rank = (64 - _HLL_P) - w.bit_length() + 1
        if rank > self.regs[idx]:
            self.regs[idx] = rank

    def estimate(self) -> int:
        m = _HLL_M
        z = sum(2.0 ** -r for r in self.regs)
        e = 0.709 * m * m / z
        zeros = self.regs.count(0)
        if e <= 2.5 * m and zeros:
            e = m * math.log(m / zeros)
        return round(e)

    def merge(self, other: Distinct) -> None:
        self.regs = bytearray(max(a, b) for a, b in zip(self.regs, other.regs, strict=True))

    def to_dict(self) -> str:
        return self.regs.hex()

    @classmethod
    def from_dict(cls, d: str) -> Distinct:
        s = cls()
        raw = bytes.fromhex(d) if d else b""
        if len(raw) == _HLL_M:
            s.regs = bytearray(raw)
        return s
