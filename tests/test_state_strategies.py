"""The counter algorithms at the edges of their windows, over memory:// and a real Redis."""

from __future__ import annotations

import pytest

import state_backends
from bastion.clock import ManualClock
from bastion.state import Algo, Op, make_key

backend = state_backends.backend  # the fixture: every test runs over memory:// and Redis

T0 = 1_700_000_000.0  # a multiple of 10: windows of 10 s start here


async def hits(st, op: Op, clock: ManualClock, n: int = 1) -> list[bool]:
    out = []
    for _ in range(n):
        (o,) = await st.hit([op], clock.now())
        out.append(o.exceeded)
    return out


async def test_sliding_window_edges(backend):
    st, prefix = backend
    clock = ManualClock(T0)
    op = Op(make_key(prefix, "sw", "1.2.3.4"), Algo.SLIDING_WINDOW, limit=3, window=10)
    assert await hits(st, op, clock, 4) == [False, False, False, True]
    clock.set(T0 + 9.999)
    assert await hits(st, op, clock) == [True]
    # At the boundary the previous window still weighs fully: 3 * 1.0 + 0 = 3, no room.
    clock.set(T0 + 10)
    assert await hits(st, op, clock) == [True]
    # Half-way: 3 * 0.5 = 1.5; one more fits (2.5), a second (3.5) does not.
    clock.set(T0 + 15)
    assert await hits(st, op, clock, 2) == [False, True]
    # Two windows later nothing is left.
    clock.set(T0 + 30)
    assert await hits(st, op, clock, 3) == [False, False, False]


async def test_sliding_window_retry_after_is_when_it_fits(backend):
    st, prefix = backend
    clock = ManualClock(T0)
    op = Op(make_key(prefix, "sw", "k"), Algo.SLIDING_WINDOW, limit=4, window=10)
    await hits(st, op, clock, 4)
    (o,) = await st.hit([op], clock.now())
    assert o.exceeded and o.remaining == 0
    # cur=4 becomes the previous window: 4 * (1 - f) + 1 <= 4 once f >= 0.25 -> 10 s + 2.5 s.
    assert o.reset == pytest.approx(12.5)
    clock.advance(12.5)
    assert await hits(st, op, clock) == [False]


async def test_token_bucket_definition(backend):
    st, prefix = backend
    clock = ManualClock(T0 + 3.3)
    op = Op(make_key(prefix, "tb", "k"), Algo.TOKEN_BUCKET, limit=5, window=10)  # 0.5 token/s
    assert await hits(st, op, clock, 6) == [False] * 5 + [True]
    (o,) = await st.hit([op], clock.now())
    assert o.exceeded and o.reset == pytest.approx(2.0)  # one token needs 2 s
    clock.advance(1.999)
    assert await hits(st, op, clock) == [True]
    clock.advance(0.001)
    assert await hits(st, op, clock, 2) == [False, True]
    clock.advance(100)  # refills to capacity, never beyond
    assert await hits(st, op, clock, 6) == [False] * 5 + [True]


async def test_token_bucket_cost(backend):
    st, prefix = backend
    clock = ManualClock(T0)
    key = make_key(prefix, "tbc", "k")
    (o,) = await st.hit([Op(key, Algo.TOKEN_BUCKET, limit=10, window=10, cost=7)], clock.now())
    assert not o.exceeded and o.remaining == pytest.approx(3)
    (o,) = await st.hit([Op(key, Algo.TOKEN_BUCKET, limit=10, window=10, cost=4)], clock.now())
    assert o.exceeded and o.remaining == pytest.approx(3)


async def test_fixed_window_resets_at_boundary(backend):
    st, prefix = backend
    clock = ManualClock(T0 + 9)
    op = Op(make_key(prefix, "fw", "k"), Algo.FIXED_WINDOW, limit=2, window=10)
    assert await hits(st, op, clock, 3) == [False, False, True]
    (o,) = await st.hit([op], clock.now())
    assert o.reset == pytest.approx(1.0)
    clock.set(T0 + 10)  # a fixed window forgets at once: the burst at its edge that sliding prevents
    assert await hits(st, op, clock, 3) == [False, False, True]


async def test_sum_counter_with_consume(backend):
    st, prefix = backend
    clock = ManualClock(T0)
    key = make_key(prefix, "sum", "k")
    outs = []
    for size in (400, 400, 400):
        (o,) = await st.hit([Op(key, Algo.FIXED_WINDOW, limit=1000, window=60, cost=size, consume=True)], clock.now())
        outs.append((o.exceeded, o.count))
    assert outs == [(False, 400), (False, 800), (True, 1200)]


async def test_distinct_counts_each_value_once(backend):
    st, prefix = backend
    clock = ManualClock(T0)
    key = make_key(prefix, "dist", "client")

    def op(member: str) -> Op:
        return Op(key, Algo.DISTINCT, limit=3, window=60, member=member, consume=True)

    for _ in range(10):  # the same account queried again and again counts once
        (o,) = await st.hit([op("alice")], clock.now())
        assert not o.exceeded and o.count == 1
    for m in ("bob", "carol"):
        (o,) = await st.hit([op(m)], clock.now())
        assert not o.exceeded
    (o,) = await st.hit([op("dave")], clock.now())
    assert o.exceeded and o.count == 4
    for i in range(100):  # bounded: only limit + 1 members are kept
        (o,) = await st.hit([op(f"m{i}")], clock.now())
    assert o.exceeded and o.count == 4
    clock.advance(61)
    (o,) = await st.hit([op("zed")], clock.now())
    assert not o.exceeded and o.count == 1


async def test_distinct_refused_member_not_counted(backend):
    st, prefix = backend
    clock = ManualClock(T0)
    key = make_key(prefix, "dist2", "client")
    outs = []
    for m in ("a", "b", "c", "c", "a"):
        (o,) = await st.hit([Op(key, Algo.DISTINCT, limit=2, window=60, member=m)], clock.now())
        outs.append(o.exceeded)
    assert outs == [False, False, True, True, False]


async def test_window_expires_members_one_by_one(backend):
    st, prefix = backend
    clock = ManualClock(T0)
    key = make_key(prefix, "dist3", "client")
    for i, m in enumerate("abc"):
        clock.set(T0 + i * 10)
        await st.hit([Op(key, Algo.DISTINCT, limit=5, window=25, member=m, consume=True)], clock.now())
    clock.set(T0 + 26)  # "a" (t=0) left the window, "b" (t=10) and "c" (t=20) are in
    (o,) = await st.hit([Op(key, Algo.DISTINCT, limit=5, window=25, member="b", consume=True)], clock.now())
    assert o.count == 2


async def test_cooldown_blocks_then_expires_and_fires_once(backend):
    st, prefix = backend
    clock = ManualClock(T0)
    key = make_key(prefix, "cd", "ip")
    op = Op(key, Algo.SLIDING_WINDOW, limit=2, window=10, block_key=key + ":cool", cooldown=30, consume=True)
    outs = [(await st.hit([op], clock.now()))[0] for _ in range(4)]
    assert [o.exceeded for o in outs] == [False, False, True, True]
    assert [o.newly for o in outs] == [False, False, True, False]
    assert outs[3].cooling == pytest.approx(30)
    check = Op(key, Algo.COOLDOWN, limit=2, window=10, block_key=key + ":cool")
    clock.advance(29)
    (o,) = await st.hit([check], clock.now())
    assert o.exceeded and o.cooling == pytest.approx(1)
    clock.advance(1.01)
    (o,) = await st.hit([check], clock.now())
    assert not o.exceeded and o.cooling == 0


async def test_many_ops_in_one_call_each_answered_in_order(backend):
    st, prefix = backend
    clock = ManualClock(T0)
    ops = [Op(make_key(prefix, f"r{i}", "x"), Algo.FIXED_WINDOW, limit=i, window=10) for i in range(5)]
    outs = await st.hit(ops, clock.now())
    assert [o.exceeded for o in outs] == [True, False, False, False, False]
    outs = await st.hit(ops, clock.now())
    assert [o.exceeded for o in outs] == [True, True, False, False, False]
    assert [o.remaining for o in outs] == [0, 0, 0, 1, 2]
