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


def test_a_client_hammering_while_blocked_keeps_its_cooldown():
    # H11: a cooldown hit was not "use": the ban aged to the LRU end under the client's own flood
    # and was evicted by other keys' traffic, lifting the ban while the client was still hammering.
    st = MemoryStorage("memory://?max_keys=100")
    op = Op("attacker", Algo.FIXED_WINDOW, limit=3, window=60, block_key="attacker:cool", cooldown=600)
    outcomes = [st.hit_sync([op], 0.0)[0] for _ in range(4)]
    assert outcomes[-1].exceeded and outcomes[-1].newly
    for i in range(1000):
        st.hit_sync([Op(f"other{i}", Algo.FIXED_WINDOW, limit=3, window=60)], 1.0)
        (o,) = st.hit_sync([op], 1.0)
        assert o.exceeded, f"ban lifted after {i} other keys"
    assert len(st) <= 100
