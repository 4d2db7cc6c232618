"""The memory backend stays bounded: entries expire, and the table never exceeds max_keys."""

from __future__ import annotations

from bastion.state import Algo, Op
from bastion.state.memory import MemoryStorage


def test_max_keys_bounds_the_table():
    st = MemoryStorage("memory://?max_keys=1000")
    for i in range(20_000):
        st.hit_sync([Op(f"k{i}", Algo.SLIDING_WINDOW, limit=5, window=60)], 0.0)
    assert len(st) == 1000 and st.evictions == 19_000
    # The most recent keys are the ones kept.
    (o,) = st.hit_sync([Op("k19999", Algo.SLIDING_WINDOW, limit=5, window=60)], 0.0)
    assert o.count == 2


def test_expired_entries_are_swept():
    st = MemoryStorage()
    for i in range(5000):
        st.hit_sync([Op(f"k{i}", Algo.FIXED_WINDOW, limit=5, window=10)], 0.0)
    for t in range(200):
        st.hit_sync([Op("hot", Algo.FIXED_WINDOW, limit=5, window=10)] * 10, 100.0 + t)
    assert len(st) < 5000


def test_expired_state_is_fresh():
    st = MemoryStorage()
    op = Op("k", Algo.TOKEN_BUCKET, limit=2, window=10)
    assert [st.hit_sync([op], 0.0)[0].exceeded for _ in range(3)] == [False, False, True]
    assert st.hit_sync([op], 11.0)[0].remaining == 1
