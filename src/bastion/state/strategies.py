"""The counter algorithms, defined once in Python (the memory backend runs these; lua/hit.lua is
the same arithmetic for Redis, and tests/test_state_strategies.py checks both against these
definitions at the edges of their windows).

Each strategy is a function `(state, now, op) -> (state, Outcome)`; `state` is a small list owned
by the backend (None for a fresh counter). Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from bastion.state.base import Algo, Op, Outcome

State = list[float] | dict[str, float] | None
Strategy = Callable[[State, float, Op], tuple[State, Outcome]]


def sliding_window(state: State, now: float, op: Op) -> tuple[State, Outcome]:
    """Sliding-window counter: windows aligned on multiples of `window`; the estimate is
    `previous * (1 - elapsed/window) + current`. A hit is allowed while estimate + cost <= limit."""
    w = op.window
    idx = math.floor(now / w)
    elapsed = now - idx * w
    if isinstance(state, list) and state[0] == idx:
        prev, cur = state[1], state[2]
    elif isinstance(state, list) and state[0] == idx - 1:
        prev, cur = state[2], 0.0
    else:
        prev, cur = 0.0, 0.0
    weight = 1.0 - elapsed / w
    est = prev * weight + cur
    exceeded = est + op.cost > op.limit
    if not exceeded or op.consume:
        cur += op.cost
        est += op.cost
    reset = _sliding_retry(prev, cur, elapsed, w, op.limit, op.cost) if exceeded else w - elapsed
    out = Outcome(exceeded, est, max(0.0, op.limit - est), reset)
    if isinstance(state, list):
        state[0], state[1], state[2] = float(idx), prev, cur
        return state, out
    return [float(idx), prev, cur], out


def _sliding_retry(prev: float, cur: float, elapsed: float, w: float, limit: float, cost: float) -> float:
    """Seconds until `cost` more would fit under `limit`, assuming no other hits."""
    room = limit - cur - cost
    if room >= 0 and prev > 0:
        # Still in this window: wait until the previous window's weight has decayed enough.
        return max(0.0, w * (1.0 - room / prev) - elapsed)
    # Next window: `cur` becomes the previous window and decays in turn.
    if cur <= 0:
        return w - elapsed
    frac = 1.0 - (limit - cost) / cur
    return (w - elapsed) + max(0.0, w * min(1.0, frac))


def token_bucket(state: State, now: float, op: Op) -> tuple[State, Outcome]:
    """Token bucket: `limit` tokens at most, refilled at limit/window per second; a hit takes
    `cost` tokens if there are that many. A refused hit takes nothing."""
    rate = op.limit / op.window
    tokens = min(op.limit, state[0] + max(0.0, now - state[1]) * rate) if isinstance(state, list) else op.limit
    exceeded = tokens < op.cost
    if not exceeded:
        tokens -= op.cost
    reset = (op.cost - tokens) / rate if exceeded else (op.limit - tokens) / rate
    out = Outcome(exceeded, op.limit - tokens, max(0.0, tokens), reset)
    if isinstance(state, list):
        state[0], state[1] = tokens, now
        return state, out
    return [tokens, now], out


def fixed_window(state: State, now: float, op: Op) -> tuple[State, Outcome]:
    """Fixed window: a count per window aligned on multiples of `window`, reset at each boundary."""
    w = op.window
    idx = math.floor(now / w)
    cur = state[1] if isinstance(state, list) and state[0] == idx else 0.0
    exceeded = cur + op.cost > op.limit
    if not exceeded or op.consume:
        cur += op.cost
    out = Outcome(exceeded, cur, max(0.0, op.limit - cur), (idx + 1) * w - now)
    if isinstance(state, list):
        state[0], state[1] = float(idx), cur
        return state, out
    return [float(idx), cur], out


def distinct(state: State, now: float, op: Op) -> tuple[State, Outcome]:
    """Distinct members seen within the last `window` seconds. Seeing a member again refreshes
    it without counting it twice. Only the newest limit+1 members are kept: beyond that the
    counter is exceeded whatever the exact number, so memory per key stays bounded."""
    members: dict[str, float] = state if isinstance(state, dict) else {}
    horizon = now - op.window
    if members:
        stale = [m for m, t in members.items() if t <= horizon]
        for m in stale:
            del members[m]
    if op.member in members:
        del members[op.member]  # re-insert at the end: newest
        members[op.member] = now
        n = float(len(members))
        exceeded = n > op.limit
    else:
        n = float(len(members)) + 1
        exceeded = n > op.limit
        if not exceeded or op.consume:
            members[op.member] = now
            cap = int(op.limit) + 1
            while len(members) > cap:
                del members[next(iter(members))]
            n = float(len(members))
        else:
            n -= 1
    oldest = next(iter(members.values()), now)
    return members, Outcome(exceeded, n, max(0.0, op.limit - n), max(0.0, oldest + op.window - now))


STRATEGIES: dict[Algo, Strategy] = {
    Algo.SLIDING_WINDOW: sliding_window,
    Algo.TOKEN_BUCKET: token_bucket,
    Algo.FIXED_WINDOW: fixed_window,
    Algo.DISTINCT: distinct,
}


def ttl_of(op: Op) -> float:
    """How long a counter's state must outlive its last hit (after that it is equivalent to fresh)."""
    if op.algo == Algo.SLIDING_WINDOW:
        return 2 * op.window
    return op.window
