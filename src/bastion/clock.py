"""Time, passed in: the engine never reads a global clock, so tests and log replay can drive it."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch (used for windows, expiry and event times)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds (used for latency and timeouts)."""
        ...


class SystemClock:
    __slots__ = ()

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that only moves when told to: for tests and for replaying logs at their own pace."""

    __slots__ = ("_t",)

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._t = start

    def now(self) -> float:
        return self._t

    def monotonic(self) -> float:
        return self._t

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._t += seconds

    def set(self, t: float) -> None:
        self._t = t
