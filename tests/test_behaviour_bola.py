"""BOLA: one principal walking many object ids, mostly refused or in sequence."""

from __future__ import annotations

from behaviour_helpers import CHROME, Harness

SESSION = [*CHROME, ("Cookie", "sid=me")]


async def test_walking_other_users_orders_is_blocked() -> None:
    h = await Harness().start()
    sent = [await h.send("127.50.0.1", target=f"/api/orders/{1000 + i}", status=403 if i % 4 else 200,
                         headers=SESSION) for i in range(40)]
    first = next(i for i, s in enumerate(sent) if s.blocked)
    assert first <= 16
    await h.stop()


async def test_uuid_ids_count_too() -> None:
    h = await Harness().start()
    sent = [await h.send("127.50.0.2", target=f"/docs/{i:08x}-aaaa-bbbb-cccc-{i:012x}", status=404)
            for i in range(30)]
    assert any(s.blocked for s in sent[:20])
    await h.stop()


async def test_sequential_walk_with_200s_is_harvesting() -> None:
    h = await Harness().start()
    sent = [await h.send("127.50.0.3", target=f"/api/invoices/{500 + i}", status=200, headers=SESSION)
            for i in range(60)]
    assert any(s.blocked for s in sent)
    await h.stop()


async def test_browsing_own_objects_and_random_products_is_fine() -> None:
    h = await Harness().start()
    import random

    rng = random.Random(3)
    for i in range(40):
        target = f"/api/orders/{rng.choice([11, 12, 13])}" if i % 4 == 0 else f"/products/{rng.randint(1, 5000)}"
        s = await h.send("127.50.0.4", target=target, headers=SESSION, advance=5)
        assert not s.blocked and not s.ex.findings, s.rules()
    await h.stop()
